"""Bit matching on ResNet-18's real shapes and effective MACs (``tools/bench/matching.py``).

Nothing here trains or clusters a ResNet; the accounted bits come from ``mvq.plan``.
"""
from pathlib import Path

import pytest

pytest.importorskip('mmengine')

import torch  # noqa: E402
from matching import (  # noqa: E402  (tools/bench, on sys.path by conftest.py)
    Setting,
    accounted_bits,
    closest_setting,
    effective_macs,
    match_points,
)

import mvq_plugin as mvq  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


#: MVQ settings on the standard-width model (mvq 2:8 d=8 k=64/256/1024, 2:8 d=16 k=256).
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


def test_closest_setting_for_4_of_8_and_its_error(resnet18):
    target = accounted_bits(resnet18, Setting('mvq', 8, 256, 2, 8))
    s, bits = closest_setting(resnet18, target, 'mvq', 4, 8, prefer_block_size=8,
                              tolerance=0.02)
    # 4:8 spends 7 mask bits per 8 weights (2:8: 5), so the index loses 2 bits: k = 256 / 4
    assert (s.block_size, s.num_codewords, s.n, s.m) == (8, 64, 4, 8)
    assert abs(bits / target - 1) <= 0.02 and bits == accounted_bits(resnet18, s)
    with pytest.raises(ValueError, match=r'no mvq setting within 1%'):
        closest_setting(resnet18, target // 3, 'mvq', 4, 8, tolerance=0.01)
