"""The compact ``.mvq`` artifact: a compressed model in the bits its accounting promises.

:func:`save` writes, :func:`load` restores bit for bit, :func:`inspect_artifact` reads and
verifies a file without a model. No pickle anywhere: the file is a fixed preamble, a JSON
header and raw little-endian sections, readable with ``struct``, ``zlib``, ``json`` and
``numpy`` alone.

File layout (integers little-endian)::

    offset  size  field
    0       4     magic b'MVQ\\x00'
    4       2     format version, u16 (this module writes and reads 1)
    6       2     flags, u16: bit 0 set = the header is zlib-compressed; other bits are 0
    8       4     header length H, u32
    12      4     crc32 of the H stored header bytes, u32
    16      H     header: UTF-8 JSON (zlib-compressed when flag bit 0 is set)
    16 + H  D     data: the sections, at the offsets the header gives (relative to 16 + H)

Header (a JSON object)::

    format      "mvq"
    version     1 (equal to the preamble's)
    producer    "mvq_plugin <version>"
    config      MVQConfig.to_dict() of the config the model carries (``model.mvq_config``,
                left there by ``compress``) or null
    float_dtype storage dtype of the floating-point uncompressed tensors ("float32" or
                "float16"; float64 tensors stay float64)
    data_bytes  D
    layers      one object per compressed layer, in module order:
                name, weight_shape, d, k, n, m, vector_axis, method, codebook_bits,
                num_subvectors, codebook_dtype ("int8" | "float16" | "float32"),
                scale (the fp32 int8 scale as a JSON number, exact; null unless int8),
                sections: {"assignments": S, "mask": S (only when n < m), "codebook": S}
                with S = {offset, length, crc32} (+ "bits": the packed width)
    tensors     one object per uncompressed state-dict tensor, in state-dict order:
                name, kind ("parameter" | "buffer"), dtype, shape, offset, length, crc32

Sections (each with its crc32 in the header):

* ``assignments``: the ``num_subvectors`` codeword indices packed at ``ceil(log2 k)`` bits
  each (:func:`~mvq_plugin.io.bitpack.pack_bits`: value ``i`` in bits ``[i*b, (i+1)*b)``,
  least-significant bit first), in the sub-vector order of
  :func:`~mvq_plugin.core.blocking.to_subvectors`.
* ``mask`` (N:M-pruned layers only): the combinatorial code
  (:func:`~mvq_plugin.core.nm.encode_mask`) of every group of ``m`` consecutive mask
  elements, row-major over the ``(num_subvectors, d)`` mask, packed at
  ``ceil(log2 C(m, n))`` bits.
* ``codebook``: ``k x d`` row-major; int8 ``round(c / scale)`` clamped to +-127 (the codeword
  is ``int8 * scale``), or little-endian fp16 / fp32.
* one section per uncompressed tensor of the state dict (parameters and persistent buffers;
  not the compressed layers' frozen dense ``original`` nor their MVQ tensors), C order,
  little-endian, floating point as ``float_dtype``, integers and bools in their own dtype.

Reading one layer without torch::

    raw = open(path, 'rb').read()
    magic, version, flags, size, crc = struct.unpack_from('<4sHHII', raw)
    header = json.loads(zlib.decompress(raw[16:16 + size]))
    data = raw[16 + size:]
    layer = header['layers'][0]
    s = layer['sections']['codebook']
    book = np.frombuffer(data[s['offset']:s['offset'] + s['length']], 'i1')
    book = book.reshape(layer['k'], layer['d']) * np.float32(layer['scale'])

A file is written to a temporary file in the target directory and renamed over the final
name, so a crash never leaves a half-written artifact there. :func:`load` checks everything
(magic, version, checksums, lengths, the model's layers and shapes, coverage) before it
changes the model, and raises an :class:`ArtifactError` subclass naming the file and the
layer or tensor.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.bits import index_bits, layer_bits
from ..core.compress import CONFIG_ATTR
from ..core.config import MVQConfig, prunes
from ..core.nm import decode_mask, encode_mask, mask_code_bits
from ..core.parametrize import (
    STAGE_CLUSTERED,
    MVQWeight,
    attach_mvq_weight,
    int8_scale,
    quantized_layers,
)
from ..version import __version__
from .bitpack import pack_bits, packed_size, unpack_bits

__all__ = ['save', 'load', 'inspect_artifact', 'read_header', 'ArtifactInfo', 'ArtifactError',
           'NotAnArtifactError', 'UnsupportedVersionError', 'CorruptArtifactError',
           'ChecksumError', 'TruncatedArtifactError', 'ArtifactMismatchError', 'CoverageError',
           'MAGIC', 'FORMAT_VERSION']

logger = logging.getLogger('mvq_plugin')

MAGIC = b'MVQ\x00'
FORMAT_VERSION = 1
FLAG_HEADER_ZLIB = 1
_KNOWN_FLAGS = FLAG_HEADER_ZLIB
_PREAMBLE = struct.Struct('<4sHHII')

#: Storage dtypes: header name -> (numpy little-endian dtype, torch dtype).
_DTYPES: dict[str, tuple[str, torch.dtype]] = {
    'float32': ('<f4', torch.float32), 'float16': ('<f2', torch.float16),
    'float64': ('<f8', torch.float64), 'int64': ('<i8', torch.int64),
    'int32': ('<i4', torch.int32), 'int16': ('<i2', torch.int16), 'int8': ('i1', torch.int8),
    'uint8': ('u1', torch.uint8), 'bool': ('?', torch.bool),
}
_INT_DTYPES = {torch.int64: 'int64', torch.int32: 'int32', torch.int16: 'int16',
               torch.int8: 'int8', torch.uint8: 'uint8', torch.bool: 'bool'}
_CODEBOOK_DTYPES = {8: 'int8', 16: 'float16', 32: 'float32'}
_METHODS = ('mvq', 'vq', 'prune_vq')
_AXES = ('in_channel', 'spatial')


# --------------------------------------------------------------------------------- errors


class ArtifactError(ValueError):
    """A ``.mvq`` file cannot be read or does not fit the model.

    Attributes:
        path: The file.
        name: The layer, tensor or section concerned (``None`` for the file as a whole).
    """

    def __init__(self, path: str, message: str, name: str | None = None) -> None:
        super().__init__(f'{path}: {message}')
        self.path = path
        self.name = name


class NotAnArtifactError(ArtifactError):
    """The file does not start with the MVQ magic."""


class UnsupportedVersionError(ArtifactError):
    """The file has a format version this code does not read."""


class CorruptArtifactError(ArtifactError):
    """The file is damaged or inconsistent (malformed header, unknown flags, bad values)."""


class ChecksumError(CorruptArtifactError):
    """A section's crc32 does not match (``name``: ``'header'``, ``'LAYER/assignments'``,
    ``'LAYER/mask'``, ``'LAYER/codebook'`` or a tensor name)."""


class TruncatedArtifactError(CorruptArtifactError):
    """The file ends before the sizes it declares."""


class ArtifactMismatchError(ArtifactError):
    """The artifact does not fit the model: a layer or tensor missing, another shape."""


class CoverageError(ArtifactMismatchError):
    """``strict=True`` and the model and the artifact do not hold the same tensors."""


# --------------------------------------------------------------------------------- info


@dataclass
class ArtifactInfo:
    """What a ``.mvq`` file holds, by section, and what the accounting says it should.

    Attributes:
        path: The file.
        format_version: Its format version.
        total_bytes: Size on disk.
        header_bytes: Preamble (16 bytes) plus the stored header.
        assignments_bytes: All packed assignment sections.
        mask_bytes: All packed mask-code sections.
        codebook_bytes: All codebook sections.
        parameter_bytes: Uncompressed parameters.
        buffer_bytes: Buffers (BN running statistics...).
        num_layers: Compressed layers.
        num_tensors: Uncompressed tensors.
        float_dtype: Storage dtype of the floating-point uncompressed tensors.
        accounted_bits: :attr:`CompressionStats.bits
            <mvq_plugin.core.accounting.CompressionStats.bits>` of the stored model (the int8
            scales included, buffers not), computed from the header.
        accounted_buffer_bits: ``CompressionStats.bits_buffers`` of the stored model.
        config: The stored MVQConfig as a dict, or ``None``.
        layers: ``{layer: {section: bytes}}``.
        codebook_rounding: Set by :func:`save` only: ``{layer: max |c - stored c|}`` for the
            layers whose forward pass used unrounded codebooks (``quantize`` off) while the
            file stores them as int8 or fp16, i.e. where the loaded model computes slightly
            different outputs from the saved one. Empty when the two agree exactly.
    """

    path: str
    format_version: int
    total_bytes: int
    header_bytes: int
    assignments_bytes: int = 0
    mask_bytes: int = 0
    codebook_bytes: int = 0
    parameter_bytes: int = 0
    buffer_bytes: int = 0
    num_layers: int = 0
    num_tensors: int = 0
    float_dtype: str = 'float32'
    accounted_bits: int = 0
    accounted_buffer_bits: int = 0
    config: dict | None = field(default=None, repr=False)
    layers: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)
    codebook_rounding: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def data_bytes(self) -> int:
        """Bytes after the header."""
        return self.total_bytes - self.header_bytes

    @property
    def accounted_bytes(self) -> float:
        """``(accounted_bits + accounted_buffer_bits) / 8``."""
        return (self.accounted_bits + self.accounted_buffer_bits) / 8

    def __str__(self) -> str:
        rows = [('header', self.header_bytes,
                 f'preamble 16 + header; {self.num_layers} layers, {self.num_tensors} tensors'),
                ('assignments', self.assignments_bytes, 'packed at ceil(log2 k) bits'),
                ('masks', self.mask_bytes, 'packed at ceil(log2 C(M,N)) bits per group'),
                ('codebooks', self.codebook_bytes, 'k x d each; int8 scales in the header'),
                ('parameters', self.parameter_bytes, f'uncompressed, {self.float_dtype}'),
                ('buffers', self.buffer_bytes, 'BN running statistics etc.')]
        lines = [f'MVQ artifact {self.path} (format {self.format_version}): '
                 f'{self.total_bytes:,} bytes ({self.total_bytes / 2**20:.3f} MiB)']
        lines += [f'  {name:12s}{size:>14,d}  {note}' for name, size, note in rows]
        acc = self.accounted_bytes
        delta = self.data_bytes / acc - 1 if acc else 0.0
        lines.append(f'  accounted bits {self.accounted_bits:,} + buffers '
                     f'{self.accounted_buffer_bits:,} = {acc:,.0f} bytes; on disk without '
                     f'header {self.data_bytes:,} ({delta:+.3%})')
        return '\n'.join(lines)


# --------------------------------------------------------------------------------- helpers


def _sd_prefix(name: str) -> str:
    return f'{name}.' if name else ''


def _crc(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _storage_dtype(t: torch.Tensor, float_dtype: str, key: str) -> str:
    if t.is_floating_point():
        return 'float64' if t.dtype == torch.float64 else float_dtype
    if t.dtype in _INT_DTYPES:
        return _INT_DTYPES[t.dtype]
    raise ValueError(f'state-dict tensor {key!r} has dtype {t.dtype}, which the artifact does '
                     f'not store (floating point, {sorted(_INT_DTYPES.values())})')


def _tensor_bytes(t: torch.Tensor, dtype: str) -> bytes:
    np_dtype, torch_dtype = _DTYPES[dtype]
    arr = t.detach().to('cpu', torch_dtype).contiguous().numpy()
    return arr.astype(np_dtype, copy=False).tobytes()


def _layer_scale(q: MVQWeight) -> torch.Tensor:
    """The fp32 int8 scale the forward pass uses (the fixed buffer, else derived)."""
    cb = q.codebook.detach().float().cpu()
    scale = q.scale.detach().float().cpu()
    return int8_scale(cb) if torch.isnan(scale) else scale


def _encode_layer(name: str, q: MVQWeight
                  ) -> tuple[dict, list[tuple[str, bytes, dict]], float]:
    """Header entry, ``[(section, bytes, extra)]`` and the codebook rounding of one layer.

    The rounding is ``max |c - stored c|`` when the forward pass does not already round the
    codebook to its storage precision (``quantize`` off), else 0.
    """
    if int(q.stage) != STAGE_CLUSTERED:
        raise ValueError(f'layer {name!r} is not clustered yet (stage {int(q.stage)}); run '
                         'cluster_prepared (or compress) before saving')
    if q.codebook_bits not in _CODEBOOK_DTYPES:
        raise ValueError(f'layer {name!r}: codebook_bits={q.codebook_bits} not in '
                         f'{sorted(_CODEBOOK_DTYPES)}')
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
        s = _layer_scale(q)
        if not bool(torch.isfinite(s)) or float(s) <= 0:
            raise ValueError(f'layer {name!r}: int8 scale {float(s)} must be finite and > 0')
        ints = torch.round(cb / s).clamp(-127, 127).to(torch.int8)
        data = ints.numpy().tobytes()
        scale = float(s)
        stored = ints.float() * s
    elif q.codebook_bits == 16:
        data = cb.half().numpy().astype('<f2', copy=False).tobytes()
        stored = cb.half().float()
    else:
        data = cb.numpy().astype('<f4', copy=False).tobytes()
        stored = cb
    rounding = 0.0 if q.quantize else float((cb - stored).abs().max()) if cb.numel() else 0.0
    sections.append(('codebook', data, {}))
    entry = dict(name=name, weight_shape=list(q.weight_shape), d=int(d), k=int(k), n=q.n,
                 m=q.m, vector_axis=q.vector_axis, method=q.method,
                 codebook_bits=q.codebook_bits, num_subvectors=int(count),
                 codebook_dtype=_CODEBOOK_DTYPES[q.codebook_bits], scale=scale)
    return entry, sections, rounding


def _config_dict(model: nn.Module, config: MVQConfig | dict | None) -> dict | None:
    cfg = config if config is not None else getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        return None
    if isinstance(cfg, MVQConfig):
        return cfg.to_dict()
    if isinstance(cfg, dict):
        return dict(cfg)
    raise ValueError(f'config must be an MVQConfig, a dict or None, got {type(cfg).__name__}')


def _write_chunks(fh: BinaryIO, chunks: Sequence[bytes]) -> None:
    for chunk in chunks:
        fh.write(chunk)


def _atomic_write(path: str, chunks: Sequence[bytes]) -> None:
    """Writes ``chunks`` to a temporary file next to ``path``, then renames it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory,
                       f'.{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as fh:
            _write_chunks(fh, chunks)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, 'O_DIRECTORY'):  # make the rename durable (POSIX)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


