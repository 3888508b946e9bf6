"""Round trips of the .mvq artifact: bit-exact weights, outputs and bytes; sizes."""
import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from artifact_nets import ConvNet, trained_stats
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core import set_codebook_quant
from mvq_plugin.core.parametrize import Stage
from mvq_plugin.core.staged import prepare
from mvq_plugin.io import (
    FORMAT_VERSION,
    MAGIC,
    ArtifactMismatchError,
    CoverageError,
    inspect_artifact,
    read_header,
    unpack_bits,
)

X = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))


#: The in_channel layout these tests were written for (the out_channel round trip names its
#: axis); d=8, k=256, 2:8 where a test does not set them.
LEGACY = dict(block_size=8, num_codewords=256, n=2, m=8, vector_axis='in_channel',
              codebook_scale='maxabs', kmeans_stop='objective')


def _compressed(seed: int = 0, **cfg) -> tuple[ConvNet, mvq.MVQConfig]:
    torch.manual_seed(seed)
    model = trained_stats(ConvNet())
    cfg = mvq.MVQConfig(**{**LEGACY, 'kmeans_iters': 3, 'kmeans_init': 'random', 'seed': seed,
                           **cfg})
    mvq.compress(model, cfg)
    set_codebook_quant(model, True)
    return model.eval(), cfg


def _round_trip(src: nn.Module, tmp_path, make=ConvNet) -> nn.Module:
    """save -> load into a fresh dense model -> everything bit-identical -> same bytes."""
    path = tmp_path / 'model.mvq'
    info = mvq.save(src, path)
    assert info.total_bytes == path.stat().st_size
    dst = make().eval()
    loaded = mvq.load(dst, path)
    assert loaded.total_bytes == info.total_bytes
    src_q, dst_q = mvq.quantized_layers(src), mvq.quantized_layers(dst)
    assert list(src_q) == list(dst_q) and src_q
    for name, q in src_q.items():
        d = dst_q[name]
        assert torch.equal(src.get_submodule(name).weight, dst.get_submodule(name).weight), name
        assert torch.equal(q.assignments, d.assignments) and torch.equal(q.mask, d.mask)
        assert torch.equal(q.effective_codebook(), d.codebook)
        assert (d.n, d.m, d.method, d.codebook_bits, d.vector_axis, d.codebook_quant) == \
            (q.n, q.m, q.method, q.codebook_bits, q.vector_axis, True)
    # Every other tensor (BN statistics, biases, the dense stem) is identical too.
    skip = ('parametrizations.weight.',)
    src_sd = {k: v for k, v in src.state_dict().items() if not any(s in k for s in skip)}
    dst_sd = {k: v for k, v in dst.state_dict().items() if not any(s in k for s in skip)}
    assert src_sd.keys() == dst_sd.keys()
    for key in src_sd:
        assert torch.equal(src_sd[key], dst_sd[key]), key
    assert torch.equal(src(X), dst(X))
    # The accounting and the artifact agree.
    stats = mvq.compression_stats(dst, artifact=loaded)
    assert (info.accounted_bits, info.accounted_buffer_bits) == (stats.bits, stats.bits_buffers)
    assert stats.artifact_bytes == info.total_bytes
    # Re-saving the loaded model gives the same bytes.
    again = tmp_path / 'again.mvq'
    mvq.save(dst, again)
    assert again.read_bytes() == path.read_bytes()
    return dst


CASES = [
    # method, d, n, m, k, codebook_bits
    ('mvq', 8, 2, 8, 256, 8),
    ('mvq', 8, 1, 4, 2, 8),
    ('mvq', 8, 4, 8, 100, 16),
    ('mvq', 16, 3, 16, 256, 32),
    ('mvq', 8, 2, 8, 2048, 8),
    ('prune_vq', 8, 2, 8, 100, 8),
    ('prune_vq', 16, 3, 16, 2, 16),
    ('prune_vq', 8, 1, 4, 2048, 32),
    ('vq', 8, 8, 8, 256, 16),
    ('vq', 8, 2, 8, 2, 8),
    ('vq', 4, 4, 4, 100, 32),
    ('vq', 8, 2, 8, 2048, 16),
]


