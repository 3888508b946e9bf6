"""timm integration: any timm model in one call (issue 6).

Random init only, never a download. Every architecture case compresses once and then checks
the plan, forward/backward, equality with ``to_dense`` and the artifact round trip into a
fresh ``timm.create_model``.
"""
import copy
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

timm = pytest.importorskip('timm')

from timm.data import resolve_data_config  # noqa: E402
from timm.layers import CondConv2d, Conv2dSame, MixedConv2d, ScaledStdConv2d, StdConv2d  # noqa: E402

import mvq_plugin  # noqa: E402
from mvq_plugin.core import MVQConfig, is_compressed, quantized_layers, set_codebook_quant, to_dense  # noqa: E402
from mvq_plugin.integrations import timm as mvq_timm  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: The in_channel layout these tests were written for (test_out_channel_through_timm names
#: the paper's layout).
LEGACY = dict(vector_axis='in_channel', codebook_scale='maxabs', kmeans_stop='objective')
CFG = dict(num_codewords=16, block_size=8, n=2, m=8, kmeans_iters=3, **LEGACY)

#: name -> (extra timm kwargs, input size, slow)
ARCHS = {
    'resnet18': ({}, 64, False),
    'resnet50': ({}, 64, True),
    'mobilenetv2_100': ({}, 64, False),
    'efficientnet_b0': ({}, 64, False),
    'regnetx_002': ({}, 64, False),
    'convnext_atto': ({}, 64, False),
    'vit_tiny_patch16_224': ({'img_size': 64}, 64, False),
    'resnetv2_50x1_bit': ({}, 64, True),
    # timm's layer zoo inside real models
    'efficientnet_cc_b0_4e': ({}, 64, False),  # CondConv2d
    'tf_mixnet_s': ({}, 64, False),  # MixedConv2d, Conv2dSame
    'nf_resnet26': ({}, 64, False),  # ScaledStdConv2d
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on 2 shared cores, OpenMP's spinning barriers make 2 threads
    20-40x slower than 1 as soon as another process is busy (measured: resnet50 case 3 s vs
    75 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weight_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every module the plan must list: conv/linear, or any other owner of a weight matrix."""
    out = {}
    for name, m in model.named_modules():
        w = m._parameters.get('weight')
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) or (
                w is not None and w.dim() >= 2) or is_compressed(m):
            out[name] = m
    return out


def _undo_zero_init(model: nn.Module) -> nn.Module:
    """Re-initialises what timm zero-initialises for residual branches (last BN gamma,
    resnetv2's conv3 weight, nf-resnet's conv3 gain), so that every layer of a random-init
    model receives a gradient."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            for pname, p in m._parameters.items():
                if p is None or 'bias' in pname or p.abs().sum() > 0:
                    continue
                if pname == 'weight' and p.dim() >= 2:
                    nn.init.kaiming_normal_(p)
                else:
                    p.fill_(1.0)
    return model


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.weight.shape[1] == 1


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=[pytest.mark.slow] if slow else []) for n, (_, _, slow) in ARCHS.items()
])
def test_architecture(name, tmp_path):
    kwargs, size, _ = ARCHS[name]
    model = _undo_zero_init(mvq_timm.create_dense_model(name, num_classes=10, **kwargs))
    assert mvq_timm.compress_model(model, CFG) is model
    fresh_cfg = resolve_data_config(model=timm.create_model(name, num_classes=10, **kwargs))
    assert resolve_data_config(model=model) == fresh_cfg
    assert model.default_cfg is model.pretrained_cfg or model.default_cfg == model.pretrained_cfg

    # Plan: every weight layer listed, every dense one with its reason.
    plan = model.mvq_plan
    layers = _weight_layers(model)
    assert [lp.name for lp in plan] == list(layers)
    reasons = {lp.name: lp.reason for lp in plan}
    assert all(reasons[lp.name] for lp in plan.skipped)
    assert plan.compressed and sorted(quantized_layers(model)) == sorted(
        lp.name for lp in plan.compressed)
    first = model.pretrained_cfg['first_conv']
    assert reasons[first] == 'first conv (skip_first_conv)'
    depthwise = [n for n, m in layers.items() if _is_depthwise(m)]
    for n in depthwise:
        assert reasons[n].startswith('depthwise conv'), (n, reasons[n])
    if name in ('mobilenetv2_100', 'efficientnet_b0', 'convnext_atto'):
        assert depthwise
    if name == 'regnetx_002':  # grouped 3x3 convs with 8 channels per group compress at d=8
        grouped = [n for n, m in layers.items() if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert grouped and all(reasons[n] is None for n in grouped)
    if name == 'resnetv2_50x1_bit':
        std = [n for n, m in layers.items() if isinstance(m, StdConv2d)]
        assert len(std) > 50 and sum(reasons[n] is None for n in std) == len(std) - 1
    if name == 'efficientnet_cc_b0_4e':
        cc = {n: reasons[n] for n, m in layers.items() if isinstance(m, CondConv2d)}
        assert sum(r is None for r in cc.values()) == 16
        assert all(r is None or r.startswith('depthwise CondConv2d') for r in cc.values())
    if name == 'tf_mixnet_s':
        mixed = [n for n, m in model.named_modules() if isinstance(m, MixedConv2d)]
        assert mixed and any(reasons[f'{n}.0'] is None for n in mixed)
        assert any(isinstance(m, Conv2dSame) for m in layers.values())
    if name == 'nf_resnet26':
        assert sum(isinstance(m, ScaledStdConv2d) and reasons[n] is None
                   for n, m in layers.items()) == 28
    if name == 'vit_tiny_patch16_224':
        assert reasons['blocks.0.attn.qkv'] is None and reasons['blocks.0.mlp.fc2'] is None
    classifier = model.pretrained_cfg['classifier']
    assert reasons[classifier] is None  # compressed per the config by default

    x = torch.randn(2, 3, size, size)
    # Forward and backward: every codebook receives a gradient, the dense originals none.
    model.train()
    model(x).logsumexp(1).mean().backward()
    for layer, q in quantized_layers(model).items():
        assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0, layer
        assert model.get_submodule(layer).parametrizations.weight.original.grad is None

    # Exactly what to_dense computes.
    model.eval()
    with torch.no_grad():
        out = model(x)
        dense = to_dense(copy.deepcopy(model))
        assert not quantized_layers(dense)
        assert torch.equal(dense(x), out)

    # Artifact round trip into a fresh timm model, bit for bit (codebooks as stored).
    set_codebook_quant(model, True)
    path = tmp_path / f'{name}.mvq'
    mvq_plugin.save(model, path)
    fresh = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    mvq_plugin.load(fresh, path)
    fresh.eval()
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(fresh(x), ref)
    assert sorted(quantized_layers(fresh)) == sorted(quantized_layers(model))
    assert resolve_data_config(model=fresh) == fresh_cfg


def _save_dense(tmp_path, name='resnet18', suffix='.pth', **kwargs):
    torch.manual_seed(123)
    src = timm.create_model(name, num_classes=10, **kwargs)
    path = tmp_path / f'{name}_dense{suffix}'
    if suffix == '.safetensors':
        safetensors_torch = pytest.importorskip('safetensors.torch')
        safetensors_torch.save_file(src.state_dict(), str(path))
    else:
        torch.save(src.state_dict(), path)
    return src, path


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_create_model_from_local_file(tmp_path, suffix):
    src, path = _save_dense(tmp_path, suffix=suffix)
    model = mvq_timm.create_model('resnet18', mvq=CFG, pretrained_file=path, num_classes=10,
                                  pretrained_cfg_overlay=dict(num_classes=10))
    assert model.pretrained_cfg['file'] == str(path)
    assert resolve_data_config(model=model)['input_size'] == (3, 224, 224)
    # The clustering ran on the file's weights: the frozen originals are the file's tensors
    # and the reported error is measured against them.
    for layer in ('layer1.0.conv1', 'layer4.1.conv2', 'fc'):
        original = model.get_submodule(layer).parametrizations.weight.original
        assert torch.equal(original, src.get_submodule(layer).weight), layer
    assert torch.equal(model.conv1.weight, src.conv1.weight)  # first conv, dense
    assert torch.equal(model.bn1.running_var, src.bn1.running_var)
    q = quantized_layers(model)['layer1.0.conv1']
    w = src.layer1[0].conv1.weight
    err = (w - model.layer1[0].conv1.weight).norm() / w.norm()
    rec = next(r for r in model.mvq_report.layers if r.name == 'layer1.0.conv1')
    assert err.item() == pytest.approx(rec.relative_error, rel=1e-4) and err < 1
    assert q.codebook.shape == (16, 8)


def test_taylor_importance_with_calibration():
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    calib = lambda m: nn.functional.cross_entropy(m(x), y)  # noqa: E731
    base = _undo_zero_init(timm.create_model('resnet18', num_classes=10))
    a = mvq_timm.compress_model(copy.deepcopy(base), CFG)
    b = mvq_timm.compress_model(copy.deepcopy(base), dict(CFG, importance='taylor'),
                                taylor_loss=calib)
    qa, qb = quantized_layers(a), quantized_layers(b)
    assert sorted(qa) == sorted(qb)
    assert all(q.mask.sum(1).eq(2).all() for q in qb.values())
    assert any(not torch.equal(qa[n].mask, qb[n].mask) for n in qa)
    with pytest.raises(ValueError, match='taylor_loss'):
        mvq_timm.compress_model(copy.deepcopy(base), dict(CFG, importance='taylor'))


def test_pretrained_file_classifier_follows_timm_rules(tmp_path):
    """timm drops a file's classifier when num_classes differs from pretrained_cfg's."""
    src, path = _save_dense(tmp_path)
    model = mvq_timm.create_dense_model('resnet18', path, num_classes=10)
    assert torch.equal(model.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    assert not torch.equal(model.fc.weight, src.fc.weight)


def test_never_downloads(tmp_path):
    with pytest.raises(ValueError, match='download'):
        mvq_timm.create_model('resnet18', mvq=CFG, pretrained=True)
    with pytest.raises(ValueError, match='hub'):
        mvq_timm.create_model('hf-hub:timm/resnet18.a1_in1k', mvq=CFG)
    with pytest.raises(FileNotFoundError):
        mvq_timm.create_model('resnet18', mvq=CFG, pretrained_file=tmp_path / 'missing.pth')


def test_classifier_rules():
    torch.manual_seed(0)
    base = timm.create_model('resnet18', num_classes=10)
    own = dict(num_codewords=32, block_size=4, n=1, m=4)
    p = mvq_timm.plan(base, CFG, classifier=own)
    fc = next(lp for lp in p if lp.name == 'fc')
    assert (fc.config.num_codewords, fc.config.block_size, fc.config.n, fc.config.m) == (32, 4,
                                                                                       1, 4)
    assert next(lp for lp in p if lp.name == 'layer1.0.conv1').config.num_codewords == 16
    p = mvq_timm.plan(base, CFG, classifier=False)
    assert next(lp for lp in p if lp.name == 'fc').reason == "excluded by pattern '^fc$'"
    # m must divide the classifier's own d: the error names the field.
    with pytest.raises(ValueError, match='must divide block_size=4'):
        mvq_timm.plan(base, CFG, classifier=dict(block_size=4))
    model = mvq_timm.compress_model(base, MVQConfig(**CFG), classifier=own)
    assert quantized_layers(model)['fc'].codebook.shape == (32, 4)
    assert model.mvq_config.overrides == {'fc': own}
    # A nested classifier name (regnet, convnext: head.fc) is escaped in the rule.
    m2 = timm.create_model('regnetx_002', num_classes=10)
    cfg = mvq_timm.resolve_config(m2, CFG, classifier=dict(num_codewords=8))
    assert cfg.overrides == {r'head\.fc': {'num_codewords': 8}}


def test_first_conv_from_pretrained_cfg():
    model = timm.create_model('resnet18', num_classes=10)
    model.pretrained_cfg = dict(model.pretrained_cfg, first_conv='layer1.0.conv1')
    reasons = {lp.name: lp.reason for lp in mvq_timm.plan(model, CFG)}
    assert reasons['layer1.0.conv1'] == 'first conv (skip_first_conv)'
    assert reasons['conv1'] == 'C_in/groups=3 is not a multiple of block_size=8'
    # Tuples of names and names that do not exist.
    model.pretrained_cfg = dict(model.pretrained_cfg, first_conv=('conv1', 'layer2.0.conv1'))
    assert mvq_timm.first_conv_names(model) == ['conv1', 'layer2.0.conv1']
    model.pretrained_cfg = dict(model.pretrained_cfg, first_conv='nope')
    assert mvq_timm.first_conv_names(model) is None
    reasons = {lp.name: lp.reason for lp in mvq_timm.plan(model, CFG)}
    assert reasons['conv1'] == 'first conv (skip_first_conv)'  # the core's guess


class Zoo(nn.Module):
    """timm's special layers in one small network (no pretrained_cfg)."""

    def __init__(self):
        super().__init__()
        self.stem = StdConv2d(3, 16, 3)
        self.same = Conv2dSame(16, 32, 3, stride=2)
        self.mixed = MixedConv2d(32, 48, kernel_size=[3, 5])
        self.mixed_dw = MixedConv2d(48, 48, kernel_size=[3, 5], depthwise=True)
        self.scaled = ScaledStdConv2d(48, 32, 1)
        self.route = nn.Linear(32, 4)
        self.cc_pw = CondConv2d(32, 64, 1, num_experts=4)
        self.cc_3x3 = CondConv2d(64, 64, 3, num_experts=4)
        self.cc_dw = CondConv2d(64, 64, 3, groups=64, num_experts=4)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.scaled(self.mixed_dw(self.mixed(self.same(self.stem(x)))))
        r = torch.sigmoid(self.route(x.mean((2, 3))))
        x = self.cc_dw(self.cc_3x3(self.cc_pw(x, r), r), r)
        return self.fc(x.mean((2, 3)))


def test_layer_zoo(tmp_path):
    torch.manual_seed(0)
    net = Zoo()
    x = torch.randn(2, 3, 17, 17)  # odd size: Conv2dSame pads asymmetrically
    with torch.no_grad():
        before = net(x)
    cfg = dict(CFG, exclude=['^route$'])
    mvq_timm.compress_model(net, cfg)
    reasons = {lp.name: lp.reason for lp in net.mvq_plan}
    assert reasons == {
        'stem': 'first conv (skip_first_conv)',
        'same': None,
        'mixed.0': None,
        'mixed.1': None,
        'mixed_dw.0': 'depthwise conv (groups=24, C_in/groups=1)',
        'mixed_dw.1': 'depthwise conv (groups=24, C_in/groups=1)',
        'scaled': None,
        'route': "excluded by pattern '^route$'",
        'cc_pw': None,
        'cc_3x3': reasons['cc_3x3'],
        'cc_dw': 'depthwise CondConv2d (groups=64, C_in/groups=1)',
        'fc': None,
    }
    assert reasons['cc_3x3'].startswith('CondConv2d with 3x3 kernels')
    types = {lp.name: lp.type for lp in net.mvq_plan}
    assert types['same'] == 'Conv2dSame' and types['cc_pw'] == 'CondConv2d'
    # A 1x1 CondConv's experts are (O, C) rows: sub-vectors run along the input channel.
    q = quantized_layers(net)['cc_pw']
    assert q.weight_shape == (4, 64 * 32) and q.assignments.numel() == 4 * 64 * 32 // 8
    assert q.mask.view(4, 64, 4, 8).sum(-1).eq(2).all()  # 2:8 inside each sub-vector
    assert net.cc_pw.weight.view(4, 64, 4, 8)[~q.mask.view(4, 64, 4, 8)].eq(0).all()

    net.eval()
    with torch.no_grad():
        out = net(x)
        assert out.shape == before.shape and not torch.equal(out, before)
        assert torch.equal(to_dense(copy.deepcopy(net))(x), out)
    net.train()
    net(x).sum().backward()
    assert all(q.codebook.grad.abs().sum() > 0 for q in quantized_layers(net).values())

    # The spatial layout compresses any CondConv kernel (d = kh*kw cuts whole kernels).
    torch.manual_seed(0)
    net2 = Zoo()
    cfg2 = dict(CFG, overrides={'cc_3x3': dict(vector_axis='spatial', block_size=9,
                                               method='vq')})
    mvq_timm.compress_model(net2, cfg2)
    assert {lp.name: lp.reason for lp in net2.mvq_plan}['cc_3x3'] is None
    q = quantized_layers(net2)['cc_3x3']
    assert q.vector_axis == 'spatial' and q.codebook.shape == (16, 9)
    kernels = net2.cc_3x3.weight.view(4 * 64 * 64, 9)
    assert torch.equal(kernels, q.codebook[q.assignments])
    net2.eval()
    with torch.no_grad():
        assert torch.equal(to_dense(copy.deepcopy(net2))(x), net2(x))

    set_codebook_quant(net, True)
    mvq_plugin.save(net, tmp_path / 'zoo.mvq')
    fresh = Zoo()
    mvq_plugin.load(fresh, tmp_path / 'zoo.mvq')
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), net(x))