# --------------------------------------------------------------------------------- save


def save(model: nn.Module, path: str | os.PathLike, *, float_dtype: str = 'float32',
         config: MVQConfig | dict | None = None) -> ArtifactInfo:
    """Writes a compressed model as one ``.mvq`` file (format in the module docstring).

    The stored codebooks are what the model computes with ``set_codebook_quant(model, True)``:
    int8 ``round(c / s)`` with the layer's fixed ``scale`` buffer, or ``int8_scale(c)`` when
    the buffer is NaN; fp16; or fp32. The dense ``original`` weights the layers were clustered
    from are not stored.

    A model whose codebook quantization is off (right after ``compress``, or fine-tuned
    without ``set_codebook_quant``) computes with unrounded codebooks, so the loaded model
    differs slightly from it: the model itself is left unchanged, a warning names the layers
    and the largest rounding error, and :attr:`ArtifactInfo.codebook_rounding` holds them.
    Train the last part with ``set_codebook_quant(model, True)`` (``MVQHook``'s
    ``quant_start_iter``), or use ``codebook_bits=32``, and the two agree exactly.

    Args:
        model: A model compressed by :func:`mvq_plugin.compress` (or a dense model: then the
            file holds only uncompressed tensors).
        path: Target file; written atomically (temporary file + rename).
        float_dtype: ``'float32'`` (exact) or ``'float16'`` for the floating-point
            uncompressed tensors.
        config: The MVQConfig to record; default: ``model.mvq_config`` if set, else none.

    Returns:
        The :class:`ArtifactInfo` of the written file.

    Raises:
        ValueError: A layer is not clustered yet, a tensor has an unsupported dtype, or
            ``float_dtype`` is not allowed.
    """
    path = os.fspath(path)
    if float_dtype not in ('float32', 'float16'):
        raise ValueError(f"float_dtype={float_dtype!r} must be 'float32' or 'float16'")
    chunks: list[bytes] = []
    offset = 0

    def add(data: bytes, **extra: Any) -> dict:
        nonlocal offset
        entry = dict(offset=offset, length=len(data), crc32=_crc(data), **extra)
        chunks.append(data)
        offset += len(data)
        return entry

    layers = quantized_layers(model)
    excluded: list[str] = []
    layer_entries = []
    rounding: dict[str, float] = {}
    for name, q in layers.items():
        plist = model.get_submodule(name).parametrizations.weight
        if len(plist) != 1:
            raise ValueError(f'layer {name!r}: weight has {len(plist)} parametrizations; the '
                             'artifact stores a lone MVQWeight only')
        entry, sections, err = _encode_layer(name, q)
        if err > 0:
            rounding[name] = err
        entry['sections'] = {sec: add(data, **extra) for sec, data, extra in sections}
        layer_entries.append(entry)
        excluded.append(_sd_prefix(name) + 'parametrizations.weight.')

    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    tensor_entries = []
    for key, value in model.state_dict().items():
        if any(key.startswith(p) for p in excluded):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'state-dict entry {key!r} is a {type(value).__name__}, not a '
                             'tensor; the artifact stores tensors only')
        dtype = _storage_dtype(value, float_dtype, key)
        entry = dict(name=key, kind='parameter' if key in param_names else 'buffer',
                     dtype=dtype, shape=list(value.shape))
        entry.update(add(_tensor_bytes(value, dtype)))
        tensor_entries.append(entry)

    header = dict(format='mvq', version=FORMAT_VERSION, producer=f'mvq_plugin {__version__}',
                  config=_config_dict(model, config), float_dtype=float_dtype,
                  data_bytes=offset, layers=layer_entries, tensors=tensor_entries)
    raw = json.dumps(header, separators=(',', ':'), allow_nan=False).encode('utf-8')
    blob = zlib.compress(raw, 9)
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, FLAG_HEADER_ZLIB, len(blob), _crc(blob))
    _atomic_write(path, [preamble, blob, *chunks])
    info = _info(path, header, _PREAMBLE.size + len(blob), _PREAMBLE.size + len(blob) + offset)
    info.codebook_rounding = rounding
    if rounding:
        worst = max(rounding, key=rounding.get)
        logger.warning(
            'save %s: %d layer(s) compute with unrounded codebooks (quantization off) but the '
            'artifact stores them rounded to their codebook_bits, so the loaded model differs '
            'from this one; largest codebook rounding error %.3g in %s; layers: %s. Switch '
            'set_codebook_quant(model, True) on for the last fine-tuning steps to save exactly '
            'what the model computes.', path, len(rounding), rounding[worst], worst,
            _names(list(rounding)))
    logger.info('saved %s: %d bytes (%d layers, %d tensors)', path, info.total_bytes,
                info.num_layers, info.num_tensors)
    return info


