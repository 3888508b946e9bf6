"""The fast weight rebuild equals the reference path; the eval-mode cache is exact and fresh."""
import copy

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core.parametrize import Stage
from mvq_plugin.core.rebuild import RebuildPlan


def _compressed(tiny_net, method='mvq', axis='in_channel', **kw):
    kw.setdefault('seed', 0)
    # out_channel: TinyNet's classifier (10 outputs) stays dense, its stem (16) compresses
    cfg = mvq.MVQConfig(method=method, block_size=8, num_codewords=16, n=2, m=8,
                        kmeans_iters=5, vector_axis=axis, codebook_scale='maxabs',
                        skip_first_conv=axis == 'in_channel', **kw)
    mvq.compress(tiny_net, cfg)
    return tiny_net


def _reference_grads(model, x, codebook_quant):
    """Codebook gradients with every layer on the plain autograd path."""
    ref = copy.deepcopy(model)
    mvq.set_codebook_quant(ref, codebook_quant)
    layers = mvq.quantized_layers(ref)
    for q in layers.values():
        q.forward = q.reference_weight
    ref(x).square().sum().backward()
    return ref, {n: q.codebook.grad for n, q in layers.items()}


@pytest.mark.parametrize('axis', ['out_channel', 'in_channel'])
@pytest.mark.parametrize('method', ['mvq', 'vq', 'prune_vq'])
@pytest.mark.parametrize('codebook_quant', [False, True])
def test_forward_and_gradients_equal_reference(tiny_net, method, codebook_quant, axis):
    model = _compressed(tiny_net, method, axis)
    mvq.set_codebook_quant(model, codebook_quant)
    x = torch.randn(4, 3, 12, 12)
    ref, grads = _reference_grads(model, x, codebook_quant)
    layers = mvq.quantized_layers(model)
    ref_layers = mvq.quantized_layers(ref)
    for name, q in layers.items():  # the same numbers (the layout may differ)
        module = model.get_submodule(name)
        original = module.parametrizations.weight.original
        assert torch.equal(module.weight, ref_layers[name].reference_weight(original))
    out = model(x)
    # conv kernels may pick another algorithm for a differently strided weight
    torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-6)
    out.square().sum().backward()
    assert set(layers) == set(grads) and len(layers) >= 3
    for name, q in layers.items():
        assert q.codebook.grad is not None
        torch.testing.assert_close(q.codebook.grad, grads[name], rtol=1e-5, atol=1e-6)
        # A codeword coordinate no kept position reads gets exactly zero.
        used = torch.zeros_like(q.codebook, dtype=torch.bool)
        used.index_put_((q.assignments[:, None].expand_as(q.mask)[q.mask],
                         torch.arange(q.block_size).expand_as(q.mask)[q.mask]),
                        torch.tensor(True))
        assert torch.all(q.codebook.grad[~used] == 0)


@pytest.mark.parametrize('axis', ['out_channel', 'in_channel'])
def test_weight_written_in_conv_layout_and_pruned_positions_zero(tiny_net, axis):
    model = _compressed(tiny_net, axis=axis)
    q = mvq.quantized_layers(model)['conv']
    w = model.conv.weight
    assert w.is_contiguous() and w.shape == (32, 16, 3, 3)
    plan = q.plan()
    assert plan.src.dtype == torch.int32
    assert torch.all(w[~plan.keep] == 0)
    assert int(plan.keep.sum()) == int(q.mask.sum()) == w.numel() // 4  # 2:8


def test_sparse_stage_is_masked_original(tiny_net):
    from mvq_plugin.core.staged import prepare, prune_prepared
    cfg = mvq.MVQConfig(block_size=8, num_codewords=16, n=2, m=8, kmeans_iters=5,
                        vector_axis='in_channel')
    prepare(tiny_net, cfg)
    prune_prepared(tiny_net)
    q = mvq.quantized_layers(tiny_net)['conv']
    assert q.current_stage == Stage.PRUNED
    original = tiny_net.conv.parametrizations.weight.original
    assert torch.equal(tiny_net.conv.weight, q.reference_weight(original))


def test_plan_follows_in_place_changes(tiny_net):
    model = _compressed(tiny_net)
    q = mvq.quantized_layers(model)['conv']
    first = q.plan()
    assert q.plan() is first
    with torch.no_grad():
        q.assignments.copy_(torch.roll(q.assignments, 1))
    second = q.plan()
    assert second is not first
    original = model.conv.parametrizations.weight.original
    assert torch.equal(model.conv.weight, q.reference_weight(original))


