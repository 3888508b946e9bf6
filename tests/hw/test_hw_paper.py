"""The paper's headline comparison (docs/hardware.md) stays what the docs say."""
import pytest

from mvq_plugin import hw
from mvq_plugin.hw import paper


@pytest.mark.slow
def test_resnet18_workload_matches_traced_model():
    torchvision = pytest.importorskip('torchvision')
    traced = hw.extract_workload(torchvision.models.resnet18(), (1, 3, 224, 224))
    built = paper.resnet18_workload()
    key = lambda lay: (lay.name, lay.sr, lay.sc, lay.t, lay.groups, lay.stride)  # noqa: E731
    assert [key(x) for x in traced] == [key(x) for x in built]
    assert built.macs == 1_814_073_344


def test_headline_numbers_in_docs():
    reps = paper.headline()
    g = reps['vs_ews'].gains()
    assert g['both']['energy_efficiency'] == pytest.approx(2.30, abs=0.005)
    assert g['both']['array_area_reduction'] == pytest.approx(0.585, abs=0.0005)
    assert g['both']['tops_per_w'] == pytest.approx(8.46, abs=0.005)
    assert g['sparsity_only']['energy_efficiency'] == pytest.approx(2.00, abs=0.005)
    assert g['vq_only']['energy_efficiency'] == pytest.approx(1.75, abs=0.005)
    assert g['both']['speedup'] == pytest.approx(0.81, abs=0.005)
    assert reps['vs_ews'].baseline.tops_per_w == pytest.approx(3.70, abs=0.005)
    gw = reps['vs_ws'].gains()['both']
    assert gw['energy_efficiency'] == pytest.approx(2.91, abs=0.005)
    # the VQ stream is what moves DRAM energy; sparsity is what moves MAC energy
    v = reps['vs_ews'].variants
    assert v['vq_only'].total('energy_dram') < v['sparsity_only'].total('energy_dram')
    assert v['sparsity_only'].total('energy_mac') < 0.26 * reps['vs_ews'].baseline.total(
        'energy_mac')


def test_bandwidth_limit_gives_the_speedup():
    rows = dict(paper.sensitivity())
    assert rows['weight-load bandwidth B = 128 bits/cycle']['speedup'] == pytest.approx(
        1.56, abs=0.005)
    assert rows['activations stay on chip (no DRAM activation traffic)'][
        'energy_efficiency'] == pytest.approx(3.43, abs=0.005)
    assert rows['conv1 also compressed (no dense multipass layer)']['speedup'] == pytest.approx(
        1.00, abs=0.005)


def test_render_has_all_sections():
    text = paper.render()
    for head in ('MVQ vs ews', 'MVQ vs ws', 'Energy by component', 'Area by component',
                 'What EWS adds', 'Sensitivity'):
        assert head in text
