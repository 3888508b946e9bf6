"""Damaged files and misfits: each raises its own clear error and leaves the model unchanged;
an interrupted save leaves no file behind."""
import copy
import os
import struct

import pytest
import torch
from artifact_nets import ConvNet, trained_stats
from torch import nn
from torch.nn.utils import parametrize

import mvq_plugin as mvq
from mvq_plugin.io import (
    ArtifactError,
    ArtifactMismatchError,
    ChecksumError,
    CorruptArtifactError,
    CoverageError,
    NotAnArtifactError,
    TruncatedArtifactError,
    UnsupportedVersionError,
    artifact,
    read_header,
)

#: The in_channel layout these error tests were written for.
LEGACY = dict(block_size=8, n=2, m=8, vector_axis='in_channel', codebook_scale='maxabs',
              kmeans_stop='objective')


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    """A compressed model's artifact and its layout: (bytes, header, data start)."""
    torch.manual_seed(0)
    model = trained_stats(ConvNet())
    mvq.compress(model, mvq.MVQConfig(**LEGACY, num_codewords=16, kmeans_iters=2))
    path = tmp_path_factory.mktemp('saved') / 'good.mvq'
    mvq.save(model, path)
    raw = path.read_bytes()
    start = 16 + struct.unpack_from('<I', raw, 8)[0]
    return raw, read_header(path), start


_TARGETS: list[nn.Module] = []


def _targets():
    """Copies of a fresh dense model and of an already compressed one (another seed)."""
    if not _TARGETS:
        torch.manual_seed(5)
        converted = ConvNet()
        mvq.compress(converted, mvq.MVQConfig(**LEGACY, num_codewords=16, kmeans_iters=1,
                                                    seed=7))
        _TARGETS.extend([ConvNet(), converted])
    return [copy.deepcopy(m) for m in _TARGETS]


def _snapshot(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [parametrize.is_parametrized(m) for m in model.modules()],
            getattr(model, 'mvq_config', None))


def _assert_unchanged(model: nn.Module, snap) -> None:
    state, parametrized, config = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert now[key].dtype == value.dtype and torch.allclose(
    now[key].double(), value.double(), rtol=0, atol=0, equal_nan=True), key
    assert [parametrize.is_parametrized(m) for m in model.modules()] == parametrized
    assert getattr(model, 'mvq_config', None) is config


def _expect(tmp_path, data: bytes, error: type, match: str, name: str | None = None):
    path = tmp_path / 'bad.mvq'
    path.write_bytes(data)
    for model in _targets():
        snap = _snapshot(model)
        with pytest.raises(error, match=match) as info:
            mvq.load(model, path)
        assert str(path) in str(info.value)
        if name is not None:
            assert info.value.name == name
        _assert_unchanged(model, snap)


def _flip(raw: bytes, pos: int) -> bytes:
    return raw[:pos] + bytes([raw[pos] ^ 0x5A]) + raw[pos + 1:]


def test_good_file_loads(saved, tmp_path):
    raw, _, _ = saved
    (tmp_path / 'ok.mvq').write_bytes(raw)
    for model in _targets():
        mvq.load(model, tmp_path / 'ok.mvq')


