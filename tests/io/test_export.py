"""Export (``mvq_plugin.io.export`` and ``tools/export.py``): dense state dicts and ONNX with
in-graph Gather(codebook) * mask."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from artifact_nets import ConvNet, trained_stats

import mvq_plugin as mvq
from mvq_plugin.core import set_codebook_quant
from mvq_plugin.io.export import build_arch, export_onnx

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _export_cli(*args: str) -> tuple[int, str]:
    """``tools/export.py ARGS`` as a user runs it (``artifact_nets`` importable)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'export.py'), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module', params=['out_channel', 'in_channel'])
def artifact(tmp_path_factory, request):
    """(compressed source model with quant on, its .mvq path), in both layouts."""
    torch.manual_seed(0)
    model = trained_stats(ConvNet(num_classes=7))
    mvq.compress(model, mvq.MVQConfig(num_codewords=32, kmeans_iters=2, block_size=8, n=2, m=8,
                                      vector_axis=request.param))
    set_codebook_quant(model, True)
    path = tmp_path_factory.mktemp('export') / 'net.mvq'
    mvq.save(model, path)
    return model.eval(), path


ARCH = ['--arch', 'artifact_nets:small_convnet', '--arch-kwargs', '{"num_classes": 7}']


def test_dense_export_loads_in_plain_pytorch(artifact, tmp_path):
    model, path = artifact
    out = tmp_path / 'dense.pth'
    rc, text = _export_cli(str(path), str(out), '--to', 'dense', *ARCH)
    assert rc == 0 and 'wrote dense state dict' in text
    state = torch.load(out, weights_only=True)
    assert not any('parametrizations' in k for k in state)
    plain = ConvNet(num_classes=7).eval()
    plain.load_state_dict(state)  # strict: exactly the plain model's keys
    x = torch.randn(2, 3, 8, 8)
    # Same weights bit for bit; the outputs differ only by the conv's summation order (the
    # compressed layers' weights are channels-last views, the plain ones contiguous).
    for name, q in mvq.quantized_layers(model).items():
        assert torch.equal(plain.get_submodule(name).weight, model.get_submodule(name).weight)
    torch.testing.assert_close(plain(x), model(x), rtol=0, atol=1e-5)

    wrapped = tmp_path / 'mm.pth'
    assert _export_cli(str(path), str(wrapped), '--to', 'dense', '--mmengine', *ARCH)[0] == 0
    ckpt = torch.load(wrapped, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['arch'] == 'artifact_nets:small_convnet'
    assert ckpt['meta']['mvq_config']['num_codewords'] == 32
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in state.items())


def test_onnx_export_gathers_codewords_in_graph(artifact, tmp_path):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    model, path = artifact
    out = tmp_path / 'net.onnx'
    rc, text = _export_cli(str(path), str(out), '--to', 'onnx', '--input-shape', '2,3,8,8',
                           *ARCH)
    assert rc == 0 and 'OK' in text
    graph = onnx.load(str(out)).graph
    ops = [node.op_type for node in graph.node]
    layers = mvq.quantized_layers(model)
    # the fc compresses along its 64 inputs, not along its 7 outputs
    axis = next(iter(layers.values())).vector_axis
    assert sorted(layers) == ['conv1', 'conv2'] + (['fc'] if axis == 'in_channel' else [])
    assert ops.count('Gather') >= len(layers)
    # No initializer holds a compressed layer's dense weight: it is computed in the graph.
    dense_shapes = {tuple(q.weight_shape) for q in layers.values()}
    init_shapes = {tuple(init.dims) for init in graph.initializer}
    assert not dense_shapes & init_shapes
    assert (32, 8) in init_shapes  # a codebook
    x = torch.randn(2, 3, 8, 8)
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    (y,) = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        assert float((torch.from_numpy(y) - model(x)).abs().max()) <= 1e-5


def test_export_onnx_reports_mismatch(artifact, tmp_path):
    """A difference above ``--tol`` is a non-zero exit (tolerance -1: any difference is)."""
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    _, path = artifact
    rc, text = _export_cli(str(path), str(tmp_path / 'x.onnx'), '--to', 'onnx',
                           '--input-shape', '1,3,8,8', '--tol', '-1', *ARCH)
    assert rc == 1 and 'FAILED' in text


def test_export_onnx_restores_each_quantization_switch(artifact, tmp_path):
    pytest.importorskip('onnxruntime')
    _, path = artifact
    model = ConvNet(num_classes=7).eval()
    mvq.load(model, path)
    layers = mvq.quantized_layers(model)
    first = next(iter(layers))
    layers[first].codebook_quant = False  # the loaded int8 codebooks are exact either way
    before = {n: q.codebook_quant for n, q in layers.items()}
    assert export_onnx(model, str(tmp_path / 'n.onnx'), (1, 3, 8, 8)) <= 1e-5
    assert {n: q.codebook_quant for n, q in layers.items()} == before


def test_build_model_specs():
    net = build_arch('artifact_nets:small_convnet', {'width': 32})
    assert net.conv1.out_channels == 32
    with pytest.raises(ValueError, match='must be timm:NAME'):
        build_arch('resnet18')
    with pytest.raises(ValueError, match="no callable 'nope'"):
        build_arch('artifact_nets:nope')
    pytest.importorskip('torchvision')
    tv = build_arch('torchvision:resnet18', {'num_classes': 3})
    assert tv.fc.out_features == 3


def test_build_timm_model():
    pytest.importorskip('timm')
    net = build_arch('timm:resnet18', {'num_classes': 4})
    assert net.fc.out_features == 4
