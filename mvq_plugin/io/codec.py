"""Encoding and decoding ``.mvq`` files (layout in :mod:`.format`), with every check.

:func:`encode_header`, :func:`encode_layer` and :func:`encode_tensor` turn the header, one MVQ
weight and one uncompressed tensor into their bytes; :func:`read_artifact` parses and verifies
a whole file (preamble, header, checksums, lengths, value ranges) without a model, raising the
:mod:`.format` errors.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.bits import index_bits
from ..core.config import METHODS, VECTOR_AXES, prunes
from ..core.nm import decode_mask, encode_mask, mask_code_bits
from ..core.parametrize import MVQWeight, Stage
from ..core.quant import INT8_MAX, INT8_MIN
from .bitpack import pack_bits, packed_size, unpack_bits
from .format import (
    CODEBOOK_DTYPES,
    FLAG_HEADER_ZLIB,
    FLOAT_DTYPES,
    FORMAT_VERSION,
    KNOWN_FLAGS,
    MAGIC,
    PREAMBLE,
    READABLE_VERSIONS,
    STORAGE_DTYPES,
    VERSION1_CONFIG,
    ArtifactInfo,
    ChecksumError,
    CorruptArtifactError,
    NotAnArtifactError,
    TruncatedArtifactError,
    UnsupportedVersionError,
    crc32,
)

__all__ = ['encode_header', 'encode_layer', 'encode_tensor', 'read_artifact', 'parse_header',
           'read_header', 'inspect_artifact', 'DecodedLayer', 'DecodedArtifact']


# --------------------------------------------------------------------------------- encode


def encode_header(header: dict) -> bytes:
    """The preamble and the zlib-compressed JSON ``header``: the bytes before the data."""
    raw = json.dumps(header, separators=(',', ':'), allow_nan=False).encode('utf-8')
    blob = zlib.compress(raw, 9)
    return PREAMBLE.pack(MAGIC, FORMAT_VERSION, FLAG_HEADER_ZLIB, len(blob), crc32(blob)) + blob


def encode_tensor(t: torch.Tensor, dtype: str) -> bytes:
    """An uncompressed tensor's section: C order, little-endian, stored as ``dtype``."""
    np_dtype, torch_dtype = STORAGE_DTYPES[dtype]
    arr = t.detach().to('cpu', torch_dtype).contiguous().numpy()
    return arr.astype(np_dtype, copy=False).tobytes()


def encode_layer(name: str, q: MVQWeight
                  ) -> tuple[dict, list[tuple[str, bytes, dict]], float]:
    """Header entry, ``[(section, bytes, extra)]`` and the codebook rounding of one layer.

    The rounding is ``max |c - stored c|`` when the forward pass does not already round the
    codebook to its storage precision (``quantize`` off), else 0.
    """
    if q.current_stage != Stage.CLUSTERED:
        raise ValueError(f'layer {name!r} is not clustered yet (stage {int(q.stage)}); run '
                         'cluster_prepared (or compress) before saving')
    if q.codebook_bits not in CODEBOOK_DTYPES:
        raise ValueError(f'layer {name!r}: codebook_bits={q.codebook_bits} not in '
                         f'{sorted(CODEBOOK_DTYPES)}')
    k, d = q.codebook.shape
    count = q.assignments.numel()
    bits = index_bits(k)
    sections = [('assignments', pack_bits(q.assignments.detach().cpu().numpy(), bits),
                 {'bits': bits})]
    mask = q.mask.detach().cpu()
    if q.prunes:
        code_bits = mask_code_bits(q.n, q.m)
        codes = encode_mask(mask, q.n, q.m).numpy()
        sections.append(('mask', pack_bits(codes, code_bits), {'bits': code_bits}))
    elif not bool(mask.all()):
        raise ValueError(f'layer {name!r} ({q.method}, N:M={q.n}:{q.m}) stores no mask but '
                         'its mask prunes weights')
    cb = q.codebook.detach().float().cpu()
    scale = None
    if q.codebook_bits == 8:
        s = q.quant_scale().float().cpu()
        if not bool(torch.isfinite(s)) or float(s) <= 0:
            raise ValueError(f'layer {name!r}: int8 scale {float(s)} must be finite and > 0')
        ints = torch.round(cb / s).clamp(INT8_MIN, INT8_MAX).to(torch.int8)
        data = ints.numpy().tobytes()
        scale = float(s)
        stored = ints.float() * s
    elif q.codebook_bits == 16:
        data = cb.half().numpy().astype('<f2', copy=False).tobytes()
        stored = cb.half().float()
    else:
        data = cb.numpy().astype('<f4', copy=False).tobytes()
        stored = cb
    rounding = 0.0 if q.codebook_quant else float((cb - stored).abs().max()) if cb.numel() else 0.0
    sections.append(('codebook', data, {}))
    entry = dict(name=name, weight_shape=list(q.weight_shape), d=int(d), k=int(k), n=q.n,
                 m=q.m, vector_axis=q.vector_axis, method=q.method,
                 codebook_bits=q.codebook_bits, num_subvectors=int(count),
                 codebook_dtype=CODEBOOK_DTYPES[q.codebook_bits], scale=scale,
                 codebook_scale=q.codebook_scale)
    return entry, sections, rounding


