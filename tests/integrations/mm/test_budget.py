"""``MVQModel(budget=...)`` through the real config system, tools/train.py, tools/test.py and
tools/allocate.py on real Fashion-MNIST."""
from __future__ import annotations

import json
import re

import pytest
import torch
from mmengine.config import Config

pytest.importorskip('mmpretrain')

from conftest import REPO, opts, run_tool, scalars  # noqa: E402

import mvq_plugin  # noqa: E402
from mvq_plugin.integrations.mm.allocate_config import allocate_from_config  # noqa: E402
from mvq_plugin.integrations.mm.config_model import build_model_from_config  # noqa: E402

DENSE = 'configs/demo/resnet18_fashion-mnist_dense.py'
BUDGET = 'configs/demo/resnet18_fashion-mnist_mvq_budget.py'
LIMIT = 2**20  # bytes
SMALL = {'model.budget.bytes': f'{LIMIT}B', 'model.budget.calib_batches': 1,
         'model.budget.choices.num_codewords': [16, 32], 'model.budget.choices.block_size': [8],
         'model.calib_dataloader.batch_size': 16, 'model.mvq.kmeans_iters': 5}


@pytest.fixture(scope='module')
def dense_ckpt(tmp_path_factory):
    model, _ = build_model_from_config(REPO / DENSE)
    path = tmp_path_factory.mktemp('dense') / 'dense.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    return path


def test_config_builds_the_allocated_model(dense_ckpt, tmp_path):
    options = dict(SMALL, **{'model.init_checkpoint': str(dense_ckpt),
                             'model.budget.cache': str(tmp_path / 'sens.json')})
    model, _ = build_model_from_config(REPO / BUDGET, options)
    alloc = model.mvq_allocation
    assert alloc is not None and alloc.predicted['bits'] <= 8 * LIMIT
    assert alloc.info['measured'] > 0
    for name, choice in alloc.choices.items():
        lp = next(lp for lp in model.mvq_plan if lp.name == name)
        assert lp.will_compress == (not choice.dense)
        if not choice.dense:
            q = mvq_plugin.quantized_layers(model)[name]
            assert (q.num_codewords, q.block_size) == (choice.num_codewords, choice.block_size)
    # The same allocation again: every measurement from the cache.
    again, _ = build_model_from_config(REPO / BUDGET, options)
    assert again.mvq_allocation.info['measured'] == 0
    assert again.mvq_allocation.choices == alloc.choices
    # tools/allocate.py's library call: a command-line limit replaces the config's.
    other, _ = allocate_from_config(REPO / BUDGET, checkpoint=str(dense_ckpt),
                                    budget=dict(bytes='1.5MiB'), options=options)
    assert other.limits == {'bits': 8 * 1.5 * 2**20} and other.info['measured'] == 0


def test_budget_without_dense_weights_is_refused():
    cfg = Config.fromfile(str(REPO / BUDGET))
    with pytest.raises(ValueError, match='model.budget needs model.init_checkpoint'):
        build_model_from_config(cfg)


@pytest.mark.slow
def test_train_test_and_allocate_tools(dense_ckpt, tmp_path):
    tiny = dict(train_dataloader__dataset__indices=64, train_dataloader__batch_size=16,
                train_dataloader__num_workers=0, val_dataloader__dataset__indices=100,
                val_dataloader__batch_size=50, val_dataloader__num_workers=0,
                test_dataloader__dataset__indices=100, test_dataloader__batch_size=50,
                test_dataloader__num_workers=0, randomness__deterministic=True)
    small = {k.replace('.', '__'): (str(v).replace(' ', '') if isinstance(v, list) else v)
             for k, v in SMALL.items()}
    common = dict(tiny, **small, model__init_checkpoint=dense_ckpt,
                  model__budget__cache=tmp_path / 'sens.json')
    proc = run_tool('train.py', BUDGET, '--work-dir', str(tmp_path / 'train'),
                    *opts(**common, train_cfg__max_iters=4, train_cfg__val_interval=4,
                          default_hooks__checkpoint__interval=4))
    log = proc.stdout + proc.stderr
    assert 'MVQ allocation for ImageClassifier' in log
    artifact = tmp_path / 'train' / 'model.mvq'
    assert artifact.is_file()
    val = [r['accuracy/top1'] for r in scalars(tmp_path / 'train') if 'accuracy/top1' in r][-1]
    # tools/test.py on the artifact: the layers the artifact stores, no new allocation.
    proc = run_tool('test.py', BUDGET, str(artifact), '--work-dir', str(tmp_path / 'test'),
                    *opts(**tiny))
    out = proc.stdout + proc.stderr
    assert 'MVQ allocation for' not in out
    top1 = float(re.findall(r'accuracy/top1: ([0-9.]+)', out)[-1])
    assert top1 == pytest.approx(val, abs=1e-6)
    model, _ = build_model_from_config(REPO / BUDGET, {'model.artifact': str(artifact)})
    assert mvq_plugin.compression_stats(model).bits <= 8 * LIMIT
    # tools/allocate.py: the table and the JSON, and an unreachable budget named.
    out_json = tmp_path / 'alloc.json'
    proc = run_tool('allocate.py', BUDGET, '--checkpoint', str(dense_ckpt), '--bytes', '1.2MiB',
                    '--cache', str(tmp_path / 'sens.json'), '--out', str(out_json),
                    '--cfg-options', 'model.budget.calib_batches=1',
                    'model.budget.choices.num_codewords=[16,32]',
                    'model.budget.choices.block_size=[8]',
                    'model.calib_dataloader.batch_size=16', 'model.mvq.kmeans_iters=5')
    assert 'predicted' in proc.stdout
    result = json.loads(out_json.read_text())
    assert result['predicted']['bits'] <= 8 * 1.2 * 2**20 and result['overrides']
    assert result['info']['measured'] == 0  # the training run measured them
    proc = run_tool('allocate.py', BUDGET, '--checkpoint', str(dense_ckpt), '--bytes', '1KiB',
                    '--cfg-options', 'model.budget.calib_batches=1',
                    'model.calib_dataloader.batch_size=16', check=False)
    assert proc.returncode == 2 and 'smallest reachable is' in proc.stderr
