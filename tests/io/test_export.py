"""tools/export.py: dense state dicts and ONNX with in-graph Gather(codebook) * mask."""
import importlib.util
from pathlib import Path

import pytest
import torch
from artifact_nets import ConvNet, trained_stats

import mvq_plugin as mvq
from mvq_plugin.core import set_codebook_quant

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def export_tool():
    spec = importlib.util.spec_from_file_location('mvq_export_tool', ROOT / 'tools' / 'export.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    """(compressed source model with quant on, its .mvq path)."""
    torch.manual_seed(0)
    model = trained_stats(ConvNet(num_classes=7))
    mvq.compress(model, mvq.MVQConfig(num_codewords=32, kmeans_iters=2))
    set_codebook_quant(model, True)
    path = tmp_path_factory.mktemp('export') / 'net.mvq'
    mvq.save(model, path)
    return model.eval(), path


ARCH = ['--arch', 'artifact_nets:small_convnet', '--arch-kwargs', '{"num_classes": 7}']


def test_dense_export_loads_in_plain_pytorch(export_tool, artifact, tmp_path, capsys):
    model, path = artifact
    out = tmp_path / 'dense.pth'
    assert export_tool.main([str(path), str(out), '--to', 'dense', *ARCH]) == 0
    assert 'wrote dense state dict' in capsys.readouterr().out
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
    assert export_tool.main([str(path), str(wrapped), '--to', 'dense', '--mmengine', *ARCH]) == 0
    ckpt = torch.load(wrapped, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    assert ckpt['meta']['arch'] == 'artifact_nets:small_convnet'
    assert ckpt['meta']['mvq_config']['num_codewords'] == 32
    assert all(torch.equal(ckpt['state_dict'][k], v) for k, v in state.items())


def test_onnx_export_gathers_codewords_in_graph(export_tool, artifact, tmp_path, capsys):
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    model, path = artifact
    out = tmp_path / 'net.onnx'
    assert export_tool.main([str(path), str(out), '--to', 'onnx', '--input-shape', '2,3,8,8',
                             *ARCH]) == 0
    assert 'OK' in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    ops = [node.op_type for node in graph.node]
    layers = mvq.quantized_layers(model)
    assert ops.count('Gather') >= len(layers) == 3
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


def test_export_onnx_reports_mismatch(export_tool, artifact, tmp_path, monkeypatch):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    _, path = artifact
    monkeypatch.setattr(export_tool, 'export_onnx', lambda *a, **k: 1.0)
    assert export_tool.main([str(path), str(tmp_path / 'x.onnx'), '--to', 'onnx',
                             '--input-shape', '1,3,8,8', *ARCH]) == 1


def test_build_model_specs(export_tool):
    net = export_tool.build_model('artifact_nets:small_convnet', {'width': 32})
    assert net.conv1.out_channels == 32
    with pytest.raises(ValueError, match='must be timm:NAME'):
        export_tool.build_model('resnet18')
    with pytest.raises(ValueError, match="no callable 'nope'"):
        export_tool.build_model('artifact_nets:nope')
    pytest.importorskip('torchvision')
    tv = export_tool.build_model('torchvision:resnet18', {'num_classes': 3})
    assert tv.fc.out_features == 3


def test_build_timm_model(export_tool):
    pytest.importorskip('timm')
    net = export_tool.build_model('timm:resnet18', {'num_classes': 4})
    assert net.fc.out_features == 4