# --------------------------------------------------------------------------------- decode


@dataclass
class DecodedLayer:
    """One compressed layer as the file stores it (codebook in fp32, int8 already scaled)."""

    name: str
    weight_shape: tuple[int, ...]
    vector_axis: str
    n: int
    m: int
    method: str
    codebook_bits: int
    scale: float | None
    codebook: torch.Tensor
    assignments: torch.Tensor
    mask: torch.Tensor


@dataclass
class DecodedArtifact:
    """A verified file: its header, :class:`ArtifactInfo`, layers and uncompressed tensors."""

    path: str
    header: dict
    info: ArtifactInfo
    layers: list[DecodedLayer]
    tensors: dict[str, torch.Tensor]


class _Checker:
    """Typed access to header fields, raising :class:`CorruptArtifactError`."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, message: str, name: str | None = None) -> CorruptArtifactError:
        return CorruptArtifactError(self.path, f'malformed header: {message}', name)

    def get(self, obj: Any, key: str, kind: type | tuple, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise self.fail(f'{where} has no {key!r}')
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise self.fail(f'{where}.{key}={value!r} has the wrong type')
        return value

    def integer(self, obj: Any, key: str, where: str, low: int = 0) -> int:
        value = self.get(obj, key, int, where)
        if value < low:
            raise self.fail(f'{where}.{key}={value} must be >= {low}')
        return value

    def shape(self, obj: Any, key: str, where: str) -> tuple[int, ...]:
        value = self.get(obj, key, list, where)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value):
            raise self.fail(f'{where}.{key}={value!r} is not a shape')
        return tuple(value)


def _read_preamble(path: str, data: bytes | memoryview) -> tuple[int, int, int, int]:
    """Checks magic, version and flags; returns ``(version, flags, header_length,
    header_crc)``."""
    size = PREAMBLE.size
    if len(data) < size:
        if bytes(data[:len(MAGIC)]) == MAGIC[:min(len(data), len(MAGIC))] and len(data):
            raise TruncatedArtifactError(path, f'truncated file: {len(data)} bytes, shorter '
                                         f'than the {size}-byte preamble')
        raise NotAnArtifactError(path, f'not an MVQ artifact ({len(data)} bytes, no '
                                 f'{MAGIC!r} magic)')
    magic, version, flags, length, crc = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise NotAnArtifactError(path, f'not an MVQ artifact: starts with {magic!r}, not '
                                 f'{MAGIC!r}')
    if version not in READABLE_VERSIONS:
        raise UnsupportedVersionError(path, f'unsupported MVQ format version {version}; this '
                                      f'mvq_plugin reads versions {list(READABLE_VERSIONS)}')
    if flags & ~KNOWN_FLAGS:
        raise CorruptArtifactError(path, f'unknown flags 0x{flags:04x} in the preamble')
    if len(data) < size + length:
        raise TruncatedArtifactError(path, f'truncated file: {len(data)} bytes, the header '
                                     f'alone ends at byte {size + length}')
    return version, flags, length, crc


def parse_header(path: str, data: bytes | memoryview) -> tuple[dict, int]:
    """Verified header dict and the data-region start."""
    version, flags, length, crc = _read_preamble(path, data)
    start = PREAMBLE.size
    blob = data[start:start + length]
    actual = crc32(blob)
    if actual != crc:
        raise ChecksumError(path, f'checksum mismatch in the header (stored crc32 0x{crc:08x}, '
                            f'computed 0x{actual:08x}): the file is corrupted', 'header')
    try:
        raw = zlib.decompress(blob) if flags & FLAG_HEADER_ZLIB else bytes(blob)
        header = json.loads(raw.decode('utf-8'))
    except (zlib.error, UnicodeDecodeError, ValueError) as err:
        raise CorruptArtifactError(path, f'malformed header: {err}') from None
    if not isinstance(header, dict) or header.get('format') != 'mvq':
        raise CorruptArtifactError(path, 'malformed header: not an MVQ header')
    if header.get('version') != version:
        raise UnsupportedVersionError(path, f'header format version {header.get("version")!r} '
                                      f'differs from the preamble\'s {version}')
    if version == 1 and isinstance(header.get('config'), dict):
        header['config'] = {**VERSION1_CONFIG, **header['config']}
    return header, start + length


def _section(path: str, region: memoryview, sec: Any, where: str, expected: int,
             chk: _Checker) -> memoryview:
    """The verified bytes of one section."""
    offset = chk.integer(sec, 'offset', where)
    length = chk.integer(sec, 'length', where)
    crc = chk.integer(sec, 'crc32', where)
    if length != expected:
        raise chk.fail(f'{where} has {length} bytes, {expected} expected', where)
    if offset + length > len(region):
        raise chk.fail(f'{where} ends at {offset + length}, past the data region '
                       f'({len(region)} bytes)', where)
    view = region[offset:offset + length]
    actual = crc32(view)
    if actual != crc:
        raise ChecksumError(path, f'checksum mismatch in section {where!r} (stored crc32 '
                            f'0x{crc:08x}, computed 0x{actual:08x}): the file is corrupted',
                            where)
    return view


def _decode_layer(path: str, region: memoryview, entry: Any, chk: _Checker,
                  version: int = FORMAT_VERSION) -> DecodedLayer:
    name = chk.get(entry, 'name', str, 'layer')
    where = f'layer {name!r}'
    shape = chk.shape(entry, 'weight_shape', where)
    d, k = chk.integer(entry, 'd', where, 1), chk.integer(entry, 'k', where, 1)
    n, m = chk.integer(entry, 'n', where, 1), chk.integer(entry, 'm', where, 1)
    count = chk.integer(entry, 'num_subvectors', where)
    axis = chk.get(entry, 'vector_axis', str, where)
    method = chk.get(entry, 'method', str, where)
    cb_bits = chk.integer(entry, 'codebook_bits', where)
    if axis not in VECTOR_AXES or method not in METHODS or cb_bits not in CODEBOOK_DTYPES:
        raise chk.fail(f'{where}: vector_axis={axis!r}, method={method!r} or '
                       f'codebook_bits={cb_bits} not supported', name)
    if n > m or count * d != math.prod(shape):
        raise chk.fail(f'{where}: N:M={n}:{m}, {count} sub-vectors of d={d} do not fit weight '
                       f'shape {list(shape)}', name)
    if entry.get('codebook_dtype') != CODEBOOK_DTYPES[cb_bits]:
        raise chk.fail(f'{where}: codebook_dtype {entry.get("codebook_dtype")!r} does not '
                       f'match codebook_bits={cb_bits}', name)
    sections = chk.get(entry, 'sections', dict, where)
    pruned = prunes(method, n, m)
    if pruned and d % m:
        raise chk.fail(f'{where}: m={m} does not divide d={d}', name)
    if set(sections) != ({'assignments', 'codebook'} | ({'mask'} if pruned else set())):
        raise chk.fail(f'{where}: sections {sorted(sections)} do not fit N:M={n}:{m}', name)

    bits = index_bits(k)
    view = _section(path, region, sections['assignments'], f'{name}/assignments',
                    packed_size(count, bits), chk)
    assignments = unpack_bits(view, bits, count)
    if count and int(assignments.max()) >= k:
        raise CorruptArtifactError(path, f'{where}: assignment {int(assignments.max())} out of '
                                   f'range for k={k}', name)
    if pruned:
        code_bits = mask_code_bits(n, m)
        groups = count * d // m
        view = _section(path, region, sections['mask'], f'{name}/mask',
                        packed_size(groups, code_bits), chk)
        codes = torch.from_numpy(unpack_bits(view, code_bits, groups))
        try:
            mask = decode_mask(codes, n, m).reshape(count, d)
        except ValueError as err:
            raise CorruptArtifactError(path, f'{where}: {err}', name) from None
    else:
        mask = torch.ones(count, d, dtype=torch.bool)

    item = {8: 1, 16: 2, 32: 4}[cb_bits]
    view = _section(path, region, sections['codebook'], f'{name}/codebook', k * d * item, chk)
    scale = None
    if cb_bits == 8:
        scale = chk.get(entry, 'scale', (int, float), where)
        if not (math.isfinite(scale) and scale > 0):
            raise chk.fail(f'{where}: int8 scale {scale!r} must be finite and > 0', name)
        ints = np.frombuffer(view, dtype='i1').reshape(k, d)
        if version == 1 and ints.size and int(ints.min()) < -127:  # version 2: [-128, 127]
            raise CorruptArtifactError(path, f'{where}: int8 codeword value -128 (the range '
                                       'of format version 1 is +-127)', name)
        codebook = torch.from_numpy(ints.astype(np.float32)) * torch.tensor(scale,
                                                                            dtype=torch.float32)
    else:
        arr = np.frombuffer(view, dtype='<f2' if cb_bits == 16 else '<f4').reshape(k, d)
        codebook = torch.from_numpy(arr.astype(np.float32))
    return DecodedLayer(name, shape, axis, n, m, method, cb_bits, scale, codebook,
                        torch.from_numpy(assignments), mask)


def _decode_tensor(path: str, region: memoryview, entry: Any, chk: _Checker
                   ) -> tuple[str, str, torch.Tensor]:
    name = chk.get(entry, 'name', str, 'tensor')
    where = f'tensor {name!r}'
    dtype = chk.get(entry, 'dtype', str, where)
    kind = chk.get(entry, 'kind', str, where)
    if dtype not in STORAGE_DTYPES or kind not in ('parameter', 'buffer'):
        raise chk.fail(f'{where}: dtype {dtype!r} or kind {kind!r} not supported', name)
    shape = chk.shape(entry, 'shape', where)
    np_dtype = np.dtype(STORAGE_DTYPES[dtype][0])
    view = _section(path, region, entry, name, math.prod(shape) * np_dtype.itemsize, chk)
    arr = np.frombuffer(view, dtype=np_dtype).reshape(shape).copy()
    return name, kind, torch.from_numpy(arr)


def read_artifact(path: str | os.PathLike) -> DecodedArtifact:
    """Reads and verifies a whole artifact (no model needed)."""
    path = os.fspath(path)
    with open(path, 'rb') as fh:
        data = memoryview(fh.read())
    header, start = parse_header(path, data)
    chk = _Checker(path)
    data_bytes = chk.integer(header, 'data_bytes', 'header')
    float_dtype = chk.get(header, 'float_dtype', str, 'header')
    if float_dtype not in FLOAT_DTYPES:
        raise chk.fail(f'float_dtype {float_dtype!r} not supported')
    config = header.get('config')
    if config is not None and not isinstance(config, dict):
        raise chk.fail('config must be an object or null')
    available = len(data) - start
    if available < data_bytes:
        raise TruncatedArtifactError(path, f'truncated file: {len(data)} bytes, the data '
                                     f'region ends at byte {start + data_bytes}')
    if available > data_bytes:
        raise CorruptArtifactError(path, f'{available - data_bytes} unexpected bytes after the '
                                   f'data region (ends at byte {start + data_bytes})')
    region = data[start:]
    layers = [_decode_layer(path, region, e, chk, header['version'])
              for e in chk.get(header, 'layers', list, 'header')]
    tensors, seen = {}, set()
    for entry in chk.get(header, 'tensors', list, 'header'):
        name, _, tensor = _decode_tensor(path, region, entry, chk)
        if name in tensors:
            raise chk.fail(f'tensor {name!r} appears twice', name)
        tensors[name] = tensor
    for layer in layers:
        if layer.name in seen:
            raise chk.fail(f'layer {layer.name!r} appears twice', layer.name)
        seen.add(layer.name)
    info = ArtifactInfo.from_header(path, header, start, len(data))
    return DecodedArtifact(path, header, info, layers, tensors)


def read_header(path: str | os.PathLike) -> dict:
    """The verified JSON header of an artifact (sections not checked)."""
    path = os.fspath(path)
    with open(path, 'rb') as fh:
        data = fh.read()
    return parse_header(path, data)[0]


def inspect_artifact(path: str | os.PathLike) -> ArtifactInfo:
    """Reads and verifies every section of an artifact and describes it, without a model.

    Raises:
        ArtifactError: As :func:`~.artifact.load` does for the file itself.
    """
    return read_artifact(path).info
