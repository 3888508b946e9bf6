"""Bit matching on ResNet-18's real shapes and effective MACs (``mvq_plugin.core.matching``),
and the report of ``tools/bench/accuracy_vs_cr.py`` from fake runs.

Nothing here trains or clusters a ResNet; the accounted bits come from ``mvq.plan``. The
report test still loads the benchmark script, whose tables and notes are replaced with the
recipe benchmark of the next issue.
"""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmengine')

import torch  # noqa: E402

import mvq_plugin as mvq  # noqa: E402
from mvq_plugin.core.matching import (  # noqa: E402
    Setting,
    accounted_bits,
    effective_macs,
    match_points,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location(
        'accuracy_vs_cr_bench', ROOT / 'tools' / 'bench' / 'accuracy_vs_cr.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


#: The benchmark's MVQ settings (mvq 2:8 d=8 k=64/256/1024, 2:8 d=16 k=256).
MVQ_POINTS = (Setting('mvq', 8, 64, 2, 8), Setting('mvq', 8, 256, 2, 8),
              Setting('mvq', 8, 1024, 2, 8), Setting('mvq', 16, 256, 2, 8))


@pytest.fixture(scope='module')
def resnet18():
    pytest.importorskip('mmpretrain')
    from mvq_plugin.integrations.mm.config_model import build_model_from_config
    return build_model_from_config(ROOT / 'configs/demo/resnet18_fashion-mnist_dense.py')[0]


def _macs(model, setting):
    return effective_macs(model, setting, torch.zeros(1, 1, 28, 28),
                          forward_fn=lambda m, x: m(x, mode='tensor'))


def test_the_benchmark_uses_these_points(bench):
    assert bench.MVQ_POINTS == MVQ_POINTS and bench.Setting is Setting


def test_points_match_within_3_percent(resnet18):
    points = match_points(resnet18, MVQ_POINTS[:3], 0.03)
    assert [pt.settings['vq'].label for pt in points] == [
        'vq d=8 k=1024', 'vq d=8 k=2048', 'vq d=4 k=256']
    ratios = []
    for pt in points:
        assert pt.settings['mvq'].prunes and not pt.settings['vq'].prunes
        # prune_vq: the MVQ setting with plain k-means, so exactly the same bits.
        assert pt.bits['prune_vq'] == pt.bits['mvq']
        for method in ('mvq', 'vq', 'prune_vq'):
            assert abs(pt.mismatch(method)) <= 0.03, (method, pt.record())
        ratios.append(pt.ratio('mvq'))
    assert ratios == sorted(ratios, reverse=True)
    assert ratios == pytest.approx([22.58, 18.95, 15.73], abs=0.01)
    # The demo's MVQ run (2:8, d=8, k=256) reported exactly these bits for this model.
    assert points[1].bits['mvq'] == 18_875_456
    assert points[0].params == 11_175_370


def test_fourth_point_and_tolerance_error(resnet18):
    (pt,) = match_points(resnet18, MVQ_POINTS[3:4], 0.03)
    assert pt.settings['vq'].label == 'vq d=8 k=512' and pt.mismatch('vq') == 0
    with pytest.raises(ValueError, match='no vq setting within'):
        match_points(resnet18, MVQ_POINTS[:1], 0.03, vq_block_sizes=(16,))
    with pytest.raises(ValueError, match='needs mvq settings'):
        match_points(resnet18, [Setting('vq', 8, 256)])


def test_effective_macs_skip_pruned_weights(resnet18):
    dense = _macs(resnet18, None)
    assert _macs(resnet18, Setting('vq', 8, 1024)) == dense
    stem = 14 * 14 * 64 * 7 * 7  # conv1 (1x7x7, stride 2 on 28x28) stays dense
    sparse = _macs(resnet18, MVQ_POINTS[0])  # every other layer 2:8
    assert sparse == stem + (dense - stem) // 4


def test_accounted_bits_equal_compression_stats(tiny_net):
    setting = Setting('mvq', 8, 16, 2, 8)
    expected = accounted_bits(tiny_net, setting)
    mvq.compress(tiny_net, mvq.MVQConfig(**setting.mvq_fields(), kmeans_iters=2))
    assert mvq.compression_stats(tiny_net).bits == expected


def _fake_results():
    runs = []
    for point, (mvq_top1, vq_top1) in enumerate([(90.0, 89.0), (88.0, 89.5)]):
        for seed, jitter in ((0, 0.1), (1, -0.1)):
            for method, top1 in (('mvq', mvq_top1), ('vq', vq_top1), ('prune_vq', 85.0)):
                runs.append(dict(point=point, method=method, seed=seed, top1=top1 + jitter,
                                 iters=100, reused=False,
                                 top1_no_ft=top1 - 20, compression_ratio=20.0 - point,
                                 mean_rel_error=0.5, seconds=60.0))
    return runs


def test_outputs_from_fake_runs(bench, tmp_path):
    params = 1000
    points = [bench.MatchedPoint(
        {'mvq': bench.Setting('mvq', 8, 64, 2, 8), 'vq': bench.Setting('vq', 8, 1024),
         'prune_vq': bench.Setting('prune_vq', 8, 64, 2, 8)},
        {'mvq': 1600 + 100 * p, 'vq': 1590 + 100 * p, 'prune_vq': 1600 + 100 * p}, params)
        for p in range(2)]
    macs = {(p, m): 100 if m == 'vq' else 25 for p in range(2) for m in bench.METHODS}
    dense = dict(top1=91.0, macs=100, params=params)
    rows = bench.summarize(_fake_results(), points, macs, dense)
    assert len(rows) == 6
    assert rows[0]['top1_mean'] == pytest.approx(90.0)
    assert (rows[0]['top1_min'], rows[0]['top1_max']) == pytest.approx((89.9, 90.1))
    deltas = bench.mvq_vs_vq(rows)
    assert deltas[0]['mvq_wins_all_seeds'] and deltas[1]['mvq_loses_all_seeds']
    assert deltas[1]['delta_top1'] == pytest.approx(-1.5)
    long_rows = [r for r in rows if r['point'] == 1 and r['method'] != 'prune_vq']
    long_deltas = bench.mvq_vs_vq(long_rows)
    notes = bench.reading(rows, deltas, long_deltas, 100, 400, 91.0)
    assert 'MVQ ahead on every seed at 1 of 2 ratios, behind on every seed at 1' in notes[0]
    assert '20.0x +5.00, 18.8x +3.00 points' in notes[1]  # mvq - prune_vq after FT
    assert '4.0x fewer effective MACs' in notes[2]
    assert '-1.50 points after 100 iterations and -1.50 after 400' in notes[3]
    assert 'within 6.00 points of the dense 91.00%' in notes[4]  # prune_vq at 85
    meta = dict(command='python tools/bench/accuracy_vs_cr.py --iters 100', iters=100,
                long_iters=400, lr=0.01, kmeans_iters=1, seeds=[0, 1], dense=dense,
                dense_checkpoint='ckpt.pth', wall_s=60.0, runs_s=60.0, num_runs=12,
                num_reused=0, notes=notes)
    bench.write_markdown(tmp_path / 'r.md', meta, rows, deltas, long_rows, long_deltas)
    bench.plot(tmp_path / 'r.png', rows, 91.0)
    text = (tmp_path / 'r.md').read_text()
    assert meta['command'] in text and 'MVQ beats vq on every seed' in text
    assert 'MVQ is below vq on every seed' in text and notes[-1] in text
    assert '## Longer fine-tuning: 400 iterations' in text
    assert (tmp_path / 'r.png').read_bytes()[:4] == b'\x89PNG'
    json.dumps(rows)  # JSON-ready