# --------------------------------------------------------------------------------- read


@dataclass
class _Layer:
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
class _Artifact:
    path: str
    header: dict
    info: ArtifactInfo
    layers: list[_Layer]
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


def _read_preamble(path: str, data: bytes | memoryview) -> tuple[int, int, int]:
    """Checks magic, version and flags; returns ``(flags, header_length, header_crc)``."""
    size = _PREAMBLE.size
    if len(data) < size:
        if bytes(data[:len(MAGIC)]) == MAGIC[:min(len(data), len(MAGIC))] and len(data):
            raise TruncatedArtifactError(path, f'truncated file: {len(data)} bytes, shorter '
                                         f'than the {size}-byte preamble')
        raise NotAnArtifactError(path, f'not an MVQ artifact ({len(data)} bytes, no '
                                 f'{MAGIC!r} magic)')
    magic, version, flags, length, crc = _PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise NotAnArtifactError(path, f'not an MVQ artifact: starts with {magic!r}, not '
                                 f'{MAGIC!r}')
    if version != FORMAT_VERSION:
        raise UnsupportedVersionError(path, f'unsupported MVQ format version {version}; this '
                                      f'mvq_plugin reads version {FORMAT_VERSION}')
    if flags & ~_KNOWN_FLAGS:
        raise CorruptArtifactError(path, f'unknown flags 0x{flags:04x} in the preamble')
    if len(data) < size + length:
        raise TruncatedArtifactError(path, f'truncated file: {len(data)} bytes, the header '
                                     f'alone ends at byte {size + length}')
    return flags, length, crc


