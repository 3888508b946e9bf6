"""Staged compression: prepare (structure only), prune, cluster in place."""
import copy

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core import (
    Stage,
    cluster_prepared,
    layer_stages,
    pending_layers,
    prepare,
    prune_prepared,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 6 * 6, 16))


CFG = mvq.MVQConfig(block_size=8, num_codewords=16, n=2, m=4, kmeans_iters=10, min_params=0,
                    vector_axis='in_channel')


def test_prepare_keeps_outputs_and_exposes_codebooks():
    model, ref = _net(), _net()
    x = torch.randn(2, 3, 8, 8)
    the_plan = prepare(model, CFG)
    assert [lp.name for lp in the_plan.compressed] == ['2', '5']
    assert layer_stages(model) == {'2': Stage.DENSE, '5': Stage.DENSE}
    assert torch.equal(model(x), ref(x))
    books = [q.codebook for q in mvq.quantized_layers(model).values()]
    ids = {id(p) for p in model.parameters()}
    assert all(id(b) in ids for b in books) and books[0].shape == (16, 8)
    assert not model[2].parametrizations.weight.original.requires_grad


def test_cluster_prepared_equals_compress_and_keeps_parameter_identity():
    staged, direct = _net(), _net()
    prepare(staged, CFG)
    book = mvq.quantized_layers(staged)['2'].codebook
    report = cluster_prepared(staged)
    mvq.compress(direct, CFG)
    assert pending_layers(staged) == [] and len(report.layers) == 2
    assert mvq.quantized_layers(staged)['2'].codebook is book  # optimizer references stay valid
    for name, q in mvq.quantized_layers(direct).items():
        s = mvq.quantized_layers(staged)[name]
        assert torch.equal(s.codebook, q.codebook)
        assert torch.equal(s.assignments, q.assignments)
        assert torch.equal(s.mask, q.mask)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(staged(x), direct(x))


def test_split_clustering_matches_single_pass():
    a, b = _net(), _net()
    prepare(a, CFG)
    prepare(b, CFG)
    cluster_prepared(a)
    cluster_prepared(b, ['5'])  # another process's share first
    assert pending_layers(b) == ['2']
    cluster_prepared(b, ['2'])
    for name, q in mvq.quantized_layers(a).items():
        assert torch.equal(q.codebook, mvq.quantized_layers(b)[name].codebook)


def test_prune_then_sparse_train_then_cluster_keeps_mask():
    model = _net()
    prepare(model, CFG, train_dense=True)
    assert prune_prepared(model) == ['2', '5']
    q = mvq.quantized_layers(model)['2']
    assert q.current_stage == Stage.PRUNED
    w = model[2].weight  # original * mask
    groups = (w.permute(0, 2, 3, 1).reshape(-1, 4) != 0).sum(1)
    assert int(groups.max()) == 2
    mask = q.mask.clone()
    # Sparse fine-tuning moves the dense weights; the mask is kept.
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    original = model[2].parametrizations.weight.original
    assert original.grad is not None
    pruned_grad = original.grad.permute(0, 2, 3, 1).reshape(-1, 8)[~mask]
    assert float(pruned_grad.abs().max()) == 0.0
    with torch.no_grad():
        original.add_(torch.randn_like(original))
    cluster_prepared(model)
    assert torch.equal(q.mask, mask) and q.current_stage == Stage.CLUSTERED


def test_stage_survives_state_dict_round_trip():
    src, dst = _net(), _net()
    prepare(src, CFG)
    cluster_prepared(src)
    prepare(dst, CFG)
    dst.load_state_dict(copy.deepcopy(src.state_dict()))
    assert pending_layers(dst) == []
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(src(x), dst(x))


def test_cluster_prepared_unknown_layer():
    model = _net()
    prepare(model, CFG)
    with pytest.raises(KeyError):
        cluster_prepared(model, ['nope'])
