import copy
import math

import pytest
import torch
import torchvision
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core import (
    blocking,
    codebook_param_groups,
    is_compressed,
    layer_bits,
    set_codebook_quant,
)

#: The in_channel layout with a max-abs int8 scale and the objective stopping rule (what these
#: tests were written for); the out_channel cases name their axis.
LEGACY = dict(block_size=8, n=2, m=8, vector_axis='in_channel', codebook_scale='maxabs',
              kmeans_stop='objective')
CFG = dict(num_codewords=16, kmeans_iters=10, **LEGACY)


def _x():
    return torch.randn(2, 3, 8, 8)


def test_plan_lists_every_layer_with_reason(tiny_net):
    cfg = mvq.MVQConfig(exclude=['^fc$'], **CFG)
    p = mvq.plan(tiny_net, cfg)
    reasons = {lp.name: lp.reason for lp in p}
    assert reasons == {
        'stem': 'first conv (skip_first_conv)',
        'conv': None,
        'pw': None,
        'dw': 'depthwise conv (groups=32, C_in/groups=1)',
        'fc': "excluded by pattern '^fc$'",
    }
    conv = p.layers[1]
    assert conv.num_subvectors == 32 * 3 * 3 * 16 // 8
    assert conv.bits == layer_bits(32 * 16 * 9, d=8, k=16, n=2, m=8, codebook_bits=8,
                                   prunes=True).total
    assert conv.bits == 576 * 4 + (4608 // 8) * 5 + 16 * 8 * 8 + 32
    text = str(p)
    assert 'depthwise conv' in text and '2 of 5 layers compressed' in text
    recs = p.records()
    assert recs[1]['num_codewords'] == 16 and recs[0]['compressed'] is False


def test_plan_other_skip_reasons():
    net = nn.Sequential(nn.Conv2d(3, 12, 1), nn.Conv2d(12, 16, 3), nn.Conv2d(16, 16, 1),
                        nn.Linear(16, 8), nn.Conv1d(8, 8, 1))
    p = mvq.plan(net, mvq.MVQConfig(num_codewords=32, min_params=200, skip_first_conv=False,
                                    **LEGACY))
    reasons = [lp.reason for lp in p]
    assert reasons[0] == 'C_in/groups=3 is not a multiple of block_size=8'
    assert reasons[1] == 'C_in/groups=12 is not a multiple of block_size=8'
    assert reasons[2] == 'fewer sub-vectors (32) than codewords (k=32)' or reasons[2] is None
    assert reasons[3] == 'too small (128 weights < min_params=200)'
    assert reasons[4].startswith('unsupported layer type Conv1d')


def test_plan_out_channel_rules(tiny_net):
    """out_channel: C_out/groups must be a multiple of d; the first conv is compressible (its
    C_in=3 no longer matters) and skip_first_conv still decides."""
    cfg = dict(num_codewords=16, block_size=8, n=2, m=8, vector_axis='out_channel')
    reasons = {lp.name: lp.reason for lp in mvq.plan(tiny_net, mvq.MVQConfig(**cfg))}
    assert reasons == {'stem': 'first conv (skip_first_conv)', 'conv': None, 'pw': None,
                       'dw': 'depthwise conv (groups=32, C_in/groups=1)',
                       'fc': 'C_out=10 is not a multiple of block_size=8'}
    reasons = {lp.name: lp.reason for lp in mvq.plan(
        tiny_net, mvq.MVQConfig(**cfg, skip_first_conv=False))}
    assert reasons['stem'] is None
    grouped = nn.Conv2d(16, 24, 1, groups=2)  # 12 outputs per group
    p = mvq.plan(nn.Sequential(nn.Conv2d(3, 16, 1), grouped),
                 mvq.MVQConfig(**dict(cfg, num_codewords=2), min_params=0))
    assert p.layers[1].reason == 'C_out/groups=12 is not a multiple of block_size=8'


@pytest.mark.parametrize('axis', ['out_channel', 'in_channel'])
@pytest.mark.parametrize('method', ['mvq', 'vq', 'prune_vq'])
def test_compressed_weight_is_mask_times_codeword(tiny_net, method, axis):
    cfg = mvq.MVQConfig(method=method, **dict(CFG, vector_axis=axis))
    dense = {n: m.weight.detach().clone() for n, m in tiny_net.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))}
    report = mvq.compress(tiny_net, cfg)
    layers = mvq.quantized_layers(tiny_net)
    expected = ['conv', 'pw', 'fc'] if axis == 'in_channel' else ['conv', 'pw']  # fc: 10 out
    assert sorted(layers) == sorted(expected)
    assert [r.name for r in report.layers] == expected
    for name, q in layers.items():
        module = tiny_net.get_submodule(name)
        w = module.weight
        expect = blocking.from_subvectors(q.codebook[q.assignments] * q.mask, w.shape, axis)
        assert torch.equal(w, expect)
        vec = blocking.to_subvectors(w.detach(), 8, axis)
        assert torch.all(vec[~q.mask] == 0)
        if method == 'vq':
            assert q.mask.all()
        else:
            assert q.mask.reshape(-1, 8).sum(1).eq(2).all()
            # kept positions are the largest |w| of their group of 8 consecutive channels
            # (input channels, or output channels at one input position)
            dv = blocking.to_subvectors(dense[name], 8, axis).abs()
            kept = torch.where(q.mask, dv, torch.inf).min(1).values
            dropped = torch.where(q.mask, -torch.inf, dv).max(1).values
            assert torch.all(kept >= dropped)
        # the frozen original is the dense weight the clustering came from
        assert torch.equal(module.parametrizations.weight.original, dense[name])
        assert not module.parametrizations.weight.original.requires_grad
    assert all(r.relative_error < 1.0 for r in report.layers)


