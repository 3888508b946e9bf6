"""The weight stream (round trip from an artifact) and the golden model of the weight loader
and sparse tile (== the integer GEMM, == the analytical model's counts)."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mvq_plugin as mvq
from mvq_plugin import hw
from mvq_plugin.core.blocking import from_subvectors
from mvq_plugin.core.nm import nm_mask
from mvq_plugin.hw.golden import im2col, run_layer
from mvq_plugin.hw.stream import read_stream, stream_layers, write_stream
from mvq_plugin.hw.workload import LayerWorkload, Workload


def _layer(rng, shape, groups, d, k, n, m):
    """A compressed layer record with random int8 codewords, assignments and N:M masks."""
    nsub = int(np.prod(shape)) // d
    codebook = torch.from_numpy(rng.integers(-128, 128, (k, d))).float() * 0.01
    scores = torch.from_numpy(rng.random((nsub, d)))
    mask = nm_mask(scores, n, m) if n < m else torch.ones(nsub, d, dtype=torch.bool)
    assign = torch.from_numpy(rng.integers(0, k, nsub))
    rec = dict(name='layer', weight_shape=shape, vector_axis='out_channel', n=n, m=m,
               codebook=codebook, scale=0.01, assignments=assign, mask=mask, codebook_bits=8)
    dense = (torch.round(codebook / 0.01)[assign] * mask).double()
    return rec, from_subvectors(dense, shape, 'out_channel')


# (name, kind, C_in, C_out, kernel, stride, pad, groups, H (or tokens), array, d, n, m, k)
SHAPES = [
    ('1x1', 'conv', 24, 32, 1, 1, 0, 1, 7, 16, 16, 4, 16, 32),
    ('3x3 stride 2', 'conv', 8, 16, 3, 2, 1, 1, 9, 16, 16, 4, 16, 64),
    ('grouped', 'conv', 16, 32, 3, 1, 1, 2, 6, 16, 16, 4, 16, 16),
    ('fc', 'linear', 40, 48, 1, 1, 0, 1, 3, 32, 8, 2, 8, 32),
    ('smaller than the array', 'conv', 4, 16, 1, 1, 0, 1, 5, 32, 16, 4, 16, 8),
    ('dense layer (vq)', 'conv', 12, 16, 3, 1, 1, 1, 4, 16, 16, 16, 16, 16),
]


@pytest.mark.parametrize('case', SHAPES, ids=[c[0] for c in SHAPES])
@pytest.mark.parametrize('setting', ['EWS-CMS', 'WS-CMS'])
def test_golden_equals_integer_gemm_and_analytical_counts(case, setting):
    _, kind, cin, cout, kk, st, pad, groups, h, size, d, n, m, k = case
    rng = np.random.default_rng(0)
    shape = (cout, cin // groups, kk, kk) if kind == 'conv' else (cout, cin)
    rec, weight = _layer(rng, shape, groups, d, k, n, m)
    # the tile is built for 75 % (Q = d/4); a dense (vq) layer takes 4 passes on it
    arch = hw.get_arch(f'{setting}_{size}x{size}', sparse_block=d, sparse_n=d // 4,
                       sparse_m=d, codebook_rf_width=d)
    (layer,) = stream_layers([rec], array=(size, size), groups={'layer': groups})
    if kind == 'conv':
        x = torch.from_numpy(rng.integers(-128, 128, (1, cin, h, h))).double()
        ref = F.conv2d(x, weight, stride=st, padding=pad, groups=groups)
        cols = im2col(x.numpy().astype(np.int64), (kk, kk), (st, st), (pad, pad), groups)
        out = run_layer(layer, cols, arch)
        got = out.output.transpose(1, 0, 2).reshape(ref.shape[2], ref.shape[3], cout)
        assert np.array_equal(got.transpose(2, 0, 1)[None], ref.numpy().astype(np.int64))
        lay = LayerWorkload('layer', 'conv', cin, cout, (kk, kk), (st, st), groups, (h, h),
                            tuple(ref.shape[2:]))
    else:
        x = torch.from_numpy(rng.integers(-128, 128, (h, cin))).double()
        ref = x @ weight.T
        out = run_layer(layer, im2col(x.numpy().astype(np.int64), (1, 1)), arch)
        assert np.array_equal(out.output[0], ref.numpy().astype(np.int64))
        lay = LayerWorkload('layer', 'linear', cin, cout, (1, 1), (1, 1), 1, (1, 1), (h, 1))
    kept = int(rec['mask'].sum())
    lay = Workload('w', [lay]).with_compression(d, k, n, m, predicate=lambda x: True,
                                                vector_axis='out_channel').layers[0]
    lay = replace(lay, nnz_weights=kept if n < m else None)
    costs = hw.layer_costs(Workload('w', [lay]), arch, hw.load_table('paper-40nm'))
    assert out.weight_loads == kept == round(costs['weight_loads'][0])
    assert out.multiplies == round(costs['macs'][0])
    assert out.codebook_reads == costs['codebook_reads'][0] == math.prod(shape) // d
    assert sum(out.tile_load_cycles) == costs['load_cycles_total'][0]
    assert out.tile_load_cycles[0] == costs['load_cycles'][0]
    assert out.cycles == costs['cycles'][0]


def test_layer_larger_than_the_l2_slice_is_cut_at_fold_boundaries():
    rng = np.random.default_rng(1)
    rec, _ = _layer(rng, (64, 32, 3, 3), 1, 16, 64, 4, 16)
    (layer,) = stream_layers([rec], array=(16, 16), l2_kb=0.5)
    assert len(layer.slices) > 1
    assert sum(s['entries'] for s in layer.slices) == len(layer.indices) == 64 * 32 * 9 // 16
    assert sum(s['folds'] for s in layer.slices) == len(layer.folds)
    assert all(s['packed_bytes'] <= 512 for s in layer.slices)
    assert layer.entry_bits == 6 + 11                  # log2(64) + ceil(log2 C(16, 4))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 16)

    def forward(self, x):
        x = self.body(torch.relu(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def test_stream_round_trip_from_an_artifact(tmp_path):
    from mvq_plugin.io.codec import read_artifact
    torch.manual_seed(0)
    model = Net()
    cfg = mvq.MVQConfig(block_size=16, num_codewords=16, n=4, m=16, kmeans_iters=3, seed=0,
                        min_params=0)
    mvq.compress(model, cfg)
    mvq.set_codebook_quant(model, True)          # the model computes what the file stores
    path = tmp_path / 'net.mvq'
    mvq.save(model, path)
    layers = stream_layers(read_artifact(path).layers, array=(16, 16))
    assert [lay.name for lay in layers] == ['body', 'fc']
    manifest = write_stream(layers, tmp_path / 'stream')
    back = read_stream(manifest.parent)
    for a, b in zip(layers, back):
        assert np.array_equal(a.codebook, b.codebook) and a.scale == b.scale
        assert np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.mask_codes, b.mask_codes)
        assert np.array_equal(a.subvector, b.subvector) and a.folds == b.folds
        # the stream encodes exactly the model's weight (int8 codewords x scale, masked)
        w = dict(model.named_modules())[a.name].weight.detach()
        assert torch.allclose(torch.from_numpy(b.dense_weight()).float() * b.scale, w,
                              atol=1e-6)
    # the same streams from the model itself
    again = stream_layers(hw.stream.layers_from_model(model), array=(16, 16))
    assert all(np.array_equal(a.indices, b.indices) for a, b in zip(layers, again))


def test_stream_refuses_other_layouts():
    rec, _ = _layer(np.random.default_rng(0), (16, 8), 1, 16, 8, 4, 16)
    with pytest.raises(ValueError, match="vector_axis='in_channel'"):
        stream_layers([dict(rec, vector_axis='in_channel')])
    with pytest.raises(ValueError, match='codebook_bits=16'):
        stream_layers([dict(rec, codebook_bits=16)])
    with pytest.raises(ValueError, match='L=24 must be a multiple of d=16'):
        stream_layers([rec], array=(16, 24))


def test_cli_writes_the_stream(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    torch.manual_seed(0)
    model = Net()
    mvq.compress(model, mvq.MVQConfig(block_size=16, num_codewords=16, n=4, m=16,
                                      kmeans_iters=2, seed=0, min_params=0))
    mvq.set_codebook_quant(model, True)
    mvq.save(model, tmp_path / 'net.mvq')
    tool = Path(__file__).resolve().parents[2] / 'tools' / 'hw_stream.py'
    proc = subprocess.run([sys.executable, str(tool), str(tmp_path / 'net.mvq'), '--array',
                           '32x32', '--out', str(tmp_path / 's')], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    back = read_stream(tmp_path / 's')
    assert [b.name for b in back] == ['body', 'fc'] and back[0].array == (32, 32)
