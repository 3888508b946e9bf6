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

pytestmark = [pytest.mark.slow, pytest.mark.mmcv_ops]

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


def _train_and_test(config: str, work, data: dict, metrics: tuple[str, ...],
                    extra: dict | None = None, log_keys: tuple[str, ...] = ()) -> None:
    _dense_checkpoint(config, work / 'dense.pth')
    proc = run_tool('train.py', config, '--work-dir', str(work / 'mvq'),
                    *opts(**SMALL, **data, **(extra or {}),
                          model__init_checkpoint=work / 'dense.pth'))
    assert len(CLUSTER_LINE.findall(proc.stdout + proc.stderr)) == 1
    for key in log_keys:  # e.g. distillation terms in the train log lines
        assert f'{key}: ' in proc.stdout + proc.stderr, key
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


def _coco_data(canvas_root) -> dict:
    root = canvas_root / 'coco'
    data = {}
    for split, name in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        data[f'{split}_dataloader__dataset__data_root'] = f'{root}/'
        data[f'{split}_dataloader__dataset__ann_file'] = f'annotations/instances_{name}.json'
    for split in ('val', 'test'):
        data[f'{split}_evaluator__ann_file'] = f'{root}/annotations/instances_val.json'
    return data


def _seg_data(canvas_root) -> dict:
    return {f'{split}_dataloader__dataset__data_root': str(canvas_root / 'seg')
            for split in ('train', 'val', 'test')}


def test_mask_rcnn_canvas(canvas_root, tmp_path):
    """With self-distillation of the FPN neck's levels (feature mimicking, no logits)."""
    _train_and_test('configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py', tmp_path,
                    _coco_data(canvas_root), ('coco/bbox_mAP', 'coco/segm_mAP'),
                    extra={'custom_hooks.0.distill.logits_weight': 0,
                           'custom_hooks.0.distill.features.neck': 1.0,
                           'default_hooks.logger.interval': 1},
                    log_keys=('loss_feat_neck',))


def test_deeplabv3_canvas(canvas_root, tmp_path):
    _train_and_test('configs/demo/deeplabv3_r50-d8_canvas_mvq.py', tmp_path,
                    _seg_data(canvas_root), ('mIoU',))


# The README recipe: an upstream config whose backbone still points at a pretrained URL, the
# dense weights from load_from. No network here: the Pretrained init must be skipped, and the
# MVQ tensors a dense checkpoint cannot have must not be reported as missing.
URL_BACKBONE = {
    'configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py': (
        "model = dict(model=dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
        "checkpoint='torchvision://resnet50'))))", 'torchvision://resnet50'),
    'configs/demo/deeplabv3_r50-d8_canvas_mvq.py': (
        "model = dict(model=dict(pretrained='open-mmlab://resnet50_v1c'))",
        'open-mmlab://resnet50_v1c'),
}


@pytest.mark.parametrize('config', list(URL_BACKBONE))
def test_load_from_skips_pretrained_url_offline(canvas_root, tmp_path, config):
    override, url = URL_BACKBONE[config]
    leaf = tmp_path / 'leaf.py'
    leaf.write_text(f"_base_ = ['{REPO / config}']\n{override}\n")
    _dense_checkpoint(config, tmp_path / 'full.pth')
    state = torch.load(tmp_path / 'full.pth', weights_only=True)['state_dict']
    genuinely_missing = next(k for k in state if k.endswith('.running_mean'))
    del state[genuinely_missing]
    torch.save({'state_dict': state}, tmp_path / 'dense.pth')
    data = (_coco_data if 'mask-rcnn' in config else _seg_data)(canvas_root)
    proc = run_tool('train.py', str(leaf), '--work-dir', str(tmp_path / 'mvq'),
                    *opts(**SETTINGS, **data, train_cfg__max_iters=1,
                          train_cfg__val_interval=100, default_hooks__checkpoint__interval=100,
                          train_dataloader__batch_size=2, load_from=tmp_path / 'dense.pth'))
    out = proc.stdout + proc.stderr
    skipped = [line for line in out.splitlines()
               if 'skipped the upstream Pretrained initialisation' in line]
    assert len(skipped) == 1 and url in skipped[0]
    assert any('dense weights come from load_from=' in line and 'dense.pth' in line
               for line in out.splitlines())
    assert len(CLUSTER_LINE.findall(out)) == 1
    missing = [line for line in out.splitlines() if 'missing keys in source state_dict' in line]
    assert len(missing) == 1 and genuinely_missing in missing[0]
    assert 'parametrizations' not in missing[0]