def _parse_header(path: str, data: bytes | memoryview) -> tuple[dict, int]:
    """Verified header dict and the data-region start."""
    flags, length, crc = _read_preamble(path, data)
    start = _PREAMBLE.size
    blob = data[start:start + length]
    actual = _crc(blob)
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
    if header.get('version') != FORMAT_VERSION:
        raise UnsupportedVersionError(path, f'header format version {header.get("version")!r} '
                                      f'differs from the preamble\'s {FORMAT_VERSION}')
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
    actual = _crc(view)
    if actual != crc:
        raise ChecksumError(path, f'checksum mismatch in section {where!r} (stored crc32 '
                            f'0x{crc:08x}, computed 0x{actual:08x}): the file is corrupted',
                            where)
    return view


def _decode_layer(path: str, region: memoryview, entry: Any, chk: _Checker) -> _Layer:
    name = chk.get(entry, 'name', str, 'layer')
    where = f'layer {name!r}'
    shape = chk.shape(entry, 'weight_shape', where)
    d, k = chk.integer(entry, 'd', where, 1), chk.integer(entry, 'k', where, 1)
    n, m = chk.integer(entry, 'n', where, 1), chk.integer(entry, 'm', where, 1)
    count = chk.integer(entry, 'num_subvectors', where)
    axis = chk.get(entry, 'vector_axis', str, where)
    method = chk.get(entry, 'method', str, where)
    cb_bits = chk.integer(entry, 'codebook_bits', where)
    if axis not in _AXES or method not in _METHODS or cb_bits not in _CODEBOOK_DTYPES:
        raise chk.fail(f'{where}: vector_axis={axis!r}, method={method!r} or '
                       f'codebook_bits={cb_bits} not supported', name)
    if n > m or count * d != math.prod(shape):
        raise chk.fail(f'{where}: N:M={n}:{m}, {count} sub-vectors of d={d} do not fit weight '
                       f'shape {list(shape)}', name)
    if entry.get('codebook_dtype') != _CODEBOOK_DTYPES[cb_bits]:
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
        if ints.size and int(ints.min()) < -127:
            raise CorruptArtifactError(path, f'{where}: int8 codeword value -128 (the range '
                                       'is +-127)', name)
        codebook = torch.from_numpy(ints.astype(np.float32)) * torch.tensor(scale,
                                                                            dtype=torch.float32)
    else:
        arr = np.frombuffer(view, dtype='<f2' if cb_bits == 16 else '<f4').reshape(k, d)
        codebook = torch.from_numpy(arr.astype(np.float32))
    return _Layer(name, shape, axis, n, m, method, cb_bits, scale, codebook,
                  torch.from_numpy(assignments), mask)