def test_condconv_unsupported_without_registration():
    """Without the adapter's rule CondConv2d would still be listed, with a reason."""
    core_compress = importlib.import_module('mvq_plugin.core.plan')

    saved = core_compress._LAYER_TYPES.pop(CondConv2d)
    try:
        p = mvq_plugin.plan(Zoo(), MVQConfig(**CFG))
        reasons = {lp.name: lp.reason for lp in p}
        assert reasons['cc_pw'] == 'unsupported layer type CondConv2d (only Conv2d and Linear)'
    finally:
        core_compress._LAYER_TYPES[CondConv2d] = saved
    # Other owners of a weight matrix are listed too (nothing is skipped silently).
    emb = nn.Sequential(nn.Embedding(100, 16), nn.Linear(16, 16))
    p = mvq_plugin.plan(emb, MVQConfig(**CFG))
    assert [(lp.name, lp.reason) for lp in p][0] == (
        '0', 'unsupported layer type Embedding (only Conv2d and Linear)')


def test_param_groups_and_timm_optimizer():
    from timm.optim import create_optimizer_v2

    model = mvq_timm.create_model('vit_tiny_patch16_224', mvq=CFG, num_classes=10, img_size=32,
                                  depth=2)
    groups = mvq_timm.param_groups(model, weight_decay=0.05)
    books = {id(q.codebook) for q in quantized_layers(model).values()}
    assert {id(p) for p in groups[0]['params']} == books and groups[0]['weight_decay'] == 0
    rest = [p for g in groups[1:] for p in g['params']]
    assert not books & {id(p) for p in rest}
    frozen = {id(m.parametrizations.weight.original) for n, m in model.named_modules()
              if is_compressed(m)}
    assert not frozen & {id(p) for g in groups for p in g['params']}
    decayed = {id(p) for g in groups if g['weight_decay'] > 0 for p in g['params']}
    assert id(model.pos_embed) not in decayed  # the model's own no_weight_decay() names
    assert id(model.head.bias) not in decayed and id(model.blocks[0].norm1.weight) not in decayed
    opt = create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05,
                              param_group_fn=lambda m: mvq_timm.param_groups(m, 0.05))
    by_id = {id(p): g['weight_decay'] for g in opt.param_groups for p in g['params']}
    assert all(by_id[i] == 0 for i in books)
    assert by_id[id(model.get_submodule('patch_embed.proj').weight)] == 0.05


