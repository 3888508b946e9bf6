"""Mask R-CNN (mmdet) and DeepLabV3 (mmseg) with MVQ through tools/train.py and tools/test.py.

Tiny real-pixel canvas sets, 128x128 images, two iterations, a small codebook: the point is
the plumbing (clustering once from the given dense weights, real COCO / mIoU metrics, the
checkpoint and the artifact, testing without clustering), not accuracy.
"""
from __future__ import annotations

import copy
import re

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from conftest import REPO, opts, run_tool, scalars  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import MODELS, init_default_scope  # noqa: E402

pytestmark = pytest.mark.slow

CLUSTER_LINE = re.compile(r'MVQHook: clustering \d+ layers')
SETTINGS = dict(model__mvq__num_codewords=16, model__mvq__kmeans_iters=3)
SMALL = dict(SETTINGS, train_cfg__max_iters=2,
             train_cfg__val_interval=2, default_hooks__checkpoint__interval=2,
             train_dataloader__batch_size=2)


def _dense_checkpoint(config: str, path) -> None:
    """The upstream model's own (random) init, saved as the user's dense checkpoint."""
    cfg = Config.fromfile(str(REPO / config))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model.model))
    model.init_weights()
    torch.save({'state_dict': model.state_dict()}, path)


def _train_and_test(config: str, work, data: dict, metrics: tuple[str, ...]) -> None:
    _dense_checkpoint(config, work / 'dense.pth')
    proc = run_tool('train.py', config, '--work-dir', str(work / 'mvq'),
                    *opts(**SMALL, **data, model__init_checkpoint=work / 'dense.pth'))
    assert len(CLUSTER_LINE.findall(proc.stdout + proc.stderr)) == 1
    records = scalars(work / 'mvq')
    for metric in metrics:
        values = [r[metric] for r in records if metric in r]
        assert values and 0.0 <= values[-1] <= 100.0, metric
    ratio = [r['mvq/compression_ratio'] for r in records if 'mvq/compression_ratio' in r]
    assert ratio and ratio[0] > 3
    for name in ('iter_2.pth', 'model.mvq', 'mvq_report.json'):
        assert (work / 'mvq' / name).is_file(), name
    for ckpt in ('iter_2.pth', 'model.mvq'):
        test = run_tool('test.py', config, str(work / 'mvq' / ckpt), '--work-dir',
                        str(work / f'test_{ckpt}'), *opts(**data, **SETTINGS))
        out = test.stdout + test.stderr
        assert not CLUSTER_LINE.search(out)
        for metric in metrics:
            assert metric in out, (ckpt, metric)


def test_mask_rcnn_canvas(canvas_root, tmp_path):
    root = canvas_root / 'coco'
    data = {}
    for split, name in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        data[f'{split}_dataloader__dataset__data_root'] = f'{root}/'
        data[f'{split}_dataloader__dataset__ann_file'] = f'annotations/instances_{name}.json'
    for split in ('val', 'test'):
        data[f'{split}_evaluator__ann_file'] = f'{root}/annotations/instances_val.json'
    _train_and_test('configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py', tmp_path, data,
                    ('coco/bbox_mAP', 'coco/segm_mAP'))


def test_deeplabv3_canvas(canvas_root, tmp_path):
    root = canvas_root / 'seg'
    data = {f'{split}_dataloader__dataset__data_root': str(root)
            for split in ('train', 'val', 'test')}
    _train_and_test('configs/demo/deeplabv3_r50-d8_canvas_mvq.py', tmp_path, data, ('mIoU',))
