"""Stillmaker & Baas scaling reproduces the paper's Table 9 N-Efficiency row."""
import pytest

from mvq_plugin import hw
from mvq_plugin.hw.scaling import TABLE9


@pytest.mark.parametrize('design', TABLE9, ids=lambda d: d.name)
def test_table9_normalisation_within_2_percent(design):
    assert design.normalized() == pytest.approx(design.paper_normalized, rel=0.02)


def test_normalize_efficiency_values():
    # SparTen 0.68 TOPS/W at 45 nm 1.1 V -> 40 nm 0.99 V
    assert hw.normalize_efficiency(0.68, 45, vdd=1.1) == pytest.approx(0.9838, abs=1e-3)
    # the same node and supply is the identity
    assert hw.normalize_efficiency(2.5, 40, vdd=0.99) == pytest.approx(2.5)
    # S2TA's two reported points land close together at 40 nm (1.64 and 2.19 in the paper)
    s16 = hw.normalize_efficiency(14, 16, vdd=0.8)
    s65 = hw.normalize_efficiency(1.1, 65, vdd=1.1)
    assert s16 == pytest.approx(1.642, abs=2e-3) and s65 == pytest.approx(2.205, abs=2e-3)
    # interpolation rules differ only between tabulated nodes
    assert hw.energy_factor(32, 0.9, 'HP', 'nearest') == hw.energy_factor(32, 0.9, 'HP', 'log')
    lin = hw.energy_factor(28, 0.9, 'LP', 'linear')
    assert hw.energy_factor(28, 0.9, 'LP', 'log') < lin


def test_the_paper_1_73x_is_a_ratio_of_reported_figures():
    s2ta = next(d for d in TABLE9 if d.name == 'S2TA-65nm')
    assert 3.8 / s2ta.paper_normalized == pytest.approx(1.73, abs=0.01)
    assert 3.8 / s2ta.normalized() == pytest.approx(1.72, abs=0.01)


def test_errors_name_the_value():
    with pytest.raises(ValueError, match=r'node_nm=3 must be a number in \[7, 180\]'):
        hw.normalize_efficiency(1.0, 3, vdd=1.0)
    with pytest.raises(ValueError, match=r'vdd=5 must be a supply voltage'):
        hw.normalize_efficiency(1.0, 45, vdd=5)
    with pytest.raises(ValueError, match="device='XP'"):
        hw.energy_factor(45, 1.0, 'XP')
    with pytest.raises(ValueError, match='tops_per_w=0'):
        hw.normalize_efficiency(0, 45, vdd=1.0)