@pytest.mark.slow
def test_train_timm_tool(tmp_path):
    from mvq_plugin.data import find_fashion_mnist

    find_fashion_mnist()  # `make test` unpacks it; a missing set is a failure, not a skip
    out = tmp_path / 'run'
    cmd = [sys.executable, str(ROOT / 'tools' / 'train_timm.py'), '--model', 'resnet18',
           '--data', 'fashion_mnist', '--subset', '64', '--val-subset', '64',
           '--img-size', '32', '--batch-size', '16', '--epochs', '4', '--lr', '0.05',
           '--no-aug', '--k', '16', '--d', '8', '--vector-axis', 'in_channel',
           '--kmeans-iters', '3', '--nm', '2:8',
           '--classifier-k', '16', '--classifier-d', '8', '--codebook-quant-epochs', '1',
           '--device', 'cpu', '--output', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    assert (out / 'model.mvq').is_file() and (out / 'train.log').is_file()
    epochs = report['epochs']
    assert len(epochs) == 4 and all(e['steps'] == 4 for e in epochs)
    assert len(report['losses']) == 16
    first, last = epochs[0]['train_loss'], epochs[-1]['train_loss']
    assert first > 1.8 and last < 0.8 * first, (first, last)  # ln(10) = 2.30 at the start
    assert epochs[-1]['codebook_quant'] and not epochs[0]['codebook_quant']
    assert report['plan']['compressed'] == 20 and report['plan']['skipped'] == 1
    skipped = [r for r in report['plan']['layers'] if not r['compressed']]
    assert skipped[0]['name'] == 'conv1' and skipped[0]['reason'].startswith('first conv')
    assert report['compression']['compression_ratio'] > 5
    acc = report['accuracy']
    assert acc['dense'] is None and 0 <= acc['final']['top1'] <= 100  # in %
    assert acc['final']['images'] == 64
    # The artifact loads into a fresh timm model and computes the reported accuracy's logits.
    model = mvq_timm.load_model('resnet18', out / 'model.mvq', num_classes=10, in_chans=3)
    assert len(quantized_layers(model)) == 20
    assert model.mvq_config.overrides == {'fc': {'num_codewords': 16, 'block_size': 8}}


@pytest.mark.slow
def test_train_timm_tool_recipe(tmp_path):
    """The recipe flags: sparse epoch, self-distillation, data-aware mask and clustering."""
    out = tmp_path / 'run'
    cmd = [sys.executable, str(ROOT / 'tools' / 'train_timm.py'), '--model', 'resnet18',
           '--data', 'fashion_mnist', '--subset', '64', '--val-subset', '64',
           '--img-size', '32', '--batch-size', '16', '--epochs', '2', '--sparse-epochs', '1',
           '--lr', '0.05', '--no-aug', '--k', '16', '--d', '8', '--vector-axis', 'in_channel',
           '--kmeans-iters', '3', '--nm', '2:8',
           '--distill', '--distill-feature', 'layer4=0.5', '--importance', 'activation',
           '--kmeans-weights', 'activation', '--calib-batches', '2',
           '--codebook-quant-epochs', '1', '--device', 'cpu', '--output', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    assert len(report['losses']) == 8  # 2 epochs x 4 steps: 4 sparse + 4 codebook
    assert [tuple(e) for e in report['events']] == [
        ('pruned', 0), ('sparse_end', 4), ('clustered', 4), ('codebook_quant', 4),
        ('trained', 8)]
    assert 0 <= report['accuracy']['clustered']['top1'] <= 100
    assert report['mvq_config']['importance'] == 'activation'
    assert report['mvq_config']['kmeans_weights'] == 'activation'
    model = mvq_timm.load_model('resnet18', out / 'model.mvq', num_classes=10, in_chans=3)
    assert len(quantized_layers(model)) == 20
    bad = subprocess.run(cmd[:-2] + ['--sparse-epochs', '3', '--output', str(tmp_path / 'b')],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and 'sparse_iters=12 is longer than the whole run' in bad.stderr


def test_integrations_package_imports_no_framework():
    code = ('import sys, mvq_plugin.integrations; '
            'assert "timm" not in sys.modules, "timm imported eagerly"')
    res = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.slow
def test_train_timm_tool_image_folder(tmp_path):
    """timm's create_dataset on an ImageFolder tree (real Fashion-MNIST images), grayscale."""
    from PIL import Image

    from mvq_plugin.data import load_fashion_mnist

    images, labels = load_fashion_mnist('test')
    root = tmp_path / 'folder'
    for split, start in (('train', 0), ('val', 500)):
        for cls in (0, 1, 7):
            idx = (labels[start:] == cls).nonzero()[:8, 0] + start
            (root / split / f'c{cls}').mkdir(parents=True)
            for i in idx.tolist():
                Image.fromarray(images[i, 0].numpy(), mode='L').save(
                    root / split / f'c{cls}' / f'{i}.png')
    out = tmp_path / 'run'
    cmd = [sys.executable, str(ROOT / 'tools' / 'train_timm.py'), '--model', 'resnet18',
           '--data', str(root), '--in-chans', '1', '--img-size', '32', '--batch-size', '8',
           '--epochs', '2', '--lr', '0.05', '--k', '16', '--kmeans-iters', '2',
           '--classifier-dense', '--opt', 'adamw', '--weight-decay', '0.05', '--device', 'cpu',
           '--output', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    assert report['timm_kwargs']['num_classes'] == 3 and report['timm_kwargs']['in_chans'] == 1
    assert report['train_images'] == 24 and report['val_images'] == 24
    assert report['data_config']['input_size'] == [1, 32, 32] and len(
        report['data_config']['mean']) == 1
    fc = next(r for r in report['plan']['layers'] if r['name'] == 'fc')
    assert fc['reason'] == "excluded by pattern '^fc$'"
    assert len(report['losses']) == 6 and all(math.isfinite(v) for v in report['losses'])
    assert report['accuracy']['final']['images'] == 24


def test_compress_model_takes_calibration_for_the_data_aware_settings():
    """``calib`` reaches the compression: activation importance and weighted k-means work
    through the one-call API and choose other masks than magnitude importance."""
    torch.manual_seed(0)
    base = _undo_zero_init(timm.create_model('resnet18', num_classes=10))
    x = torch.randn(4, 3, 32, 32) * torch.tensor([4.0, 0.25, 1.0]).view(1, 3, 1, 1)
    aware = mvq_timm.compress_model(
        copy.deepcopy(base), MVQConfig(**CFG, importance='activation',
                                       kmeans_weights='activation'), calib=[x])
    plain = mvq_timm.compress_model(copy.deepcopy(base), MVQConfig(**CFG))
    qa, qp = quantized_layers(aware), quantized_layers(plain)
    assert sorted(qa) == sorted(qp) and len(qa) > 10
    differs = [n for n in qa if not torch.equal(qa[n].mask, qp[n].mask)]
    assert len(differs) >= len(qa) // 2, differs
    assert aware.mvq_config.importance == 'activation'
    with pytest.raises(ValueError, match='needs calibration data'):
        mvq_timm.compress_model(copy.deepcopy(base), MVQConfig(**CFG, importance='activation'))
