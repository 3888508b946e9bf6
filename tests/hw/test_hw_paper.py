"""The paper's headline comparison (docs/hardware.md) stays what the docs say.

``tools/bench/hw_paper.py`` renders it; the test runs the tool as a user does and reads the
figures it writes with ``--json``.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mvq_plugin import hw
from mvq_plugin.hw.zoo import resnet18_workload

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def paper(tmp_path_factory):
    out = tmp_path_factory.mktemp('paper') / 'figures.json'
    proc = subprocess.run([sys.executable, str(REPO / 'tools/bench/hw_paper.py'), '--json',
                           str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(out.read_text()), text=proc.stdout)


@pytest.mark.slow
def test_resnet18_workload_matches_traced_model():
    torchvision = pytest.importorskip('torchvision')
    traced = hw.extract_workload(torchvision.models.resnet18(), (1, 3, 224, 224))
    built = resnet18_workload()
    key = lambda lay: (lay.name, lay.sr, lay.sc, lay.t, lay.groups, lay.stride)  # noqa: E731
    assert [key(x) for x in traced] == [key(x) for x in built]
    assert built.macs == 1_814_073_344


def test_headline_numbers_in_docs(paper):
    g = paper['vs_ews']['gains']
    assert g['both']['energy_efficiency'] == pytest.approx(2.30, abs=0.005)
    assert g['both']['array_area_reduction'] == pytest.approx(0.585, abs=0.0005)
    assert g['both']['tops_per_w'] == pytest.approx(8.46, abs=0.005)
    assert g['sparsity_only']['energy_efficiency'] == pytest.approx(2.00, abs=0.005)
    assert g['vq_only']['energy_efficiency'] == pytest.approx(1.75, abs=0.005)
    assert g['both']['speedup'] == pytest.approx(0.81, abs=0.005)
    assert paper['vs_ews']['tops_per_w']['baseline'] == pytest.approx(3.70, abs=0.005)
    gw = paper['vs_ws']['gains']['both']
    assert gw['energy_efficiency'] == pytest.approx(2.91, abs=0.005)
    # the VQ stream is what moves DRAM energy; sparsity is what moves MAC energy
    e = paper['vs_ews']['energy']
    assert e['vq_only']['dram'] < e['sparsity_only']['dram']
    assert e['sparsity_only']['mac'] < 0.26 * e['baseline']['mac']


def test_bandwidth_limit_gives_the_speedup(paper):
    rows = paper['sensitivity']
    assert rows['weight-load bandwidth B = 128 bits/cycle']['speedup'] == pytest.approx(
        1.56, abs=0.005)
    assert rows['activations stay on chip (no DRAM activation traffic)'][
        'energy_efficiency'] == pytest.approx(3.43, abs=0.005)
    assert rows['conv1 also compressed (no dense multipass layer)']['speedup'] == pytest.approx(
        1.00, abs=0.005)


def test_render_has_all_sections(paper):
    for head in ('MVQ vs ews', 'MVQ vs ws', 'Energy by component', 'Area by component',
                 'What EWS adds', 'Sensitivity'):
        assert head in paper['text']
