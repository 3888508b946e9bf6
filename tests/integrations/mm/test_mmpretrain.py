"""mmpretrain end to end through tools/train.py and tools/test.py on real Fashion-MNIST.

One dense run, one MVQ run (checkpoints at iterations 2 and 4), then: test on the checkpoint
and on the artifact, resume from iteration 2, and a 2-process gloo run.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmpretrain')

from conftest import REPO, opts, run_tool, scalars  # noqa: E402

from mvq_plugin.integrations.mm import load_checkpoint_safely  # noqa: E402

DENSE = 'configs/demo/resnet18_fashion-mnist_dense.py'
MVQ = 'configs/demo/resnet18_fashion-mnist_mvq.py'
TINY = dict(train_dataloader__dataset__indices=64, train_dataloader__batch_size=16,
            train_dataloader__num_workers=0, val_dataloader__dataset__indices=100,
            val_dataloader__batch_size=50, val_dataloader__num_workers=0,
            test_dataloader__dataset__indices=100, test_dataloader__batch_size=50,
            test_dataloader__num_workers=0, randomness__deterministic=True)
SETTINGS = dict(model__mvq__num_codewords=32, model__mvq__kmeans_iters=5)
MVQ_TINY = dict(TINY, **SETTINGS, train_cfg__max_iters=4, train_cfg__val_interval=4,
                default_hooks__checkpoint__interval=2,
                default_hooks__checkpoint__max_keep_ckpts=3)
CLUSTER_LINE = re.compile(r'MVQHook: clustering \d+ layers')

pytestmark = pytest.mark.slow


def _top1(output: str) -> float:
    found = re.findall(r'accuracy/top1: ([0-9.]+)', output)
    assert found, output[-3000:]
    return float(found[-1])


def _mvq_state(ckpt: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint_safely(ckpt, 'cpu')['state_dict']
    return {k: v for k, v in state.items() if '.parametrizations.weight.0.' in k}


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('mmpretrain')
    run_tool('train.py', DENSE, '--work-dir', str(root / 'dense'),
             *opts(**TINY, train_cfg__max_iters=4, train_cfg__val_interval=4,
                   default_hooks__checkpoint__interval=4))
    dense_ckpt = root / 'dense' / 'iter_4.pth'
    proc = run_tool('train.py', MVQ, '--work-dir', str(root / 'mvq'),
                    *opts(**MVQ_TINY, load_from=dense_ckpt))
    return dict(root=root, dense=dense_ckpt, mvq=root / 'mvq', log=proc.stdout + proc.stderr)


def test_train_clusters_once_logs_and_writes_artifact(runs):
    assert len(CLUSTER_LINE.findall(runs['log'])) == 1
    records = scalars(runs['mvq'])
    ratio = [r['mvq/compression_ratio'] for r in records if 'mvq/compression_ratio' in r]
    # Logged once at clustering, then with every train log line; k=32: 5 index bits + 5
    # mask-code bits per 8 weights, plus the dense stem and BN/bias parameters.
    assert ratio and set(ratio) == {ratio[0]} and ratio[0] > 15
    assert any('accuracy/top1' in r for r in records)
    hw = [r for r in records if 'hw/energy_efficiency' in r]
    assert hw and all(r['hw/energy_efficiency'] > 1.0 for r in hw)
    assert any(k.startswith('mvq/rel_error/') for r in records for k in r)
    for name in ('iter_2.pth', 'iter_4.pth', 'model.mvq', 'mvq_report.json', 'mvq_report.md'):
        assert (runs['mvq'] / name).is_file(), name
    assert (runs['mvq'] / 'hw' / 'compressed' / 'hw_report.json').is_file()


def test_clustered_from_the_dense_checkpoint(runs):
    dense = load_checkpoint_safely(runs['dense'], 'cpu')['state_dict']
    mvq = load_checkpoint_safely(runs['mvq'] / 'iter_4.pth', 'cpu')['state_dict']
    key = 'backbone.layer2.0.conv1'
    assert torch.equal(mvq[f'{key}.parametrizations.weight.original'], dense[f'{key}.weight'])
    # The codebook was fitted to those weights (relative error well below 1).
    report = (runs['mvq'] / 'mvq_report.json').read_text()
    assert '"backbone.layer2.0.conv1"' in report


def test_test_py_on_checkpoint_and_artifact_never_clusters(runs):
    val_top1 = [r['accuracy/top1'] for r in scalars(runs['mvq']) if 'accuracy/top1' in r][-1]
    results = {}
    for name in ('iter_4.pth', 'model.mvq'):
        proc = run_tool('test.py', MVQ, str(runs['mvq'] / name), '--work-dir',
                        str(runs['root'] / f'test_{name}'), *opts(**TINY, **SETTINGS))
        out = proc.stdout + proc.stderr
        assert not CLUSTER_LINE.search(out)
        results[name] = _top1(out)
    assert results['iter_4.pth'] == pytest.approx(val_top1, abs=1e-6)
    assert results['model.mvq'] == pytest.approx(val_top1, abs=1e-6)


def test_resume_matches_uninterrupted_run(runs):
    work = runs['root'] / 'resumed'
    proc = run_tool('train.py', MVQ, '--work-dir', str(work), '--resume',
                    str(runs['mvq'] / 'iter_2.pth'), *opts(**MVQ_TINY))
    assert not CLUSTER_LINE.search(proc.stdout + proc.stderr)
    a, b = _mvq_state(runs['mvq'] / 'iter_4.pth'), _mvq_state(work / 'iter_4.pth')
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:  # bit-exact (the int8 scale buffer is NaN: derived on every pass)
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)


def test_distributed_two_processes_hold_identical_state(runs, tmp_path):
    overlay = tmp_path / 'dist_overlay.py'
    overlay.write_text(
        f"_base_ = [{str(REPO / MVQ)!r}]\n"
        "custom_imports = dict(imports=['mvq_plugin', 'mm_test_hooks'], "
        "allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='mvq_plugin.MVQHook', codebook_quant_start_iter=0),\n"
        "                dict(type='DumpMVQStateHook')]\n"
        "env_cfg = dict(dist_cfg=dict(backend='gloo'))\n")
    work = tmp_path / 'dist'
    proc = run_tool('dist_train.sh', str(overlay), '2', '--work-dir', str(work),
                    *opts(**MVQ_TINY, load_from=runs['dense']))
    out = proc.stdout + proc.stderr
    assert re.search(r'clustering \d+ layers \(\d+ on rank 0 of 2\)', out)
    r0 = torch.load(work / 'mvq_state_rank0.pt')
    r1 = torch.load(work / 'mvq_state_rank1.pt')
    single = _mvq_state(runs['mvq'] / 'iter_4.pth')
    assert r0.keys() == r1.keys() and len(r0) > 10
    for name in r0:
        for part in ('codebook', 'assignments', 'mask'):
            assert torch.equal(r0[name][part], r1[name][part]), (name, part)
        # Split clustering reproduces the single-process clustering exactly.
        key = f'{name}.parametrizations.weight.0.assignments'
        assert torch.equal(r0[name]['assignments'], single[key]), name


def test_checkpoint_with_other_settings_is_refused(runs, tmp_path):
    proc = run_tool('test.py', MVQ, str(runs['mvq'] / 'iter_4.pth'), '--work-dir',
                    str(tmp_path), *opts(**TINY), check=False)  # config k=256, checkpoint k=32
    assert proc.returncode != 0
    assert 'has shape (32, 16) but the config builds (256, 16)' in proc.stderr
