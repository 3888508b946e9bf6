"""Reports: totals, scalars, files (JSON/CSV/MD/PNG), decomposition, tables, CLI."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvq_plugin import hw
from mvq_plugin.hw import LayerWorkload, Workload

ROOT = Path(__file__).resolve().parents[2]


def small_workload():
    layers = [LayerWorkload('conv1', 'conv', 3, 16, (3, 3), (1, 1), 1, (16, 16), (16, 16)),
              LayerWorkload('conv2', 'conv', 16, 32, (3, 3), (2, 2), 1, (16, 16), (8, 8)),
              LayerWorkload('fc', 'linear', 32, 10, (1, 1), (1, 1), 1, (1, 1), (1, 1))]
    return Workload('small', layers, (1, 3, 16, 16)).with_compression(8, 16, 2, 8)


def test_decomposition_and_scalars():
    rep = hw.estimate(small_workload(), arch='mvq', baseline='ews', rows=16, cols=16)
    gains = rep.gains()
    assert set(gains) == {'sparsity_only', 'vq_only', 'both', 'total'}
    assert gains['both'] == gains['total']
    assert rep.variants['both'] is rep
    assert not rep.variants['vq_only'].arch.sparse_compute
    assert not rep.variants['sparsity_only'].arch.vq_weights
    # the baseline runs the dense network
    assert rep.baseline.total('macs') == rep.total('dense_macs')
    assert rep.total('macs') < rep.total('dense_macs')
    s = rep.scalars()
    assert s['hw/energy_efficiency'] == pytest.approx(rep.baseline.energy_pj / rep.energy_pj)
    assert s['hw/array_area_reduction'] == pytest.approx(
        1 - rep.area['array'] / rep.baseline.area['array'])
    assert s['hw/tops_per_w'] == pytest.approx(rep.ops / rep.chip_energy_pj)
    assert s['hw/cycles'] == rep.cycles


def test_write_all_formats(tmp_path):
    pytest.importorskip('matplotlib')
    rep = hw.estimate(small_workload(), arch='mvq', baseline='ews', rows=16, cols=16)
    paths = rep.write(tmp_path)
    assert set(paths) == {'json', 'csv', 'md', 'png'}
    doc = json.loads(paths['json'].read_text())
    assert doc['totals']['cycles'] == rep.cycles and len(doc['layers']) == 3
    assert set(doc['gains']) == {'sparsity_only', 'vq_only', 'both', 'total'}
    rows = list(csv.DictReader(paths['csv'].open()))
    assert [r['Layer name'] for r in rows] == ['conv1', 'conv2', 'fc']
    assert int(rows[1]['Total Cycles']) == rep.layers['cycles'][1]
    assert 'SRAM IFMAP Reads' in rows[0] and 'Overall Util %' in rows[0]
    assert '## Gain, decomposed' in paths['md'].read_text()
    assert (tmp_path / 'hw_report_cycles.png').stat().st_size > 1000
    assert (tmp_path / 'hw_report_energy.png').stat().st_size > 1000
    with pytest.raises(ValueError, match="unknown report formats \\['pdf'\\]"):
        rep.write(tmp_path, formats=['pdf'])


def test_table_text_lists_layers_and_totals():
    rep = hw.estimate(small_workload(), arch='ws')
    text = rep.table_text()
    assert 'conv2' in text and 'TOPS/W (on-chip)' in text
    assert rep.gains() == {}


def test_custom_table_and_node(tmp_path):
    import yaml
    raw = yaml.safe_load(hw.DEFAULT_TABLE.read_text())
    t45 = hw.load_table(raw, node_nm=45)
    t40 = hw.load_table(raw, node_nm=40)
    assert t45.energy['mult_int8'] == pytest.approx(0.2)
    assert t40.energy['mult_int8'] == pytest.approx(0.2 * 40 / 45)
    assert t40.area['mult_int8'] == pytest.approx(282 * (40 / 45) ** 2)
    assert t40.energy['dram_bit'] == pytest.approx(20.3)       # off chip: not scaled
    assert t45.sram_bit_energy(32) == pytest.approx(0.3125)
    assert t45.sram_bit_energy(16) == pytest.approx((0.15625 * 0.3125) ** 0.5)
    raw['energy']['dram_bit']['value'] = 0.0
    path = tmp_path / 't.yaml'
    path.write_text(yaml.safe_dump(raw))
    rep = hw.estimate(small_workload(), arch='ews', table=str(path))
    assert rep.total('energy_dram') == 0
    raw['energy']['mult_int8'] = -1
    with pytest.raises(ValueError, match=r'energy.mult_int8=-1'):
        hw.load_table(raw)
    del raw['energy']['mult_int8']
    with pytest.raises(ValueError, match="missing 'mult_int8'"):
        hw.load_table(raw)


def _cli(*args: str) -> tuple[int, str]:
    """``tools/hw_report.py ARGS`` as a user runs it: (exit code, stdout)."""
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'hw_report.py'), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout


def test_cli_topology(tmp_path):
    topo = tmp_path / 'net.csv'
    hw.write_topology(small_workload().layers[:2], topo)
    rc, out = _cli('--topology', str(topo), '--arch', 'ws', '--rows', '8', '--cols', '8',
                   '--format', 'csv')
    assert rc == 0
    rows = list(csv.DictReader(out.splitlines()))
    assert len(rows) == 2
    assert int(rows[0]['Total Cycles']) == int(hw.ws_cycles(27, 16, 256, 8, 8))
    rc, out = _cli('--topology', str(topo), '--format', 'json')
    assert rc == 0
    doc = json.loads(out)
    assert doc['arch']['name'] == 'EWS-CMS' and doc['baseline']['arch']['name'] == 'EWS'
    assert doc['sparse_tile'] == 'out_channel'
    assert doc['totals']['macs'] < doc['totals']['dense_macs']
    out = tmp_path / 'r.md'
    assert _cli('--topology', str(topo), '--format', 'md', '--baseline', 'none',
                '--output', str(out))[0] == 0
    assert out.read_text().startswith('# Hardware report: net on EWS-CMS')
    assert _cli('--topology', str(topo), '--checkpoint', 'x.pth')[0] == 2


@pytest.mark.slow
@pytest.mark.mmcv_ops
def test_cli_config_mvq_and_detector(tmp_path):
    pytest.importorskip('mmdet')
    # An MVQ config is planned with its own settings (k=256, 2:8); the stem stays dense.
    rc, out = _cli('--config', str(ROOT / 'configs/demo/resnet18_fashion-mnist_mvq.py'),
                   '--input-shape', '1', '1', '28', '28', '--format', 'json')
    assert rc == 0
    doc = json.loads(out)
    layers = {lay['name']: lay for lay in doc['layers']}
    assert not layers['backbone.conv1']['compressed']
    assert layers['backbone.layer1.0.conv1']['num_codewords'] == 256
    assert doc['totals']['macs'] < doc['totals']['dense_macs']
    # A two-stage detector traces with data samples describing the input.
    rc, out = _cli('--config', str(ROOT / 'configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py'),
                   '--input-shape', '1', '3', '128', '128', '--format', 'json')
    assert rc == 0
    doc = json.loads(out)
    names = [lay['name'] for lay in doc['layers']]
    assert 'roi_head.bbox_head.shared_fcs.0' in names and 'neck.fpn_convs.0.conv' in names


@pytest.mark.slow
def test_cli_timm(tmp_path):
    pytest.importorskip('timm')
    pytest.importorskip('matplotlib')
    out = subprocess.run([sys.executable, str(ROOT / 'tools' / 'hw_report.py'), '--timm',
                          'resnet18', '--format', 'md', '--plot', str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert '| layer4.1.conv2 |' in out.stdout and 'Gain, decomposed' in out.stdout
    assert (tmp_path / 'hw_report_energy.png').exists()


def test_png_without_matplotlib_warns_and_writes_the_rest(tmp_path):
    """With matplotlib hidden, ``write`` logs the promised warning instead of raising."""
    code = f'''
import logging, sys
sys.modules['matplotlib'] = None  # import matplotlib -> ImportError
logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')
from mvq_plugin import hw
from mvq_plugin.hw import LayerWorkload, Workload
layers = [LayerWorkload('conv', 'conv', 16, 32, (3, 3), (1, 1), 1, (8, 8), (8, 8))]
wl = Workload('w', layers, (1, 16, 8, 8)).with_compression(8, 16, 2, 8)
rep = hw.estimate(wl, arch='mvq', baseline='ews', rows=16, cols=16)
print(sorted(rep.write({str(tmp_path)!r}, formats=['json', 'png', 'md'])))
'''
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['json', 'md']"
    assert 'WARNING hw: PNG plots skipped' in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['hw_report.json', 'hw_report.md']


def test_cli_costs_any_artifact(tmp_path):
    """``--model SPEC --checkpoint X.mvq``: a torchvision/timm/any-factory artifact, no config;
    the compressed layers are costed with the artifact's own k, not a plan's."""
    sys.path.insert(0, str(ROOT / 'tests' / 'io'))
    import torch
    from artifact_nets import ConvNet, trained_stats

    import mvq_plugin as mvq
    torch.manual_seed(0)
    net = trained_stats(ConvNet(num_classes=7))
    mvq.compress(net, mvq.MVQConfig(num_codewords=32, kmeans_iters=2, block_size=8, n=2, m=8))
    mvq.set_codebook_quant(net, True)
    mvq.save(net, tmp_path / 'net.mvq')
    env = dict(os.environ, PYTHONPATH=str(ROOT / 'tests' / 'io'))
    args = ['--model', 'artifact_nets:small_convnet', '--model-kwargs', '{"num_classes": 7}',
            '--input-shape', '1', '3', '8', '8', '--format', 'json']
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'hw_report.py'), *args,
                           '--checkpoint', str(tmp_path / 'net.mvq')], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    layers = {lay['name']: lay for lay in json.loads(proc.stdout)['layers']}
    assert {n for n, lay in layers.items() if lay['compressed']} == set(
        mvq.quantized_layers(net))
    assert layers['conv1']['num_codewords'] == 32   # the artifact's, not the plan's 512
    rc, _ = _cli('--topology', 'x.csv', '--checkpoint', str(tmp_path / 'net.mvq'))
    assert rc == 2
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'hw_report.py'), '--timm',
                           'resnet18', '--checkpoint', 'dense.pth'], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and 'must be a .mvq artifact' in proc.stderr