def _decode_tensor(path: str, region: memoryview, entry: Any, chk: _Checker
                   ) -> tuple[str, str, torch.Tensor]:
    name = chk.get(entry, 'name', str, 'tensor')
    where = f'tensor {name!r}'
    dtype = chk.get(entry, 'dtype', str, where)
    kind = chk.get(entry, 'kind', str, where)
    if dtype not in _DTYPES or kind not in ('parameter', 'buffer'):
        raise chk.fail(f'{where}: dtype {dtype!r} or kind {kind!r} not supported', name)
    shape = chk.shape(entry, 'shape', where)
    np_dtype = np.dtype(_DTYPES[dtype][0])
    view = _section(path, region, entry, name, math.prod(shape) * np_dtype.itemsize, chk)
    arr = np.frombuffer(view, dtype=np_dtype).reshape(shape).copy()
    return name, kind, torch.from_numpy(arr)


def _info(path: str, header: dict, header_bytes: int, total_bytes: int) -> ArtifactInfo:
    info = ArtifactInfo(path=path, format_version=int(header['version']),
                        total_bytes=total_bytes, header_bytes=header_bytes,
                        num_layers=len(header['layers']), num_tensors=len(header['tensors']),
                        float_dtype=header['float_dtype'], config=header.get('config'))
    for entry in header['layers']:
        sizes = {sec: s['length'] for sec, s in entry['sections'].items()}
        info.layers[entry['name']] = sizes
        info.assignments_bytes += sizes['assignments']
        info.mask_bytes += sizes.get('mask', 0)
        info.codebook_bytes += sizes['codebook']
        info.accounted_bits += layer_bits(
            entry['num_subvectors'] * entry['d'], d=entry['d'], k=entry['k'], n=entry['n'],
            m=entry['m'], codebook_bits=entry['codebook_bits'],
            prunes=prunes(entry['method'], entry['n'], entry['m'])).total
    for entry in header['tensors']:
        numel = math.prod(entry['shape'])
        if entry['kind'] == 'parameter':
            info.parameter_bytes += entry['length']
            info.accounted_bits += 32 * numel
        else:
            info.buffer_bytes += entry['length']
            width = np.dtype(_DTYPES[entry['dtype']][0]).itemsize * 8
            info.accounted_buffer_bits += numel * (32 if entry['dtype'].startswith('float')
                                                   else width)
    return info


