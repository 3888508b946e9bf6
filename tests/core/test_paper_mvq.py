"""The paper's MVQ pieces: out_channel sub-vectors, SR-STE, LSQ codebook scales, the
assignment-change stopping rule, the paper's default settings."""
import math

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core import MVQSchedule, blocking, masked_kmeans, nm_mask, prepare
from mvq_plugin.core.quant import INT8_MAX, INT8_MIN, lsq_init_scale, lsq_quant
from mvq_plugin.core.srste import srste_mask

OUT = dict(block_size=8, num_codewords=8, n=2, m=8, vector_axis='out_channel', min_params=0)


def test_default_config_is_the_papers_resnet_setting():
    cfg = mvq.MVQConfig()
    assert (cfg.vector_axis, cfg.n, cfg.m, cfg.block_size, cfg.num_codewords) == \
        ('out_channel', 4, 16, 16, 512)
    assert (cfg.codebook_bits, cfg.codebook_scale, cfg.kmeans_stop, cfg.change_tol) == \
        (8, 'lsq', 'assignments', 1e-3)


def test_out_channel_masked_kmeans_equals_brute_force(lloyd_reference):
    """A conv weight cut into out_channel sub-vectors, N:M masked inside each, clustered with
    masked k-means: the same assignments and codewords as the loop-by-loop reference."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 3, 2, 2, generator=g)  # 12 sub-vectors of the 8 output channels
    x = blocking.to_subvectors(w, 4, 'out_channel')
    assert torch.equal(x[5], w[0:4, 1, 0, 1])
    mask = nm_mask(x.abs(), 2, 4)
    init = (x[:3] * mask[:3]).clone()
    res = masked_kmeans(x, mask, 3, iters=5, init=init, tol=0.0, backend='torch')
    c, a, hist = lloyd_reference(x, mask, init, len(res.objective) - 1)
    assert res.assignments.tolist() == a
    assert torch.allclose(res.codebook.double(), c, atol=1e-5)
    assert res.objective == pytest.approx(hist, rel=1e-5)


def test_srste_gradient_is_the_formula():
    """dL/dW = dL/dW_sparse (straight through, every weight) + lambda * (1 - mask) * W."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 16)
    prepare(layer, mvq.MVQConfig(**OUT, skip_first_conv=False), train_dense=True)
    schedule = MVQSchedule(layer, sparse_iters=5, sparse_method='srste', srste_lambda=0.3)
    schedule.step(0)
    q = mvq.quantized_layers(layer)['']
    assert q.srste_lambda == 0.3
    x, r = torch.randn(5, 6), torch.randn(5, 16)
    w = layer.parametrizations.weight.original
    (layer(x) * r).sum().backward()
    keep = blocking.from_subvectors(srste_mask(w, 8, 'out_channel', 2, 8), w.shape,
                                    'out_channel')
    assert torch.equal(q.mask, srste_mask(w, 8, 'out_channel', 2, 8))
    sparse = (w.detach() * keep).requires_grad_()
    (nn.functional.linear(x, sparse, layer.bias.detach()) * r).sum().backward()
    expected = sparse.grad + 0.3 * (~keep) * w.detach()
    torch.testing.assert_close(w.grad, expected)
    assert bool((w.grad[~keep] != 0).all())  # pruned weights get a gradient too


def test_srste_masks_move_then_freeze_to_the_top_n_of_the_final_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3))
    prepare(net, mvq.MVQConfig(**OUT), train_dense=True)
    schedule = MVQSchedule(net, sparse_iters=6, sparse_method='srste')
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    q = mvq.quantized_layers(net)['2']
    masks = []
    x = torch.randn(4, 3, 8, 8)
    for it in range(6):
        schedule.step(it)
        loss = (net(x) - 1).pow(2).mean()
        masks.append(q.mask.clone())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(masks[0], m) for m in masks[1:])  # the mask moved
    final = net[2].parametrizations.weight.original.detach().clone()
    assert [e.name for e in schedule.step(6)] == ['sparse_end', 'clustered']
    assert q.srste_lambda is None
    assert torch.equal(q.mask, nm_mask(blocking.to_subvectors(final, 8, 'out_channel').abs(),
                                       2, 8))
    frozen = q.mask.clone()
    net(x).sum().backward()
    assert torch.equal(q.mask, frozen)


def test_lsq_gradient_and_initialisation_are_the_formulas():
    torch.manual_seed(0)
    c = (torch.randn(16, 8) * 3).requires_grad_()
    s = lsq_init_scale(c).clone().requires_grad_()
    assert float(s) == pytest.approx(2 * float(c.abs().mean()) / math.sqrt(127))
    s.data.copy_(c.detach().abs().max() / 150)  # the largest codewords clip
    r = torch.randn(16, 8)
    out = lsq_quant(c, s)
    v = c.detach() / s.detach()
    codes = torch.round(v.clamp(INT8_MIN, INT8_MAX))
    assert torch.equal(out.detach(), codes * s.detach())
    (out * r).sum().backward()
    inside = (v >= INT8_MIN) & (v <= INT8_MAX)
    assert bool((~inside).any()) and bool(inside.any())
    torch.testing.assert_close(c.grad, r * inside)
    ds = torch.where(inside, torch.round(v) - v, v.clamp(INT8_MIN, INT8_MAX))
    g = 1 / math.sqrt(c.numel() * INT8_MAX)
    torch.testing.assert_close(s.grad, (r * ds).sum() * g)


