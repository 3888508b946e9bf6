"""Workload extraction: dense models (conv, grouped, depthwise, 1x1, linear, batch), plans,
compressed models, SCALE-Sim topology files."""
import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin import hw


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.pw = nn.Conv2d(32, 32, 1, groups=2)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.dw(self.pw(self.conv(x)))
        return self.fc(x.mean((2, 3)))


class MyConv(nn.Conv2d):
    """A subclass (like timm's StdConv2d) with its own forward."""

    def forward(self, x):
        return super().forward(x) * 2


@pytest.mark.parametrize('trace', ['meta', 'real', 'auto'])
def test_dense_extraction(trace):
    wl = hw.extract_workload(Net(), (2, 3, 16, 16), trace=trace)
    names = [lay.name for lay in wl]
    assert names == ['stem', 'conv', 'pw', 'dw', 'fc']
    by = {lay.name: lay for lay in wl}
    assert (by['stem'].sr, by['stem'].sc, by['stem'].t) == (27, 16, 8 * 8 * 2)
    assert by['stem'].ofmap == (8, 8) and by['stem'].stride == (2, 2)
    assert (by['conv'].sr, by['conv'].sc, by['conv'].t) == (144, 32, 128)
    assert (by['pw'].groups, by['pw'].sr, by['pw'].sc) == (2, 16, 16)
    assert (by['dw'].groups, by['dw'].sr, by['dw'].sc) == (32, 9, 1)
    assert (by['fc'].kind, by['fc'].sr, by['fc'].sc, by['fc'].t) == ('linear', 32, 10, 2)
    expected = 27 * 16 * 128 + 144 * 32 * 128 + 2 * 16 * 16 * 128 + 32 * 9 * 128 + 32 * 10 * 2
    assert wl.macs == expected
    assert not any(lay.compressed for lay in wl)


def test_subclass_shared_module_and_linear_tokens():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MyConv(4, 8, 1)
            self.proj = nn.Linear(8, 8)

        def forward(self, x):
            y = self.conv(x).flatten(2).transpose(1, 2)      # (B, HW, C)
            return self.proj(self.proj(y))

    wl = hw.extract_workload(Tok(), (2, 4, 3, 5))
    assert [lay.name for lay in wl] == ['conv', 'proj', 'proj#2']
    assert wl.layers[1].t == 2 * 15 and wl.layers[1].sr == 8


def test_plan_and_compressed_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1), nn.Flatten(), nn.Linear(32 * 64, 10))
    cfg = mvq.MVQConfig(block_size=8, num_codewords=16, n=2, m=8, kmeans_iters=3,
                        vector_axis='in_channel')  # the activation-mux tile's layout
    plan = mvq.plan(net, cfg)
    wp = hw.extract_workload(net, (1, 3, 8, 8), plan=plan)
    assert [lay.compressed for lay in wp] == [False, True, True]
    assert wp.layers[1].source == 'plan' and wp.layers[1].density == 0.25
    assert wp.layers[1].num_subvectors == 32 * 16 * 9 // 8

    mvq.compress(net, cfg)
    wc = hw.extract_workload(net, (1, 3, 8, 8))
    lay = wc.layers[1]
    q = mvq.quantized_layers(net)['2']
    assert lay.source == 'compressed' and lay.compressed
    assert (lay.block_size, lay.num_codewords, lay.n, lay.m) == (8, 16, 2, 8)
    assert lay.nnz_weights == int(q.mask.sum()) == 32 * 16 * 9 // 4
    assert lay.codewords_used == int(torch.unique(q.assignments).numel())
    assert 0 < lay.index_entropy_bits <= 4
    # the costs follow the real streams
    rep = hw.estimate(wc, arch='mvq', rows=8, cols=8)
    assert rep.layers['macs'][1] == pytest.approx(lay.nnz_weights * lay.t)
    assert rep.layers['codebook_bits'][1] == lay.codewords_used * 8 * 8
    # meta and real traces agree on a parametrized model
    assert hw.extract_workload(net, (1, 3, 8, 8), trace='real').records() == wc.records()


def test_estimator_object_on_model():
    est = hw.HardwareEstimator(arch='mvq', input_shape=(1, 3, 16, 16), baseline='ews',
                               arch_overrides=dict(rows=8, cols=8))
    net = Net()
    cfg = mvq.MVQConfig(block_size=8, num_codewords=4, n=2, m=8, vector_axis='in_channel')
    report = est.estimate(net, plan=mvq.plan(net, cfg))
    assert report.baseline is not None and set(report.variants) == {
        'sparsity_only', 'vq_only', 'both'}
    s = report.scalars()
    assert all(k.startswith('hw/') and isinstance(v, float) for k, v in s.items())
    assert {'hw/cycles', 'hw/energy_uj', 'hw/tops_per_w', 'hw/area_array_mm2',
            'hw/energy_efficiency', 'hw/sparsity_only/energy_efficiency',
            'hw/vq_only/energy_efficiency', 'hw/both/array_area_reduction'} <= set(s)
    with pytest.raises(ValueError, match='input_shape'):
        hw.HardwareEstimator(input_shape=(0, 3))
    with pytest.raises(ValueError, match="unknown arch 'nope'"):
        hw.HardwareEstimator(arch='nope')


def test_topology_roundtrip(tmp_path):
    wl = hw.extract_workload(Net(), (1, 3, 16, 16))
    dense = [lay for lay in wl if lay.groups == 1 and lay.kind == 'conv']
    path = hw.write_topology(dense, tmp_path / 'net.csv')
    back = hw.read_topology(path)
    for a, b in zip(dense, back):
        assert (a.sr, a.sc, a.t, a.stride) == (b.sr, b.sc, b.t, b.stride)


def test_topology_sparsity_and_depthwise(tmp_path):
    path = tmp_path / 't.csv'
    path.write_text('Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,'
                    'Num Filter,Strides,Sparsity,\n'
                    'c1,10,10,3,3,16,32,1,2:8,\n'
                    'DP1,10,10,3,3,16,1,1,1:1,\n')
    wl = hw.read_topology(path, block_size=8, num_codewords=64)
    assert wl.layers[0].compressed and wl.layers[0].n == 2 and wl.layers[0].num_codewords == 64
    assert wl.layers[0].t == 64
    assert wl.layers[1].groups == 16 and wl.layers[1].sr == 9 and not wl.layers[1].compressed
    bad = tmp_path / 'bad.csv'
    bad.write_text('h\nx,1,2,\n')
    with pytest.raises(ValueError, match='expected at least 8 columns'):
        hw.read_topology(bad)


def test_layer_validation():
    with pytest.raises(ValueError, match='groups=3 must divide'):
        hw.LayerWorkload('x', 'conv', 4, 4, (1, 1), (1, 1), 3, (2, 2), (2, 2))
    with pytest.raises(ValueError, match='compressed layers need block_size'):
        hw.LayerWorkload('x', 'conv', 8, 4, (1, 1), (1, 1), 1, (2, 2), (2, 2), compressed=True)


def test_estimate_model_positional_input_shape():
    rep = hw.estimate(Net(), (1, 3, 16, 16), arch='ws', rows=8, cols=8)
    assert [lay.name for lay in rep.workload] == ['stem', 'conv', 'pw', 'dw', 'fc']
    assert rep.cycles == int(sum(lay.groups * hw.ws_cycles(lay.sr, lay.sc, lay.t, 8, 8)
                                 for lay in rep.workload))
    with pytest.raises(ValueError, match='needs input_shape'):
        hw.estimate(Net())