def test_prune_vq_is_plain_kmeans_on_zero_filled(tiny_net):
    cfg = mvq.MVQConfig(method='prune_vq', **CFG)
    w = tiny_net.conv.weight.detach().clone()
    mvq.compress(tiny_net, cfg)
    q = mvq.quantized_layers(tiny_net)['conv']
    v = blocking.to_subvectors(w, 8)
    ref = mvq.core.masked_kmeans(v * q.mask, None, 16, iters=10, seed=cfg.seed + 0, tol=cfg.tol)
    assert torch.equal(ref.assignments, q.assignments)
    assert torch.equal(ref.codebook, q.codebook.detach())


def test_mvq_beats_prune_vq_on_kept_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(64, 128, 3))
    sse = {}
    for method in ('mvq', 'prune_vq'):
        model = copy.deepcopy(net)
        report = mvq.compress(model, mvq.MVQConfig(method=method, num_codewords=64,
                                                   kmeans_iters=30))
        sse[method] = report.layers[0].masked_sse
    assert sse['mvq'] < sse['prune_vq']


def test_gradients_reach_codewords_only_through_kept_positions(tiny_net):
    mvq.compress(tiny_net, mvq.MVQConfig(**CFG))
    q = mvq.quantized_layers(tiny_net)['conv']
    with torch.nn.utils.parametrize.cached():  # one weight tensor for the whole pass
        weight = tiny_net.conv.weight
        weight.retain_grad()
        out = tiny_net.conv(torch.randn(2, 16, 6, 6))
        out.pow(2).sum().backward()
    g_vec = blocking.to_subvectors(weight.grad, 8)
    expect = torch.zeros_like(q.codebook).index_add_(0, q.assignments, g_vec * q.mask)
    assert torch.allclose(q.codebook.grad, expect, atol=1e-5)
    # a position pruned in every member of a codeword gets no gradient at all
    kept_any = torch.zeros_like(q.codebook, dtype=torch.bool).index_reduce_(
        0, q.assignments, q.mask, 'amax')
    assert torch.all(q.codebook.grad[~kept_any] == 0)
    assert tiny_net.conv.parametrizations.weight.original.grad is None


def test_to_dense_outputs_equal(tiny_net):
    mvq.compress(tiny_net, mvq.MVQConfig(**CFG))
    set_codebook_quant(tiny_net, True)
    x = _x()
    tiny_net.eval()
    y = tiny_net(x)
    dense = mvq.to_dense(copy.deepcopy(tiny_net))
    assert torch.equal(dense(x), y)
    assert type(dense.conv) is nn.Conv2d and not mvq.quantized_layers(dense)
    assert torch.equal(tiny_net(x), y)  # the original survives the copy being densified
    assert dense.conv.weight.requires_grad


def test_int8_fake_quant_and_param_groups(tiny_net):
    mvq.compress(tiny_net, mvq.MVQConfig(**CFG))
    assert set_codebook_quant(tiny_net, True) == 3
    q = mvq.quantized_layers(tiny_net)['conv']
    cq = q.effective_codebook()
    scale = q.codebook.detach().abs().max() / 127
    assert torch.allclose(cq / scale, (cq / scale).round(), atol=1e-4)
    assert (cq / scale).abs().max() <= 127 + 1e-4
    tiny_net(_x()).sum().backward()
    assert q.codebook.grad is not None and q.codebook.grad.abs().sum() > 0  # STE
    groups = codebook_param_groups(tiny_net, weight_decay=0.05)
    assert groups[0]['weight_decay'] == 0.0 and len(groups[0]['params']) == 3
    ids = {id(p) for g in groups for p in g['params']}
    assert id(tiny_net.conv.parametrizations.weight.original) not in ids
    assert id(tiny_net.stem.weight) in ids