def test_eval_cache_reused_and_invalidated_by_optimizer_step(tiny_net):
    model = _compressed(tiny_net)
    x = torch.randn(2, 3, 12, 12)
    model.eval()
    with torch.no_grad():
        a = model(x)
        w1 = model.conv.weight
        assert model.conv.weight is w1  # cached
        assert torch.equal(model(x), a)
    opt = torch.optim.SGD(mvq.codebook_param_groups(model), lr=0.1)
    model.train()
    model(x).square().sum().backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        w2 = model.conv.weight
    q = mvq.quantized_layers(model)['conv']
    original = model.conv.parametrizations.weight.original
    assert w2 is not w1 and not torch.equal(w2, w1)
    assert torch.equal(w2, q.reference_weight(original))


def test_eval_cache_invalidated_by_load_and_quant_switch(tiny_net, tmp_path):
    model = _compressed(tiny_net)
    model.eval()
    with torch.no_grad():
        before = model.conv.weight.clone()
        mvq.set_codebook_quant(model, True)
        quantized = model.conv.weight
    q = mvq.quantized_layers(model)['conv']
    assert not torch.equal(before, quantized)
    assert torch.equal(quantized, q.reference_weight(before).detach())
    # load_state_dict copies new codebooks in place: the cache must not survive it.
    state = copy.deepcopy(model.state_dict())
    state['conv.parametrizations.weight.0.codebook'] += 1.0
    model.load_state_dict(state)
    with torch.no_grad():
        loaded = model.conv.weight
    assert torch.equal(loaded, q.reference_weight(before))
    assert not torch.equal(loaded, quantized)


def test_eval_cache_invalidated_by_artifact_load_in_place(tiny_net, tmp_path):
    source = _compressed(copy.deepcopy(tiny_net))
    mvq.set_codebook_quant(source, True)
    path = tmp_path / 'm.mvq'
    mvq.save(source, path)
    target = _compressed(tiny_net, seed=1)  # compressed too: load updates it in place
    x = torch.randn(2, 3, 12, 12)
    target.eval()
    source.eval()
    with torch.no_grad():
        stale = target(x)
        mvq.load(target, path)
        fresh = target(x)
        assert not torch.equal(fresh, stale)
        assert torch.equal(fresh, source(x))
        assert torch.equal(target(x), fresh)  # and cached again


def test_plan_index_maps_match_reference_layout():
    torch.manual_seed(0)
    n, d, k = 24, 4, 5
    a = torch.randint(0, k, (n,))
    mask = torch.rand(n, d) > 0.5
    cb = torch.randn(k, d)
    plan = RebuildPlan(a, mask, k, (6, 8, 2, 1), 'in_channel')
    from mvq_plugin.core.blocking import from_subvectors
    assert torch.equal(plan.gather(cb), from_subvectors(cb[a] * mask, (6, 8, 2, 1)))
    g = torch.randn(6, 8, 2, 1)
    expect = torch.zeros(k, d)
    from mvq_plugin.core.blocking import to_subvectors
    gv = to_subvectors(g, d) * mask
    expect.index_add_(0, a, gv)
    torch.testing.assert_close(plan.codebook_grad(g).view(k, d), expect)


def test_linear_layer_and_meta_tracing_take_their_paths(tiny_net):
    model = _compressed(tiny_net)
    fc = model.fc
    assert isinstance(fc, nn.Linear)
    q = mvq.quantized_layers(model).get('fc')
    if q is not None:
        original = fc.parametrizations.weight.original
        assert torch.equal(fc.weight, q.reference_weight(original))
    report = mvq.hw.estimate(model, (1, 3, 12, 12))  # traces on meta tensors
    assert report.cycles > 0


def test_held_weight_is_never_overwritten(tiny_net):
    """Two forwards before one backward (the first weight is still in the graph), and a
    weight a caller keeps, stay what they were: the reused buffer is only taken when free."""
    model = _compressed(tiny_net)
    x1, x2 = torch.randn(2, 3, 12, 12), torch.randn(2, 3, 12, 12)
    ref, _ = _reference_grads(model, x1, False)
    for q in mvq.quantized_layers(ref).values():
        q.codebook.grad = None
    (ref(x1).square().sum() + ref(x2).sum()).backward()
    (model(x1).square().sum() + model(x2).sum()).backward()
    ref_layers = mvq.quantized_layers(ref)
    for name, q in mvq.quantized_layers(model).items():
        torch.testing.assert_close(q.codebook.grad, ref_layers[name].codebook.grad,
                                   rtol=1e-5, atol=1e-6)
    kept = model.conv.weight
    before = kept.detach().clone()
    with torch.no_grad():
        mvq.quantized_layers(model)['conv'].codebook.mul_(2)
    again = model.conv.weight
    assert torch.equal(kept, before) and not torch.equal(again, before)
    del kept
    third = model.conv.weight  # the first buffer is free again only once nothing holds it
    assert torch.equal(third, again)