def _read(path: str | os.PathLike) -> _Artifact:
    """Reads and verifies a whole artifact (no model needed)."""
    path = os.fspath(path)
    with open(path, 'rb') as fh:
        data = memoryview(fh.read())
    header, start = _parse_header(path, data)
    chk = _Checker(path)
    data_bytes = chk.integer(header, 'data_bytes', 'header')
    float_dtype = chk.get(header, 'float_dtype', str, 'header')
    if float_dtype not in ('float32', 'float16'):
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
    layers = [_decode_layer(path, region, e, chk)
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
    return _Artifact(path, header, _info(path, header, start, len(data)), layers, tensors)


def read_header(path: str | os.PathLike) -> dict:
    """The verified JSON header of an artifact (sections not checked)."""
    path = os.fspath(path)
    with open(path, 'rb') as fh:
        data = fh.read()
    return _parse_header(path, data)[0]


def inspect_artifact(path: str | os.PathLike) -> ArtifactInfo:
    """Reads and verifies every section of an artifact and describes it, without a model.

    Raises:
        ArtifactError: As :func:`load` does for the file itself.
    """
    return _read(path).info


# --------------------------------------------------------------------------------- load


def _build(layer: _Layer) -> MVQWeight:
    q = MVQWeight(layer.codebook, layer.assignments, layer.mask, layer.weight_shape,
                  layer.vector_axis, n=layer.n, m=layer.m, method=layer.method,
                  codebook_bits=layer.codebook_bits)
    if layer.scale is not None:
        q.scale.fill_(layer.scale)
    q.quantize = True
    return q


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ', '.join(repr(n) for n in names[:limit])
    return shown + (f' and {len(names) - limit} more' if len(names) > limit else '')


def load(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> ArtifactInfo:
    """Restores a model from a ``.mvq`` file, bit for bit.

    ``model`` is built from the same architecture, dense or already compressed (e.g. by
    :func:`~mvq_plugin.core.staged.prepare`). Every compressed layer of the artifact gets an
    :class:`~mvq_plugin.core.parametrize.MVQWeight` (a dense layer is converted; an already
    compressed one is updated in place, keeping its codebook Parameter when the shapes agree)
    with the stored codebook, assignments and mask, its int8 scale fixed and ``quantize``
    on, so the model computes exactly what the saved model computed with
    ``set_codebook_quant(model, True)``. Every uncompressed tensor is loaded through
    ``load_state_dict``. A dense layer keeps its current weight as the frozen ``original``.
    The stored MVQConfig, if any, is put back as ``model.mvq_config``.

    The file and its fit to the model are checked completely before the model is changed,
    so an error leaves the model as it was.

    Args:
        model: Target model, changed in place.
        path: The ``.mvq`` file.
        strict: Require that the model and the artifact hold the same tensors: every
            compressed layer and uncompressed tensor of the artifact exists in the model and
            every tensor of the model is in the artifact. With ``strict=False``, tensors
            missing on either side are skipped (logged); a compressed layer missing from the
            model, and any shape mismatch, are still errors.

    Returns:
        The :class:`ArtifactInfo` of the file.

    Raises:
        NotAnArtifactError: No MVQ magic.
        UnsupportedVersionError: Another format version.
        ChecksumError: A section (or the header) is corrupted.
        TruncatedArtifactError: The file is shorter than it declares.
        CorruptArtifactError: Other damage (malformed header, values out of range).
        ArtifactMismatchError: A layer or tensor is missing from the model or has another
            shape.
        CoverageError: ``strict`` and the model has tensors the artifact does not cover, or
            the reverse.
    """
    art = _read(path)
    path = art.path
    model_q = quantized_layers(model)
    excluded = [_sd_prefix(n) + 'parametrizations.weight.' for n in model_q]
    model_sd = {k: v for k, v in model.state_dict().items()
                if not any(k.startswith(p) for p in excluded)}
    model_weights = {_sd_prefix(n) + 'weight': n for n in model_q}
    modules = dict(model.named_modules())

    consumed: set[str] = set()
    todo: list[tuple[nn.Module, MVQWeight | None, MVQWeight]] = []
    for layer in art.layers:
        module = modules.get(layer.name)
        if module is None:
            raise ArtifactMismatchError(path, f'layer {layer.name!r} of the artifact is not in '
                                        'the model', layer.name)
        old = model_q.get(layer.name)
        if old is not None:
            shape = old.weight_shape
        else:
            if parametrize.is_parametrized(module, 'weight'):
                raise ArtifactMismatchError(path, f'layer {layer.name!r}: the model\'s weight '
                                            'has another (non-MVQ) parametrization', layer.name)
            weight = getattr(module, 'weight', None)
            if not isinstance(weight, torch.Tensor):
                raise ArtifactMismatchError(path, f'layer {layer.name!r}: the model\'s '
                                            f'{type(module).__name__} has no weight tensor',
                                            layer.name)
            shape = tuple(weight.shape)
            consumed.add(_sd_prefix(layer.name) + 'weight')
        if tuple(shape) != layer.weight_shape:
            raise ArtifactMismatchError(path, f'layer {layer.name!r} has weight shape '
                                        f'{list(shape)} in the model, {list(layer.weight_shape)}'
                                        ' in the artifact', layer.name)
        try:
            q = _build(layer)
        except ValueError as err:
            raise CorruptArtifactError(path, f'layer {layer.name!r}: {err}', layer.name) from None
        todo.append((module, old, q))

    dense: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for name, tensor in art.tensors.items():
        if name in model_weights:
            raise ArtifactMismatchError(path, f'layer {model_weights[name]!r} is compressed in '
                                        'the model but dense in the artifact; load into a '
                                        'dense model', name)
        target = model_sd.get(name)
        if target is None or name in consumed:
            missing.append(name)
            continue
        if tuple(target.shape) != tuple(tensor.shape):
            raise ArtifactMismatchError(path, f'tensor {name!r} has shape {list(target.shape)} '
                                        f'in the model, {list(tensor.shape)} in the artifact',
                                        name)
        if target.is_floating_point() != tensor.is_floating_point():
            raise ArtifactMismatchError(path, f'tensor {name!r} is {target.dtype} in the model, '
                                        f'{tensor.dtype} in the artifact', name)
        dense[name] = tensor
    stored_layers = {layer.name for layer in art.layers}
    uncovered = [k for k in model_sd if k not in dense and k not in consumed]
    uncovered += [n for n in model_q if n not in stored_layers]
    if strict and (missing or uncovered):
        parts = []
        if uncovered:
            parts.append(f'the model has {len(uncovered)} tensor(s)/layer(s) the artifact does '
                         f'not cover: {_names(uncovered)}')
        if missing:
            parts.append(f'the artifact has {len(missing)} tensor(s) the model lacks: '
                         f'{_names(missing)}')
        raise CoverageError(path, '; '.join(parts) + ' (strict=True)',
                            (uncovered or missing)[0])
    if missing:
        logger.warning('%s: %d artifact tensor(s) not in the model, skipped: %s', path,
                       len(missing), _names(missing))
    if uncovered:
        logger.warning('%s: %d model tensor(s)/layer(s) not in the artifact, left as they are: '
                       '%s', path, len(uncovered), _names(uncovered))

    # Everything is checked: change the model.
    config = art.header.get('config')
    cfg_obj = None
    if config is not None:
        try:
            cfg_obj = MVQConfig.from_dict(config)
        except (TypeError, ValueError) as err:
            logger.warning('%s: stored MVQConfig not understood (%s); model.%s not set', path,
                           err, CONFIG_ATTR)
    if dense:
        result = model.load_state_dict(dense, strict=False)
        if result.unexpected_keys:  # cannot happen after the checks above
            raise RuntimeError(f'{path}: unexpected keys {result.unexpected_keys}')
    for module, old, q in todo:
        if old is None:
            attach_mvq_weight(module, q)
        else:
            _update(module, old, q)
    if cfg_obj is not None:
        setattr(model, CONFIG_ATTR, cfg_obj)
    logger.info('loaded %s: %d compressed layers, %d tensors', path, len(todo), len(dense))
    return art.info


@torch.no_grad()
def _update(module: nn.Module, old: MVQWeight, new: MVQWeight) -> None:
    """Puts ``new``'s state into an existing MVQ weight (in place when shapes agree)."""
    same = (old.codebook.shape == new.codebook.shape
            and old.assignments.shape == new.assignments.shape)
    if not same:
        plist = module.parametrizations.weight
        index = next(i for i, p in enumerate(plist) if p is old)
        plist[index] = new.to(old.codebook.device)
        return
    old.codebook.copy_(new.codebook)
    old.assignments.copy_(new.assignments)
    old.mask.copy_(new.mask)
    old.scale.copy_(new.scale)
    old.stage.fill_(STAGE_CLUSTERED)
    old.vector_axis, old.n, old.m = new.vector_axis, new.n, new.m
    old.method, old.codebook_bits = new.method, new.codebook_bits
    old.quantize = True