def test_taylor_importance_needs_and_uses_calibration(tiny_net):
    cfg = mvq.MVQConfig(importance='taylor', **CFG)
    state = copy.deepcopy(tiny_net.state_dict())
    with pytest.raises(ValueError, match="importance='taylor' needs taylor_loss"):
        mvq.compress(tiny_net, cfg)
    assert not mvq.quantized_layers(tiny_net)
    assert all(torch.equal(v, state[k]) for k, v in tiny_net.state_dict().items())
    x = _x()
    calib = lambda m: m(x).logsumexp(1).mean()  # noqa: E731
    grads = {}
    calib(tiny_net).backward()
    grads = {n: tiny_net.get_submodule(n).weight.grad.clone() for n in ('conv', 'pw', 'fc')}
    w = {n: tiny_net.get_submodule(n).weight.detach().clone() for n in grads}
    tiny_net.zero_grad()
    mvq.compress(tiny_net, cfg, taylor_loss=calib)
    for n, q in mvq.quantized_layers(tiny_net).items():
        score = blocking.to_subvectors((w[n] * grads[n]).abs(), 8)
        assert torch.equal(q.mask, mvq.core.nm_mask(score, 2, 8))


def test_failure_midway_leaves_model_unchanged(tiny_net):
    state = copy.deepcopy(tiny_net.state_dict())
    calls = []

    def flaky(weight, grad):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError('boom')
        return weight.abs()

    with pytest.raises(RuntimeError, match='boom'):
        mvq.compress(tiny_net, mvq.MVQConfig(**CFG), importance=flaky)
    assert not any(is_compressed(m) for m in tiny_net.modules())
    assert tiny_net.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in tiny_net.state_dict().items())
    with pytest.raises(ValueError, match='cfg must be an MVQConfig'):
        mvq.compress(tiny_net, {'num_codewords': 4})


def test_compression_stats_numbers(tiny_net):
    dense_total = sum(p.numel() for p in tiny_net.parameters())
    mvq.compress(tiny_net, mvq.MVQConfig(**CFG))
    s = mvq.compression_stats(tiny_net, _x(), torch_pruning_check=True)
    conv, pw, fc = 32 * 16 * 9, 32 * 16, 10 * 32
    assert s.params_compressed == conv + pw + fc
    assert s.params_total == dense_total  # codebooks and frozen originals are not params
    assert s.params_uncompressed == dense_total - conv - pw - fc
    expect = sum(layer_bits(numel, d=8, k=16, n=2, m=8, codebook_bits=8, prunes=True).total
                 for numel in (conv, pw, fc))
    assert s.bits == expect + 32 * s.params_uncompressed
    assert s.compression_ratio == pytest.approx(32 * s.params_total / s.bits)
    hw = 8 * 8
    macs = {'stem': hw * 16 * 27, 'conv': hw * 32 * 144, 'pw': hw * 32 * 16, 'dw': hw * 32 * 9,
            'fc': 320}
    assert s.macs_dense == 2 * sum(macs.values())
    assert s.macs_effective == 2 * (macs['stem'] + macs['dw'] + (macs['conv'] + macs['pw']
                                                                  + macs['fc']) // 4)
    # torch-pruning counts the same conv/linear MACs (per sample) plus cheap extras (BN)
    assert s.macs_dense_torch_pruning >= s.macs_dense // 2


def test_pqf_resnet18_small_blocks_accounting():
    """PQF ResNet-18 'small blocks': d=9 for 3x3, d=4 for 1x1, k=256, FC k=2048 d=4, conv1
    uncompressed, fp16 codebooks, no mask: 1.54 MiB and 29x (docs/design.md section 2)."""
    model = torchvision.models.resnet18()
    cfg = mvq.MVQConfig(method='vq', vector_axis='spatial', block_size=9, codebook_bits=16,
                        num_codewords=256,
                        overrides={r'.*downsample\.0': dict(block_size=4),
                                   'fc': dict(block_size=4, num_codewords=2048)})
    p = mvq.plan(model, cfg)
    assert [lp.name for lp in p.skipped] == ['conv1']
    planned = {lp.name + '.weight' for lp in p.compressed}
    rest = sum(t.numel() for n, t in model.named_parameters() if n not in planned)
    bits = sum(lp.bits for lp in p) - 32 * p.skipped[0].numel + 32 * rest
    params = sum(t.numel() for t in model.parameters())
    assert bits / 8 / 2**20 == pytest.approx(1.54, abs=0.005)
    assert 32 * params / bits == pytest.approx(29, abs=0.1)
    assert math.isclose(32 * params / bits, 28.94, abs_tol=0.01)