def test_lsq_scale_trains_and_the_artifact_stores_it(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3))
    mvq.compress(net, mvq.MVQConfig(**OUT, codebook_scale='lsq', skip_first_conv=False))
    mvq.set_codebook_quant(net, True)
    q = mvq.quantized_layers(net)['2']
    assert torch.isnan(q.lsq_scale)
    x = torch.randn(2, 3, 8, 8)
    opt = torch.optim.SGD(mvq.codebook_param_groups(net), lr=0.05)
    for _ in range(3):
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert q.lsq_scale.grad is not None and float(q.lsq_scale) > 0
    assert float(q.lsq_scale) != pytest.approx(float(lsq_init_scale(q.codebook)))
    net.eval()
    with torch.no_grad():
        y = net(x)
    mvq.save(net, tmp_path / 'lsq.mvq')
    fresh = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3)).eval()
    mvq.load(fresh, tmp_path / 'lsq.mvq')
    with torch.no_grad():
        assert torch.equal(fresh(x), y)
    loaded = mvq.quantized_layers(fresh)['2']
    assert float(loaded.scale) == float(q.lsq_scale)


def test_assignment_change_stopping_rule():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 8, generator=g)
    mask = nm_mask(x.abs(), 2, 8)
    res = masked_kmeans(x, mask, 32, iters=200, stop='assignments', change_tol=0.01, seed=0)
    assert res.converged and res.last_change < 0.01
    longer = masked_kmeans(x, mask, 32, iters=200, stop='assignments', change_tol=0.001,
                           seed=0)
    assert longer.iterations > res.iterations and longer.last_change < 0.001
    capped = masked_kmeans(x, mask, 32, iters=2, stop='assignments', change_tol=0.0, seed=0)
    assert not capped.converged and capped.iterations == 2 and capped.last_change > 0
    with pytest.raises(ValueError, match="stop='fast'"):
        masked_kmeans(x, mask, 32, stop='fast')
    report = mvq.compress(nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3)),
                          mvq.MVQConfig(**OUT))
    assert all(0 <= r.last_change <= 1 for r in report.layers)
    assert 'last change' in str(report)


@pytest.mark.parametrize('arch,ratio,eq7,dense', [
    ('resnet18', 22.3, 23.16, ['conv1']),
    ('resnet50', 21.3, 22.49, ['conv1', 'layer1.0.conv1']),  # 64x64 1x1: 256 sub-vectors < k
])
def test_resnet_preset_lands_at_the_papers_ratio(arch, ratio, eq7, dense):
    torchvision = pytest.importorskip('torchvision')
    model = getattr(torchvision.models, arch)()
    p = mvq.plan(model, mvq.preset('resnet'))
    cr = p.compression_ratio(model)
    assert cr == pytest.approx(ratio, abs=0.05)  # the paper: ~22x
    assert p.layers_ratio == pytest.approx(eq7, abs=0.01)  # its Eq. 7, compressed layers only
    # the accounting of the compressed model reports the planned ratio
    small = mvq.preset('resnet', num_codewords=16, kmeans_iters=1)
    net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3), nn.Flatten(), nn.Linear(32, 16))
    planned = mvq.plan(net, small)
    mvq.compress(net, small)
    stats = mvq.compression_stats(net)
    assert planned.compression_ratio(net) == pytest.approx(stats.compression_ratio)
    assert planned.layers_ratio == pytest.approx(stats.layers_ratio)
    assert stats.to_dict()['layers_ratio'] == stats.layers_ratio
    # a compressed model plans to the same bits (its codebooks are not counted twice)
    assert planned.model_bits(net) == stats.bits
    assert [lp.name for lp in p.skipped] == dense
    fc = next(lp for lp in p.compressed if lp.name == 'fc')  # 1000 outputs: d=8 at 2:8
    assert (fc.config.block_size, fc.config.n, fc.config.m) == (8, 2, 8)
    common = mvq.plan(model, mvq.preset('resnet_common_vq')).compression_ratio(model)
    assert common == pytest.approx(cr, rel=0.05)  # the common-VQ baseline at the same ratio


def test_presets_and_their_precedence():
    from mvq_plugin.core.presets import config_from
    assert mvq.preset('mobilenet').n == 1 and mvq.preset('mobilenet').m == 2
    assert mvq.preset('resnet', seed=3).seed == 3
    assert config_from(dict(preset='resnet', num_codewords=256)).num_codewords == 256
    assert config_from('resnet_in_channel').vector_axis == 'in_channel'
    assert config_from(None) == mvq.MVQConfig()
    with pytest.raises(ValueError, match="preset 'resnet34' is unknown; allowed"):
        mvq.preset('resnet34')
