"""MVQSchedule on its own: boundaries from the model's state, resume, clear errors."""
import pytest
import torch

import mvq_plugin as mvq
from mvq_plugin.core import MVQSchedule, Phase, Stage, layer_stages, prepare

CFG = dict(num_codewords=16, block_size=8, n=2, m=8, kmeans_iters=4)


def _events(schedule):
    return [(e.name, e.iteration) for e in schedule.events]


def test_one_shot_prunes_and_clusters_before_the_first_iteration(tiny_net):
    prepare(tiny_net, mvq.MVQConfig(**CFG))
    schedule = MVQSchedule(tiny_net)
    assert schedule.phase is Phase.SPARSE  # nothing clustered yet
    assert [e.name for e in schedule.step(0)] == ['pruned', 'sparse_end', 'clustered']
    assert schedule.phase is Phase.CODEBOOK and schedule.step(1) == []
    assert set(layer_stages(tiny_net).values()) == {Stage.CLUSTERED}
    assert not schedule.codebook_quant
    schedule.finish(7)
    assert schedule.codebook_quant and not tiny_net.training
    assert _events(schedule)[-2:] == [('codebook_quant', 7), ('trained', 7)]
    # the reported error is the clustering error of each layer
    assert set(schedule.layer_errors) == set(mvq.quantized_layers(tiny_net))
    assert all(0 < e < 1 for e in schedule.layer_errors.values())


def test_sparse_phase_boundaries_and_param_groups(tiny_net):
    prepare(tiny_net, mvq.MVQConfig(**CFG), train_dense=True)
    schedule = MVQSchedule(tiny_net, sparse_iters=3, codebook_quant_start=5)
    books = {id(q.codebook) for q in mvq.quantized_layers(tiny_net).values()}
    schedule.step(0)
    sparse = [id(p) for g in schedule.param_groups() for p in g['params']]
    assert not books & set(sparse) and len(sparse) > len(books)
    assert schedule.step(1) == [] and schedule.step(2) == []
    assert [e.name for e in schedule.step(3)] == ['sparse_end', 'clustered']
    codebook = [id(p) for g in schedule.param_groups() for p in g['params']]
    assert books <= set(codebook)
    originals = {id(tiny_net.get_submodule(n).parametrizations.weight.original)
                 for n in mvq.quantized_layers(tiny_net)}
    assert not originals & set(codebook)  # the dense originals froze at clustering
    assert schedule.step(4) == [] and [e.name for e in schedule.step(5)] == ['codebook_quant']
    assert _events(schedule) == [('pruned', 0), ('sparse_end', 3), ('clustered', 3),
                                 ('codebook_quant', 5)]


def test_a_resumed_model_is_not_clustered_again(tiny_net):
    prepare(tiny_net, mvq.MVQConfig(**CFG))
    MVQSchedule(tiny_net).step(0)
    books = {n: q.codebook.detach().clone() for n, q in mvq.quantized_layers(tiny_net).items()}
    resumed = MVQSchedule(tiny_net, codebook_quant_start=2)
    assert resumed.step(4) == [resumed.events[0]] and resumed.events[0].name == 'codebook_quant'
    for n, q in mvq.quantized_layers(tiny_net).items():
        assert torch.equal(q.codebook.detach(), books[n])


def test_errors_name_the_value(tiny_net):
    with pytest.raises(ValueError, match='no MVQ layers'):
        MVQSchedule(tiny_net)
    prepare(tiny_net, mvq.MVQConfig(**CFG, importance='activation'))
    with pytest.raises(ValueError, match='needs calibration data'):
        MVQSchedule(tiny_net)
    with pytest.raises(ValueError, match='sparse_iters=-1 must be an integer >= 0'):
        MVQSchedule(tiny_net, sparse_iters=-1, calib=[torch.randn(2, 3, 8, 8)])
    with pytest.raises(ValueError, match=r'sparse_iters=2 trains the dense weights.*'
                                         'train_dense=True'):
        MVQSchedule(tiny_net, sparse_iters=2, calib=[torch.randn(2, 3, 8, 8)])
    with pytest.raises(ValueError, match='a teacher was given but distill is None'):
        MVQSchedule(tiny_net, calib=[torch.randn(2, 3, 8, 8)], teacher=tiny_net)
    with pytest.raises(ValueError, match='bn_recalib=True needs calibration data'):
        MVQSchedule(tiny_net, bn_recalib=True, calib=None)
    schedule = MVQSchedule(tiny_net, sparse_iters=0, calib=[torch.randn(2, 3, 8, 8)])
    with pytest.raises(RuntimeError, match='not clustered'):
        schedule.finish()
