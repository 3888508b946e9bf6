"""allocate() on real models: budgets hold in the realised accounting, measurements are real
and cached, bad input is named."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.allocation import (
    Budget,
    ChoiceSpace,
    CostModel,
    InfeasibleBudget,
    SensitivityCache,
    layer_choices,
    parse_bytes,
)
from mvq_plugin.hw import estimate


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.a = nn.Conv2d(16, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 32, 3, padding=1)
        self.c = nn.Conv2d(32, 64, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x)) + x
        x = torch.relu(self.c(x))
        return self.fc(x.mean((2, 3)))


SPACE = dict(nm=('2:8', '4:8', 'none'), block_size=(8, 16), num_codewords=(8, 16, 32))
SHAPE = (1, 3, 16, 16)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture
def calib():
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(8, 3, 16, 16, generator=gen) for _ in range(2)]


def _dense_bits(model):
    return 32 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('fraction', [0.09, 0.15, 0.3, 0.6])
def test_size_budget_holds_in_the_realised_accounting(net, calib, fraction):
    cache = SensitivityCache()
    limit = fraction * _dense_bits(net)
    alloc = mvq.allocate(net, dict(bits=limit), choices=SPACE, calib=calib, cache=cache,
                         base=mvq.MVQConfig(kmeans_iters=5))
    model = copy.deepcopy(net)
    mvq.compress(model, alloc.config())
    realised = mvq.compression_stats(model).bits
    assert realised == alloc.predicted['bits'] <= limit  # exact: the accounting rule
    assert alloc.check(model)['bits'] == realised
    assert alloc.distortion == pytest.approx(sum(
        alloc.sensitivity[n][c.label] for n, c in alloc.choices.items()))
    # The plan describes the same settings.
    planned = {lp.name: lp for lp in alloc.plan}
    for name, choice in alloc.choices.items():
        if choice.dense:
            assert not planned[name].will_compress
        else:
            assert planned[name].config.num_codewords == choice.num_codewords
            assert planned[name].config.block_size == choice.block_size


def test_energy_and_cycle_budgets_hold_on_the_hardware_model(net, calib):
    dense_ews = estimate(net, SHAPE, arch='ews_64x64')
    # On this small net the MVQ array reaches 0.75x of the EWS energy at best, and no plan is
    # faster than the dense net on EWS (the dense stem takes M/N passes on the sparse array).
    budget = dict(energy_ratio=0.85, cycles_ratio=1.3, bytes=0.3 * _dense_bits(net) / 8,
                  hw='mvq_64x64', input_shape=SHAPE)
    alloc = mvq.allocate(net, budget, choices=SPACE, calib=calib,
                         base=mvq.MVQConfig(kmeans_iters=5))
    assert alloc.limits['energy_pj'] == pytest.approx(0.85 * dense_ews.energy_pj)
    assert alloc.limits['cycles'] == pytest.approx(1.3 * dense_ews.cycles)
    model = copy.deepcopy(net)
    mvq.compress(model, alloc.config())
    realised = alloc.check(model)
    report = estimate(model, SHAPE, arch='mvq_64x64')
    assert realised['energy_pj'] == pytest.approx(report.energy_pj)
    for m in ('energy_pj', 'cycles', 'bits'):
        assert realised[m] <= alloc.limits[m]
        assert realised[m] == pytest.approx(alloc.predicted[m], rel=1e-9)


def test_costs_are_additive_over_layers(net):
    space = ChoiceSpace(**SPACE)
    cands = layer_choices(net, space, mvq.MVQConfig())
    cm = CostModel.build(net, cands, ('bits', 'energy_pj', 'cycles'), hw='mvq',
                         input_shape=SHAPE)
    picks = [len(lc.choices) - 1 for lc in cm.layers]
    cfg = mvq.MVQConfig(overrides={n: c.fields() for n, c in
                                   ((lc.name, lc.choices[p]) for lc, p in zip(cm.layers, picks))},
                        kmeans_iters=2)
    model = copy.deepcopy(net)
    mvq.compress(model, cfg)
    report = estimate(model, SHAPE, arch='mvq')
    total = cm.total(picks)
    assert total['bits'] == mvq.compression_stats(model).bits
    assert total['energy_pj'] == pytest.approx(report.energy_pj, rel=1e-9)
    assert total['cycles'] == report.cycles
    assert cm.dense['bits'] == _dense_bits(net)


def test_unreachable_budget_is_refused_before_measuring(net, calib):
    space = ChoiceSpace(**SPACE)
    cm = CostModel.build(net, layer_choices(net, space, mvq.MVQConfig()), ('bits',))
    smallest = cm.smallest()['bits']
    with pytest.raises(InfeasibleBudget, match=f'smallest reachable is {smallest:,.0f} bits'):
        mvq.allocate(net, dict(bits=smallest - 1), choices=SPACE, calib=calib)
    alloc = mvq.allocate(net, dict(bits=smallest), choices=SPACE, calib=calib,
                         base=mvq.MVQConfig(kmeans_iters=2))
    assert alloc.predicted['bits'] == smallest


def test_second_budget_reuses_the_measurements(net, calib, tmp_path):
    path = tmp_path / 'sens.json'
    base = mvq.MVQConfig(kmeans_iters=5)
    first = mvq.allocate(net, dict(bits=0.2 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=base, cache=str(path))
    assert first.info['measured'] > 0 and first.info['reused'] == 0
    stored = json.loads(path.read_text())
    assert len(stored['entries']) == first.info['measured']
    second = mvq.allocate(net, dict(bits=0.4 * _dense_bits(net)), choices=SPACE, calib=calib,
                          base=base, cache=str(path))
    assert second.info['measured'] == 0 and second.info['reused'] == first.info['measured']
    assert second.sensitivity == first.sensitivity
    # Other weights, or other calibration data, are measured again.
    with torch.no_grad():
        net.b.weight.mul_(1.5)
    third = mvq.allocate(net, dict(bits=0.4 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=base, cache=str(path))
    per_layer = third.info['measured']
    assert per_layer == len(third.sensitivity['b']) - 1  # layer b only (dense costs nothing)


def test_measurements_are_real_and_leave_the_model_unchanged(net, calib):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    alloc = mvq.allocate(net, dict(bits=0.3 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=mvq.MVQConfig(kmeans_iters=10))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not mvq.quantized_layers(net)
    s = alloc.sensitivity['b']
    assert s['dense'] == 0.0
    # More codewords, less distortion; 2:8 hurts more than 4:8 at the same d, k.
    assert s['mvq d8 k32 4:8 int8'] < s['mvq d8 k8 4:8 int8']
    assert s['mvq d8 k32 4:8 int8'] < s['mvq d8 k32 2:8 int8']
    assert all(v > 0 for label, v in s.items() if label != 'dense')
    # The measurement is what compressing that layer alone does to the output.
    model = copy.deepcopy(net)
    mvq.compress(model, mvq.MVQConfig(block_size=8, num_codewords=32, n=4, m=8, kmeans_iters=10,
                                      seed=list(alloc.sensitivity).index('b'),
                                      exclude=['^a$', '^c$', '^fc$']))
    mvq.set_codebook_quant(model, True)  # the choice is int8: measured with rounded codewords
    with torch.no_grad():
        ref = torch.cat([net(x) for x in calib])
        out = torch.cat([model(x) for x in calib])
    assert (out - ref).pow(2).sum() / ref.pow(2).sum() == pytest.approx(
        s['mvq d8 k32 4:8 int8'], rel=1e-4)


@pytest.mark.parametrize('axis', ['out_channel', 'in_channel'])
def test_generous_budget_keeps_everything_dense(net, calib, axis):
    alloc = mvq.allocate(net, dict(bits=2 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=mvq.MVQConfig(kmeans_iters=2, vector_axis=axis))
    assert all(c.dense for c in alloc.choices.values())
    assert alloc.distortion == 0.0
    # the stem stays out (skip_first_conv); along the output channel the 10-way classifier
    # cannot be cut into sub-vectors of 8 or 16
    expected = {'a', 'b', 'c', 'fc'} if axis == 'in_channel' else {'a', 'b', 'c'}
    assert set(alloc.choices) == expected


def test_allocation_carries_into_a_config(net, calib):
    base = mvq.MVQConfig(kmeans_iters=3, exclude=['^fc$'])
    alloc = mvq.allocate(net, dict(bits=0.12 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=base)
    assert 'fc' not in alloc.choices
    cfg = mvq.MVQConfig.from_dict(json.loads(json.dumps(alloc.config().to_dict())))
    for name, choice in alloc.choices.items():
        if not choice.dense:
            lcfg = cfg.for_layer(name)
            assert (lcfg.block_size, lcfg.num_codewords, lcfg.method) == (
                choice.block_size, choice.num_codewords, choice.method)
    assert cfg.kmeans_iters == 3
    text = str(alloc)
    assert 'predicted' in text and 'b ' in text


def test_the_plan_file_compresses_as_the_allocation_does(net, calib, tmp_path):
    """``tools/allocate.py --out plan.json`` written, ``compress(allocation=plan.json)`` read:
    the same layers at the same settings, bit for bit the same weights."""
    base = mvq.MVQConfig(kmeans_iters=3)
    alloc = mvq.allocate(net, dict(bits=0.12 * _dense_bits(net)), choices=SPACE, calib=calib,
                         base=base)
    path = tmp_path / 'plan.json'
    path.write_text(json.dumps(alloc.to_dict()))
    direct, from_file = copy.deepcopy(net), copy.deepcopy(net)
    mvq.compress(direct, alloc.config())
    report = mvq.compress(from_file, base, allocation=str(path))
    assert sorted(lp.name for lp in report.plan.compressed) == sorted(
        n for n, c in alloc.choices.items() if not c.dense)
    assert report.plan.compressed, 'the budget compresses something'
    for name in mvq.quantized_layers(direct):
        assert torch.equal(direct.get_submodule(name).weight,
                           from_file.get_submodule(name).weight), name


def test_bad_input_is_named(net, calib):
    with pytest.raises(ValueError, match="N:M choice '3-8'"):
        ChoiceSpace(nm=('3-8',))
    with pytest.raises(ValueError, match='codebook_bits has 4'):
        ChoiceSpace(codebook_bits=(4,))
    with pytest.raises(ValueError, match="no \\(N:M, d\\) combination fits"):
        ChoiceSpace(nm=('2:8',), block_size=(4,), dense=False)
    with pytest.raises(ValueError, match='needs at least one limit'):
        Budget()
    with pytest.raises(ValueError, match="bytes='1.5 MiBs' is not a size"):
        Budget(bytes='1.5 MiBs')
    with pytest.raises(ValueError, match='unknown arch'):
        Budget(energy_ratio=0.5, hw='tpu')
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['byte'\\]"):
        Budget.from_any(dict(byte='1MiB'))
    with pytest.raises(ValueError, match='needs input_shape'):
        mvq.allocate(net, dict(energy_ratio=0.5), calib=calib)
    with pytest.raises(ValueError, match='calib='):
        mvq.allocate(net, dict(bits=1e6))
    with pytest.raises(ValueError, match="objective='mse' is not known"):
        mvq.allocate(net, dict(bits=1e6), calib=calib, objective='mse')
    model = copy.deepcopy(net)
    mvq.compress(model, mvq.MVQConfig(num_codewords=16, kmeans_iters=1))
    with pytest.raises(ValueError, match='needs the dense model'):
        mvq.allocate(model, dict(bits=1e6), calib=calib)


def test_parse_bytes():
    assert parse_bytes('1.5MiB') == 1.5 * 2**20
    assert parse_bytes('900 kB') == 900e3
    assert parse_bytes(2048) == 2048.0
    assert Budget(bytes='1KiB').limits() == {'bits': 8192.0}
    assert math.isclose(parse_bytes('2e6'), 2e6)


def test_the_layout_is_one_more_choice(net, calib):
    """With both layouts in the space, each layer may take either; the fc (10 outputs) only
    admits in_channel; the chosen config compresses each layer in its chosen layout."""
    space = dict(SPACE, vector_axis=('out_channel', 'in_channel'))
    cands = layer_choices(net, ChoiceSpace(**space), mvq.MVQConfig())
    assert {c.vector_axis for c in cands['a'] if not c.dense} == {'out_channel', 'in_channel'}
    assert {c.vector_axis for c in cands['fc'] if not c.dense} == {'in_channel'}
    alloc = mvq.allocate(net, dict(bits=0.15 * _dense_bits(net)), choices=space, calib=calib,
                         base=mvq.MVQConfig(kmeans_iters=3))
    model = copy.deepcopy(net)
    mvq.compress(model, alloc.config())
    for name, q in mvq.quantized_layers(model).items():
        assert q.vector_axis == alloc.choices[name].vector_axis
    assert mvq.compression_stats(model).bits == alloc.predicted['bits']
    with pytest.raises(ValueError, match="vector_axis has 'rows'"):
        ChoiceSpace(vector_axis=('rows',))