def test_flipped_byte_in_header(saved, tmp_path):
    raw, _, start = saved
    _expect(tmp_path, _flip(raw, (16 + start) // 2), ChecksumError,
            'checksum mismatch in the header', 'header')


@pytest.mark.parametrize('section', ['assignments', 'mask', 'codebook'])
def test_flipped_byte_in_layer_sections(saved, tmp_path, section):
    raw, header, start = saved
    for layer in header['layers']:
        sec = layer['sections'][section]
        where = f"{layer['name']}/{section}"
        _expect(tmp_path, _flip(raw, start + sec['offset'] + sec['length'] // 2), ChecksumError,
                f"checksum mismatch in section '{where}'", where)


@pytest.mark.parametrize('tensor', ['stem.weight', 'bn1.running_mean', 'fc.bias',
                                    'bn2.num_batches_tracked'])
def test_flipped_byte_in_dense_tensors(saved, tmp_path, tensor):
    raw, header, start = saved
    entry = next(t for t in header['tensors'] if t['name'] == tensor)
    _expect(tmp_path, _flip(raw, start + entry['offset']), ChecksumError,
            f"checksum mismatch in section '{tensor}'", tensor)


def test_flipped_header_crc_and_length(saved, tmp_path):
    raw, _, _ = saved
    _expect(tmp_path, _flip(raw, 12), ChecksumError, 'in the header', 'header')
    # A wrong (larger) header length leaves too few bytes or garbles the header.
    _expect(tmp_path, _flip(raw, 11), TruncatedArtifactError, 'truncated file')


def test_truncated_at_several_offsets(saved, tmp_path):
    raw, header, start = saved
    for cut in (2, 10, 16, 16 + (start - 16) // 2, start, start + 7, len(raw) // 2,
                len(raw) - 1):
        _expect(tmp_path, raw[:cut], TruncatedArtifactError, 'truncated file')


def test_trailing_bytes(saved, tmp_path):
    raw, _, _ = saved
    _expect(tmp_path, raw + b'\0', CorruptArtifactError, 'unexpected bytes after the data')


def test_not_an_artifact(saved, tmp_path):
    raw, _, _ = saved
    _expect(tmp_path, b'PK\x03\x04' + raw[4:], NotAnArtifactError, 'not an MVQ artifact')
    _expect(tmp_path, b'', NotAnArtifactError, 'not an MVQ artifact')
    pth = tmp_path / 'state.pth'
    torch.save(ConvNet().state_dict(), pth)
    _expect(tmp_path, pth.read_bytes(), NotAnArtifactError, 'not an MVQ artifact')


def test_wrong_version_and_flags(saved, tmp_path):
    raw, _, _ = saved
    _expect(tmp_path, raw[:4] + struct.pack('<H', 3) + raw[6:], UnsupportedVersionError,
            'unsupported MVQ format version 3')
    # a readable version in the preamble that the header contradicts
    _expect(tmp_path, raw[:4] + struct.pack('<H', 1) + raw[6:], UnsupportedVersionError,
            "header format version 2 differs from the preamble's 1")
    _expect(tmp_path, raw[:4] + struct.pack('<H', 0) + raw[6:], UnsupportedVersionError,
            'version 0')
    _expect(tmp_path, raw[:6] + struct.pack('<H', 3) + raw[8:], CorruptArtifactError,
            'unknown flags 0x0003')


def test_errors_are_value_errors():
    for cls in (NotAnArtifactError, UnsupportedVersionError, ChecksumError,
                TruncatedArtifactError, CorruptArtifactError, ArtifactMismatchError,
                CoverageError):
        assert issubclass(cls, ArtifactError) and issubclass(cls, ValueError)
    assert issubclass(ChecksumError, CorruptArtifactError)
    assert issubclass(TruncatedArtifactError, CorruptArtifactError)
    assert issubclass(CoverageError, ArtifactMismatchError)
    assert mvq.ArtifactError is ArtifactError


def test_model_misfits_leave_model_unchanged(saved, tmp_path):
    raw, _, _ = saved
    path = tmp_path / 'good.mvq'
    path.write_bytes(raw)
    cases = [
        (ConvNet(width=32), ArtifactMismatchError,
         r"layer 'conv1' has weight shape \[32, 16, 3, 3\] in the model, \[64, 16, 3, 3\]"),
        (ConvNet(num_classes=5), ArtifactMismatchError,
         r"layer 'fc' has weight shape \[5, 64\]"),
        (nn.Sequential(nn.Conv2d(3, 16, 3)), ArtifactMismatchError,
         "layer 'conv1' of the artifact is not in the model"),
    ]
    wider = ConvNet()
    wider.extra = nn.Conv2d(64, 64, 1)
    cases.append((wider, CoverageError, r"does not cover: 'extra.weight', 'extra.bias'"))
    # BN with another shape: a dense tensor mismatch.
    other_bn = ConvNet()
    other_bn.bn1 = nn.BatchNorm2d(32)
    cases.append((other_bn, ArtifactMismatchError,
                  r"tensor 'bn1.weight' has shape \[32\] in the model, \[64\]"))
    # A layer compressed in the model but dense in the artifact.
    torch.manual_seed(0)
    dense_file = tmp_path / 'dense.mvq'
    mvq.save(ConvNet(), dense_file)
    compressed = ConvNet()
    mvq.compress(compressed, mvq.MVQConfig(**LEGACY, num_codewords=16, kmeans_iters=1))
    for model, error, match in cases + [(compressed, ArtifactMismatchError,
                                         'compressed in the model but dense')]:
        snap = _snapshot(model)
        target = dense_file if model is compressed else path
        with pytest.raises(error, match=match) as info:
            mvq.load(model, target)
        assert str(target) in str(info.value)
        _assert_unchanged(model, snap)


# ------------------------------------------------------------------ atomic write


def _one_model():
    torch.manual_seed(0)
    model = ConvNet()
    mvq.compress(model, mvq.MVQConfig(**LEGACY, num_codewords=16, kmeans_iters=1))
    return model


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    model = _one_model()
    written = []

    def fail_after_first(fh, chunks):
        fh.write(chunks[0])
        fh.flush()
        written.append(len(chunks[0]))
        raise OSError('disk full (simulated)')

    monkeypatch.setattr(artifact, '_write_chunks', fail_after_first)
    target = tmp_path / 'model.mvq'
    with pytest.raises(OSError, match='simulated'):
        mvq.save(model, target)
    assert written and not target.exists()
    assert os.listdir(tmp_path) == []


def test_failure_keeps_previous_file(tmp_path, monkeypatch):
    model = _one_model()
    target = tmp_path / 'model.mvq'
    mvq.save(model, target)
    before = target.read_bytes()

    def fail_replace(src, dst):
        raise OSError('rename failed (simulated)')

    monkeypatch.setattr(artifact.os, 'replace', fail_replace)
    with torch.no_grad():
        next(iter(mvq.quantized_layers(model).values())).codebook.mul_(2)
    with pytest.raises(OSError, match='simulated'):
        mvq.save(model, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ['model.mvq']


def test_unsupported_tensor_is_refused_before_writing(tmp_path):
    model = ConvNet()
    model.register_buffer('phase', torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="'phase' has dtype torch.complex64"):
        mvq.save(model, tmp_path / 'm.mvq')
    assert os.listdir(tmp_path) == []