@pytest.mark.parametrize('method,d,n,m,k,bits', CASES,
                         ids=[f'{c[0]}-d{c[1]}-{c[2]}:{c[3]}-k{c[4]}-q{c[5]}' for c in CASES])
def test_round_trip_bit_exact(tmp_path, method, d, n, m, k, bits):
    src, cfg = _compressed(block_size=d, n=n, m=m, num_codewords=k, method=method,
                           codebook_bits=bits)
    numel = {'conv1': 16 * 64 * 9, 'conv2': 64 * 64 * 9, 'fc': 64 * 10}
    expected = [name for name, size in numel.items() if size // d >= k]
    assert list(mvq.quantized_layers(src)) == expected
    dst = _round_trip(src, tmp_path)
    assert dst.mvq_config == cfg
    header = read_header(tmp_path / 'model.mvq')
    for layer in header['layers']:
        sec = layer['sections']
        assert sec['assignments']['bits'] == math.ceil(math.log2(k))
        assert sec['assignments']['length'] == math.ceil(
    layer['num_subvectors'] * math.ceil(math.log2(k)) / 8)
        pruned = method != 'vq' and n < m
        assert ('mask' in sec) == pruned
        if pruned:
            code_bits = math.ceil(math.log2(math.comb(m, n)))
            assert sec['mask']['bits'] == code_bits
            assert sec['mask']['length'] == math.ceil(
    layer['num_subvectors'] * d // m * code_bits / 8)
        assert sec['codebook']['length'] == k * d * bits // 8
        assert layer['codebook_dtype'] == {8: 'int8', 16: 'float16', 32: 'float32'}[bits]
        assert (layer['scale'] is not None) == (bits == 8)


def test_int8_scale_buffer_and_quant_off_source(tmp_path):
    """A fixed scale buffer is used as is; the artifact holds the quantized values even when
    the source runs unquantized, and the loaded model equals the source with quant on."""
    src, _ = _compressed(num_codewords=16)
    q = mvq.quantized_layers(src)['conv1']
    q.scale.fill_(float(q.codebook.detach().abs().max()) / 100)  # clamps the largest codewords
    set_codebook_quant(src, False)
    path = tmp_path / 'm.mvq'
    mvq.save(src, path)
    set_codebook_quant(src, True)
    reference = src(X)
    dst = ConvNet().eval()
    mvq.load(dst, path)
    assert torch.equal(dst(X), reference)
    assert float(mvq.quantized_layers(dst)['conv1'].scale) == float(q.scale)


@pytest.mark.parametrize('bits', [8, 16])
def test_saving_unrounded_codebooks_warns_and_reports_the_rounding(tmp_path, caplog, bits):
    """Quantization off (right after compress): the file stores rounded codebooks, so the
    loaded model differs; save says so by name and size and leaves the model unchanged."""
    src, _ = _compressed(num_codewords=16, codebook_bits=bits)
    set_codebook_quant(src, False)
    before = src(X)
    books = {n: q.codebook.detach().clone() for n, q in mvq.quantized_layers(src).items()}
    with caplog.at_level('WARNING', logger='mvq_plugin'):
        info = mvq.save(src, tmp_path / 'm.mvq')
    assert torch.equal(src(X), before)  # the model itself is not changed by saving
    assert all(torch.equal(q.codebook, books[n]) for n, q in mvq.quantized_layers(src).items())
    assert set(info.codebook_rounding) == set(books)
    for name, err in info.codebook_rounding.items():
        q = mvq.quantized_layers(src)[name]
        q.codebook_quant = True
        expected = float((books[name] - q.effective_codebook().detach()).abs().max())
        q.codebook_quant = False
        assert err == pytest.approx(expected, rel=1e-6) and err > 0
    worst = max(info.codebook_rounding, key=info.codebook_rounding.get)
    warning = ' '.join(r.getMessage() for r in caplog.records if r.levelname == 'WARNING')
    assert f'{info.codebook_rounding[worst]:.3g} in {worst}' in warning
    assert all(repr(n) in warning for n in books)
    dst = ConvNet().eval()
    mvq.load(dst, tmp_path / 'm.mvq')
    diff = float((dst(X) - before).detach().abs().max())
    assert diff > 0  # what the warning is about
    set_codebook_quant(src, True)
    assert torch.equal(dst(X), src(X))  # the artifact holds the quantized model exactly


def test_saving_quantized_codebooks_is_exact_and_silent(tmp_path, caplog):
    src, _ = _compressed(num_codewords=16)  # quantization on
    with caplog.at_level('WARNING', logger='mvq_plugin'):
        info = mvq.save(src, tmp_path / 'm.mvq')
    assert info.codebook_rounding == {}
    assert not [r for r in caplog.records if r.levelname == 'WARNING']
    dst = ConvNet().eval()
    mvq.load(dst, tmp_path / 'm.mvq')
    assert torch.equal(dst(X), src(X))


def test_format_is_plain_bytes_readable_with_numpy(tmp_path):
    src, _ = _compressed(num_codewords=16)
    path = tmp_path / 'm.mvq'
    mvq.save(src, path)
    raw = path.read_bytes()
    magic, version, flags, length, crc = struct.unpack_from('<4sHHII', raw)
    assert (magic, version, flags) == (MAGIC, FORMAT_VERSION, 1)
    blob = raw[16:16 + length]
    assert zlib.crc32(blob) == crc
    header = json.loads(zlib.decompress(blob))
    data = raw[16 + length:]
    assert len(data) == header['data_bytes']
    layer = next(e for e in header['layers'] if e['name'] == 'conv2')
    q = mvq.quantized_layers(src)['conv2']
    sec = layer['sections']['assignments']
    idx = unpack_bits(data[sec['offset']:sec['offset'] + sec['length']], sec['bits'],
                      layer['num_subvectors'])
    assert np.array_equal(idx, q.assignments.numpy())
    sec = layer['sections']['codebook']
    ints = np.frombuffer(data[sec['offset']:sec['offset'] + sec['length']], 'i1')
    book = ints.astype(np.float32).reshape(layer['k'], layer['d']) * np.float32(layer['scale'])
    assert np.array_equal(book, q.effective_codebook().detach().numpy())
    tensor = next(t for t in header['tensors'] if t['name'] == 'bn1.running_var')
    arr = np.frombuffer(data[tensor['offset']:tensor['offset'] + tensor['length']], '<f4')
    assert tensor['kind'] == 'buffer' and np.array_equal(arr, src.bn1.running_var.numpy())
    assert {t['name'] for t in header['tensors']} >= {'stem.weight', 'bn1.num_batches_tracked'}
    assert not any('parametrizations' in t['name'] for t in header['tensors'])
    assert header['config']['num_codewords'] == 16


def test_load_into_converted_and_prepared_models(tmp_path):
    src, cfg = _compressed(num_codewords=16)
    path = tmp_path / 'm.mvq'
    mvq.save(src, path)
    # Compressed with another seed: updated in place, the codebook Parameter object is kept.
    other, _ = _compressed(seed=3, num_codewords=16)
    books = {n: q.codebook for n, q in mvq.quantized_layers(other).items()}
    mvq.load(other, path)
    assert all(q.codebook is books[n] for n, q in mvq.quantized_layers(other).items())
    assert torch.equal(other(X), src(X))
    # Prepared (placeholders, stage DENSE), as a training framework builds it.
    prepared = ConvNet().eval()
    prepare(prepared, cfg)
    assert all(q.current_stage == Stage.DENSE for q in mvq.quantized_layers(prepared).values())
    mvq.load(prepared, path)
    assert all(q.current_stage == Stage.CLUSTERED for q in mvq.quantized_layers(prepared).values())
    assert torch.equal(prepared(X), src(X))
    # Another k in the model than in the file: the parametrization is replaced.
    other_k = ConvNet().eval()
    mvq.compress(other_k, mvq.MVQConfig(**{**LEGACY, 'num_codewords': 8}, kmeans_iters=1))
    mvq.load(other_k, path)
    assert mvq.quantized_layers(other_k)['conv1'].num_codewords == 16
    assert torch.equal(other_k(X), src(X))


def test_saving_unclustered_layer_is_refused(tmp_path):
    model = ConvNet()
    prepare(model, mvq.MVQConfig(**{**LEGACY, 'num_codewords': 16}))
    with pytest.raises(ValueError, match="layer 'conv1' is not clustered yet"):
        mvq.save(model, tmp_path / 'm.mvq')
    assert not (tmp_path / 'm.mvq').exists()


def test_dense_model_and_fp16_tensors(tmp_path):
    src = trained_stats(ConvNet())
    info = mvq.save(src, tmp_path / 'dense.mvq')
    assert info.num_layers == 0 and info.buffer_bytes > 0
    dst = ConvNet().eval()
    mvq.load(dst, tmp_path / 'dense.mvq')
    assert torch.equal(dst(X), src(X))
    half = mvq.save(src, tmp_path / 'half.mvq', float_dtype='float16')
    assert half.parameter_bytes == info.parameter_bytes // 2
    dst = ConvNet().eval()
    mvq.load(dst, tmp_path / 'half.mvq')
    assert torch.equal(dst.stem.weight, src.stem.weight.half().float())
    assert dst.bn1.num_batches_tracked.dtype == torch.int64
    assert int(dst.bn1.num_batches_tracked) == 2
    with pytest.raises(ValueError, match='float_dtype'):
        mvq.save(src, tmp_path / 'x.mvq', float_dtype='bfloat16')


def test_strict_false_skips_and_strict_names(tmp_path):
    src, _ = _compressed(num_codewords=16)
    path = tmp_path / 'm.mvq'
    mvq.save(src, path)

    class Wider(ConvNet):
        def __init__(self):
            super().__init__()
            self.extra = nn.Linear(4, 4)

    with pytest.raises(CoverageError, match="'extra.weight'") as err:
        mvq.load(Wider(), path)
    assert 'does not cover' in str(err.value) and str(path) in str(err.value)
    model = Wider().eval()
    extra = model.extra.weight.detach().clone()
    mvq.load(model, path, strict=False)
    assert torch.equal(model.extra.weight, extra)
    assert torch.equal(model.fc(torch.ones(1, 64)), src.fc(torch.ones(1, 64)))

    no_bn = ConvNet()
    no_bn.bn2 = nn.Identity()
    with pytest.raises(CoverageError, match="artifact has 5 tensor"):
        mvq.load(no_bn, path)
    mvq.load(no_bn, path, strict=False)

    # A compressed layer missing from the model is an error even when not strict.
    class NoConv2(ConvNet):
        def __init__(self):
            super().__init__()
            del self.conv2

    with pytest.raises(ArtifactMismatchError, match="layer 'conv2' of the artifact is not in"):
        mvq.load(NoConv2(), path, strict=False)


def test_inspect_and_str(tmp_path):
    src, _ = _compressed(num_codewords=16)
    info = mvq.save(src, tmp_path / 'm.mvq')
    again = inspect_artifact(tmp_path / 'm.mvq')
    assert again == info
    text = str(info)
    for word in ('assignments', 'masks', 'codebooks', 'parameters', 'buffers', 'accounted'):
        assert word in text
    stats = mvq.compression_stats(src, artifact=info)
    assert 'on disk' in str(stats) and f'{info.total_bytes:,}' in str(stats)
    assert stats.to_dict()['artifact_bytes'] == info.total_bytes


@pytest.mark.slow
def test_resnet18_size_matches_accounting(tmp_path):
    """Bytes on disk = accounted bits / 8 (+ buffers) within 1%, header <= 8 KiB."""
    torchvision = pytest.importorskip('torchvision')
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    dense_buf = io.BytesIO()
    torch.save(model.state_dict(), dense_buf)
    cfg = mvq.MVQConfig(**LEGACY, kmeans_iters=0, kmeans_init='random')  # d=8, k=256, 2:8, int8
    mvq.compress(model, cfg)
    info = mvq.save(model, tmp_path / 'r18.mvq')
    stats = mvq.compression_stats(model, artifact=info)
    assert info.num_layers == 20  # every conv but the stem, and the fc
    assert info.header_bytes <= 8 * 1024
    assert info.accounted_bits == stats.bits
    accounted = (stats.bits + stats.bits_buffers) / 8
    assert abs(info.data_bytes - accounted) <= 0.01 * accounted
    # The only differences: per-section rounding to whole bytes and the int8 scales, which
    # live in the header.
    assert -4 * info.num_layers <= info.data_bytes - accounted <= 2 * info.num_layers
    assert info.total_bytes < dense_buf.getbuffer().nbytes / 15


class _Format1Net(nn.Module):
    """The model of ``tests/io/data/format1_tiny.mvq`` (written by the format-1 code, commit
    c439c66: seed 0, BN affine and statistics drawn uniformly, ``MVQConfig(block_size=8,
    num_codewords=16, n=2, m=8, kmeans_iters=5, min_params=0, overrides={'fc':
    dict(method='vq', num_codewords=8)})`` in the in_channel layout, int8 codebooks on)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.pw = nn.Conv2d(32, 32, 1, groups=2)
        self.fc = nn.Linear(32, 16)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.conv(x)))
        x = torch.relu(self.pw(x))
        return self.fc(x.mean((2, 3)))


def test_a_format_1_file_still_loads_to_identical_outputs():
    data = Path(__file__).parent / 'data'
    header = mvq.io.read_header(data / 'format1_tiny.mvq')
    assert header['version'] == 1
    # the config of a format-1 file reads with the settings format-1 code used
    assert header['config']['codebook_scale'] == 'maxabs'
    assert header['config']['kmeans_stop'] == 'objective'
    model = _Format1Net().eval()
    mvq.load(model, data / 'format1_tiny.mvq')
    assert sorted(mvq.quantized_layers(model)) == ['conv', 'fc', 'pw']
    assert all(q.vector_axis == 'in_channel' for q in mvq.quantized_layers(model).values())
    assert model.mvq_config.vector_axis == 'in_channel'
    expected = torch.load(data / 'format1_tiny_io.pt', weights_only=True)
    with torch.no_grad():
        y = model(expected['x'])
    # the fixture's outputs were computed on another CPU: convolution kernels sum in an order
    # that depends on the instruction set (AVX2, AVX-512), so the last bit may differ there;
    # a wrongly decoded codeword, mask or scale moves outputs by orders of magnitude more
    torch.testing.assert_close(y, expected['y'], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('scale', ['lsq', 'maxabs'])
def test_out_channel_artifact_round_trips_bit_exactly(tmp_path, scale):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3, groups=2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 16))
    cfg = mvq.MVQConfig(block_size=8, num_codewords=16, n=2, m=8, kmeans_iters=4,
                        min_params=0, skip_first_conv=False, codebook_scale=scale)
    mvq.compress(net, cfg)
    assert {q.vector_axis for q in mvq.quantized_layers(net).values()} == {'out_channel'}
    mvq.set_codebook_quant(net, True)
    net.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = net(x)
    mvq.save(net, tmp_path / 'out.mvq')
    header = mvq.io.read_header(tmp_path / 'out.mvq')
    assert header['version'] == 2
    assert {layer['vector_axis'] for layer in header['layers']} == {'out_channel'}
    assert {layer['codebook_scale'] for layer in header['layers']} == {scale}
    fresh = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3, groups=2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 16)).eval()
    mvq.load(fresh, tmp_path / 'out.mvq')
    with torch.no_grad():
        assert torch.equal(fresh(x), y)
    for name, q in mvq.quantized_layers(fresh).items():
        ref = mvq.quantized_layers(net)[name]
        assert torch.equal(q.mask, ref.mask) and torch.equal(q.assignments, ref.assignments)


def test_format_2_stores_the_int8_code_minus_128(tmp_path):
    """An LSQ scale may map a codeword to -128 (the signed 8-bit range of the paper's Eq. 5):
    format 2 stores it and loads it back exactly; the model computes the same outputs."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3))
    mvq.compress(net, mvq.MVQConfig(block_size=8, num_codewords=16, n=2, m=8, kmeans_iters=3,
                                    min_params=0, codebook_scale='lsq'))
    mvq.set_codebook_quant(net, True)
    q = mvq.quantized_layers(net)['2']
    with torch.no_grad():
        s = float(q.quant_scale())
        q.codebook[0, 0] = -128 * s
    assert float(q.effective_codebook()[0, 0]) == -128 * s
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = net.eval()(x)
    mvq.save(net, tmp_path / 'lsq.mvq')
    art = mvq.io.codec.read_artifact(tmp_path / 'lsq.mvq')
    layer = next(ly for ly in art.layers if ly.name == '2')
    assert float(layer.codebook.min() / layer.scale) == -128
    fresh = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3)).eval()
    mvq.load(fresh, tmp_path / 'lsq.mvq')
    with torch.no_grad():
        assert torch.equal(fresh(x), y)
