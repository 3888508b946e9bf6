"""timm front end of the budget allocation: ``create_model(..., budget=...)``."""
from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip('timm')

import mvq_plugin  # noqa: E402
from mvq_plugin.allocation import InfeasibleBudget  # noqa: E402
from mvq_plugin.hw import estimate  # noqa: E402
from mvq_plugin.integrations import timm as mvq_timm  # noqa: E402

CHOICES = dict(nm=['2:8', 'none'], block_size=[8], num_codewords=[16, 64])
BASE = dict(kmeans_iters=3)


def _calib():
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(4, 3, 64, 64, generator=gen)]


def test_create_model_with_a_size_budget(tmp_path):
    dense = timm.create_model('resnet18', pretrained=False, num_classes=10)
    limit = 32 * sum(p.numel() for p in dense.parameters()) / 8 / 12  # 12x smaller
    model = mvq_timm.create_model('resnet18', BASE, num_classes=10, budget=dict(bytes=limit),
                                  calib=_calib(), choices=CHOICES,
                                  sensitivity_cache=str(tmp_path / 'sens.json'))
    alloc = model.mvq_allocation
    stats = mvq_plugin.compression_stats(model)
    assert stats.bits == alloc.predicted['bits'] <= 8 * limit
    assert 'conv1' not in alloc.choices  # pretrained_cfg's first conv stays out
    assert model.mvq_config.overrides == {**alloc.overrides}
    chosen = {c.label for c in alloc.choices.values()}
    assert len(chosen) > 1  # per-layer settings, not one everywhere
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_energy_budget_uses_the_pretrained_input_size():
    model = mvq_timm.create_model('resnet18', BASE, num_classes=10,
                                  budget=dict(energy_ratio=0.6, hw='mvq_32x32'),
                                  calib=_calib(), choices=CHOICES)
    alloc = model.mvq_allocation
    assert alloc.budget.input_shape == (1, 3, 224, 224)
    report = estimate(model, (1, 3, 224, 224), arch='mvq_32x32')
    assert report.energy_pj <= alloc.limits['energy_pj']
    assert report.energy_pj == pytest.approx(alloc.predicted['energy_pj'], rel=1e-9)


def test_unreachable_budget_and_stray_arguments():
    with pytest.raises(InfeasibleBudget, match='smallest reachable'):
        mvq_timm.create_model('resnet18', BASE, num_classes=10, budget=dict(bytes=1000),
                              calib=_calib(), choices=CHOICES)
    with pytest.raises(ValueError, match='pass budget='):
        mvq_timm.create_model('resnet18', BASE, num_classes=10, choices=CHOICES)
