"""The ``.mvq`` file format: its layout, constants, storage dtypes, errors and ``ArtifactInfo``.

:mod:`.codec` encodes and decodes it, :mod:`.artifact` saves and loads models with it. No
pickle anywhere: the file is a fixed preamble, a JSON header and raw little-endian sections,
readable with ``struct``, ``zlib``, ``json`` and ``numpy`` alone.

File layout (integers little-endian)::

    offset  size  field
    0       4     magic b'MVQ\\x00'
    4       2     format version, u16 (this module writes 2 and reads 1 and 2)
    6       2     flags, u16: bit 0 set = the header is zlib-compressed; other bits are 0
    8       4     header length H, u32
    12      4     crc32 of the H stored header bytes, u32
    16      H     header: UTF-8 JSON (zlib-compressed when flag bit 0 is set)
    16 + H  D     data: the sections, at the offsets the header gives (relative to 16 + H)

Header (a JSON object)::

    format      "mvq"
    version     2 (equal to the preamble's)
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
                codebook_scale ("lsq" | "maxabs", how the scale was chosen; version 2),
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

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.bits import layer_bits
from ..core.config import CODEBOOK_BITS, prunes
from ..core.table import render_table

__all__ = ['MAGIC', 'FORMAT_VERSION', 'READABLE_VERSIONS', 'VERSION1_CONFIG',
           'FLAG_HEADER_ZLIB', 'KNOWN_FLAGS', 'PREAMBLE',
           'STORAGE_DTYPES', 'INTEGER_DTYPES', 'FLOAT_DTYPES', 'CODEBOOK_DTYPES', 'crc32',
           'storage_dtype', 'ArtifactInfo', 'ArtifactError', 'NotAnArtifactError',
           'UnsupportedVersionError', 'CorruptArtifactError', 'ChecksumError',
           'TruncatedArtifactError', 'ArtifactMismatchError', 'CoverageError']

MAGIC = b'MVQ\x00'
FORMAT_VERSION = 2
#: Versions this module reads. Version 2 (the paper's MVQ) adds ``vector_axis='out_channel'``,
#: int8 codes in ``[-128, 127]`` (an LSQ scale may use -128; version 1 wrote ``[-127, 127]``)
#: and each layer's ``codebook_scale``. A version-1 file loads unchanged; its config, written
#: before ``codebook_scale``/``kmeans_stop``/``change_tol`` existed, reads as ``'maxabs'``,
#: ``'objective'`` and ``0.001`` (what version-1 code did).
READABLE_VERSIONS = (1, 2)
#: Config fields added in version 2, with the values version-1 files were made with.
VERSION1_CONFIG = dict(codebook_scale='maxabs', kmeans_stop='objective', change_tol=1e-3)
#: Preamble flag bit 0: the header is zlib-compressed.
FLAG_HEADER_ZLIB = 1
#: Every flag bit this version defines; a file with another bit set is corrupt.
KNOWN_FLAGS = FLAG_HEADER_ZLIB
#: The 16-byte preamble: magic, version, flags, header length, header crc32.
PREAMBLE = struct.Struct('<4sHHII')

#: Storage dtypes: header name -> (numpy little-endian dtype, torch dtype).
STORAGE_DTYPES: dict[str, tuple[str, torch.dtype]] = {
    'float32': ('<f4', torch.float32), 'float16': ('<f2', torch.float16),
    'float64': ('<f8', torch.float64), 'int64': ('<i8', torch.int64),
    'int32': ('<i4', torch.int32), 'int16': ('<i2', torch.int16), 'int8': ('i1', torch.int8),
    'uint8': ('u1', torch.uint8), 'bool': ('?', torch.bool),
}
#: Integer (and bool) torch dtypes, stored in their own dtype: torch dtype -> header name.
INTEGER_DTYPES = {torch.int64: 'int64', torch.int32: 'int32', torch.int16: 'int16',
                  torch.int8: 'int8', torch.uint8: 'uint8', torch.bool: 'bool'}
#: The header's ``float_dtype`` choices for floating-point uncompressed tensors.
FLOAT_DTYPES = ('float32', 'float16')
#: Storage dtype of a codebook by ``codebook_bits`` (the one table; int8 carries a scale).
CODEBOOK_DTYPES = dict(zip(CODEBOOK_BITS, ('int8', 'float16', 'float32')))


def crc32(data: bytes | memoryview) -> int:
    """The unsigned crc32 the preamble and every section record."""
    return zlib.crc32(data) & 0xFFFFFFFF


def storage_dtype(t: torch.Tensor, float_dtype: str, key: str) -> str:
    """The header dtype an uncompressed tensor is stored as.

    Floating point as ``float_dtype`` (float64 stays float64), integers and bools in their own
    dtype.

    Raises:
        ValueError: Another dtype (complex...), naming the state-dict ``key``.
    """
    if t.is_floating_point():
        return 'float64' if t.dtype == torch.float64 else float_dtype
    if t.dtype in INTEGER_DTYPES:
        return INTEGER_DTYPES[t.dtype]
    raise ValueError(f'state-dict tensor {key!r} has dtype {t.dtype}, which the artifact does '
                     f'not store (floating point, {sorted(INTEGER_DTYPES.values())})')


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

    @classmethod
    def from_header(cls, path: str, header: dict, header_bytes: int,
                    total_bytes: int) -> ArtifactInfo:
        """The description of a file from its (verified) header and sizes.

        Args:
            path: The file.
            header: Its JSON header.
            header_bytes: Preamble plus stored header.
            total_bytes: Size of the file.
        """
        info = cls(path=path, format_version=int(header['version']), total_bytes=total_bytes,
                   header_bytes=header_bytes, num_layers=len(header['layers']),
                   num_tensors=len(header['tensors']), float_dtype=header['float_dtype'],
                   config=header.get('config'))
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
                width = np.dtype(STORAGE_DTYPES[entry['dtype']][0]).itemsize * 8
                info.accounted_buffer_bits += numel * (32 if entry['dtype'].startswith('float')
                                                       else width)
        return info

    def __str__(self) -> str:
        rows = [('part', 'bytes', 'stored as'),
                ('header', f'{self.header_bytes:,}',
                 f'preamble 16 + header; {self.num_layers} layers, {self.num_tensors} tensors'),
                ('assignments', f'{self.assignments_bytes:,}', 'packed at ceil(log2 k) bits'),
                ('masks', f'{self.mask_bytes:,}', 'packed at ceil(log2 C(M,N)) bits per group'),
                ('codebooks', f'{self.codebook_bytes:,}', 'k x d each; int8 scales in the header'),
                ('parameters', f'{self.parameter_bytes:,}', f'uncompressed, {self.float_dtype}'),
                ('buffers', f'{self.buffer_bytes:,}', 'BN running statistics etc.')]
        lines = [f'MVQ artifact {self.path} (format {self.format_version}): '
                 f'{self.total_bytes:,} bytes ({self.total_bytes / 2**20:.3f} MiB)']
        lines += ['  ' + line for line in render_table(rows).splitlines()]
        acc = self.accounted_bytes
        delta = self.data_bytes / acc - 1 if acc else 0.0
        lines.append(f'  accounted bits {self.accounted_bits:,} + buffers '
                     f'{self.accounted_buffer_bits:,} = {acc:,.0f} bytes; on disk without '
                     f'header {self.data_bytes:,} ({delta:+.3%})')
        return '\n'.join(lines)
