"""The weight stream the paper's weight loader reads (section 5.2, Fig. 6), from a compressed
model or the layers of a ``.mvq`` artifact.

Per compressed layer (``out_channel`` sub-vectors: ``d`` consecutive output channels at one
reduction position ``r = c*kh*kw + i*kw + j``) and an ``R x L`` array:

* the **codebook image**: ``k x d`` int8 codewords, row-major, and the int8 scale (float32);
* the **(index, mask-code) pairs in L2 order**: for each group, output-channel fold
  (``L/d`` sub-vectors wide) and reduction fold (``R`` rows), row by row, the ``L/d``
  sub-vectors of that PE row (fewer in the last output-channel fold). Each entry is the
  ``ceil(log2 k)``-bit codeword index and ``d/M`` mask codes of ``ceil(log2 C(M, N))`` bits
  (the combinatorial rank of each group's kept positions, :mod:`mvq_plugin.core.nm`). Files hold
  them little-endian as ``uint16`` index then ``d/M`` ``uint16`` codes per entry; the manifest
  also gives the packed size the hardware moves (``entries * (index_bits + mask_bits)``);
* the **folds** (tiles) in stream order with their first entry, rows and sub-vectors per row,
  and the **L2 slices**: runs of whole folds of at most ``l2_kb`` packed.

:func:`stream_layers` builds :class:`StreamLayer` objects; :func:`write_stream` writes them
with ``manifest.json``; :func:`read_stream` reads them back.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..core.bits import index_bits
from ..core.blocking import from_subvectors, to_subvectors
from ..core.nm import encode_mask, mask_code_bits

__all__ = ['StreamLayer', 'stream_layers', 'write_stream', 'read_stream', 'layers_from_model',
           'MANIFEST', 'STREAM_VERSION']

MANIFEST = 'manifest.json'
STREAM_VERSION = 1


@dataclass
class StreamLayer:
    """One layer's weight stream.

    Attributes:
        name: Layer name.
        weight_shape: ``(C_out, C_in/groups, kh, kw)`` or ``(C_out, C_in)``.
        groups: Convolution groups.
        d: Sub-vector length (output channels per sub-vector).
        k: Codebook size.
        n: N of N:M (``n == m``: unpruned).
        m: M of N:M.
        array: ``(R, L)`` the stream is aligned to.
        codebook: ``(k, d)`` int8 codewords.
        scale: Int8 scale (codeword value = ``codebook * scale``).
        indices: ``(entries,)`` codeword index per sub-vector, L2 order.
        mask_codes: ``(entries, d/M)`` mask codes, L2 order (zeros when unpruned).
        subvector: ``(entries,)`` the sub-vector number (``to_subvectors`` order) of each entry.
        folds: ``[{group, col_fold, row_fold, first_entry, rows, vectors_per_row}]``.
        slices: ``[{first_fold, folds, entries, packed_bytes}]`` of at most the L2 size.
    """

    name: str
    weight_shape: tuple[int, ...]
    groups: int
    d: int
    k: int
    n: int
    m: int
    array: tuple[int, int]
    codebook: np.ndarray
    scale: float
    indices: np.ndarray
    mask_codes: np.ndarray
    subvector: np.ndarray
    folds: list[dict[str, int]] = field(default_factory=list)
    slices: list[dict[str, int]] = field(default_factory=list)

    @property
    def sr(self) -> int:
        """Reduction rows per group ``C_in/groups * kh * kw``."""
        return int(np.prod(self.weight_shape[1:]))

    @property
    def sc(self) -> int:
        """Output channels per group."""
        return self.weight_shape[0] // self.groups

    @property
    def index_bits(self) -> int:
        """Bits of one index."""
        return index_bits(self.k)

    @property
    def mask_bits(self) -> int:
        """Bits of one sub-vector's mask codes (0 unpruned)."""
        return (self.d // self.m) * mask_code_bits(self.n, self.m) if self.n < self.m else 0

    @property
    def entry_bits(self) -> int:
        """Packed bits of one (index, mask) entry."""
        return self.index_bits + self.mask_bits

    def masks(self) -> np.ndarray:
        """``(entries, d)`` bool masks decoded from the codes (the weight loader's LUT)."""
        if self.n >= self.m:
            return np.ones((len(self.indices), self.d), dtype=bool)
        from ..core.nm import decode_mask
        codes = torch.from_numpy(self.mask_codes.astype(np.int64))
        return decode_mask(codes, self.n, self.m).reshape(len(self.indices), self.d).numpy()

    def dense_weight(self) -> np.ndarray:
        """The dense-equivalent int8 weight (``weight_shape``) the stream encodes."""
        vec = self.codebook[self.indices].astype(np.int64) * self.masks()
        order = np.empty_like(vec)
        order[self.subvector] = vec
        return from_subvectors(torch.from_numpy(order), self.weight_shape,
                               'out_channel').numpy()


def _folds(sr: int, sc: int, groups: int, d: int, rows: int, cols: int
           ) -> Iterable[tuple[int, int, int, int, int]]:
    """``(group, col_fold, row_fold, rows, vectors_per_row)`` in stream order."""
    per_row = cols // d
    for g in range(groups):
        for j in range(math.ceil(sc / cols)):
            vecs = min(per_row, sc // d - j * per_row)
            for i in range(math.ceil(sr / rows)):
                yield g, j, i, min(rows, sr - i * rows), vecs


def _build(name: str, shape: tuple[int, ...], groups: int, d: int, k: int, n: int, m: int,
           codebook: np.ndarray, scale: float, assignments: np.ndarray, codes: np.ndarray,
           array: tuple[int, int], l2_kb: float | None) -> StreamLayer:
    rows, cols = array
    if cols % d:
        raise ValueError(f'{name}: array width L={cols} must be a multiple of d={d} '
                         f'(L/d sub-vectors per PE row)')
    sr, sc = int(np.prod(shape[1:])), shape[0] // groups
    # Sub-vector b (of C_out/d) at reduction row r has number b * sr + r (to_subvectors order).
    entries, folds = [], []
    for g, j, i, nrows, vecs in _folds(sr, sc, groups, d, rows, cols):
        first = sum(len(e) for e in entries)
        b0 = g * (sc // d) + j * (cols // d)
        r = np.arange(i * rows, i * rows + nrows)[:, None]
        b = np.arange(b0, b0 + vecs)[None, :]
        entries.append((b * sr + r).reshape(-1))
        folds.append(dict(group=g, col_fold=j, row_fold=i, first_entry=first, rows=nrows,
                          vectors_per_row=vecs))
    sub = np.concatenate(entries) if entries else np.zeros(0, dtype=np.int64)
    layer = StreamLayer(name, tuple(shape), groups, d, k, n, m, (rows, cols),
                        codebook.astype(np.int8), float(scale),
                        assignments[sub].astype(np.int64), codes[sub].astype(np.int64), sub,
                        folds)
    limit = math.inf if l2_kb is None else l2_kb * 8192
    cur: dict[str, int] | None = None
    for idx, f in enumerate(folds):
        bits = f['rows'] * f['vectors_per_row'] * layer.entry_bits
        if cur is None or (cur['bits'] + bits > limit and cur['folds']):
            cur = dict(first_fold=idx, folds=0, entries=0, bits=0)
            layer.slices.append(cur)
        cur['folds'] += 1
        cur['entries'] += f['rows'] * f['vectors_per_row']
        cur['bits'] += bits
    for s in layer.slices:
        s['packed_bytes'] = math.ceil(s.pop('bits') / 8)
    return layer


def layers_from_model(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The compressed layers of a model as the records :func:`stream_layers` takes."""
    from ..core.parametrize import quantized_layers
    out = []
    modules = dict(model.named_modules())
    for name, q in quantized_layers(model).items():
        out.append(dict(name=name, weight_shape=tuple(q.weight_shape),
                        groups=int(getattr(modules.get(name), 'groups', 1)),
                        vector_axis=q.vector_axis, n=int(q.n), m=int(q.m),
                        codebook=q.effective_codebook().detach().cpu(),
                        scale=float(q.quant_scale()),
                        assignments=q.assignments.detach().cpu(),
                        mask=q.mask.detach().cpu(), codebook_bits=int(q.codebook_bits)))
    return out


def _get(layer: Any, key: str) -> Any:
    return layer[key] if isinstance(layer, dict) else getattr(layer, key)


def stream_layers(layers: Iterable[Any], array: tuple[int, int] = (64, 64),
                  groups: dict[str, int] | None = None,
                  l2_kb: float | None = 2048) -> list[StreamLayer]:
    """Weight streams of compressed layers.

    Args:
        layers: Decoded artifact layers (``mvq_plugin.io`` ``read_artifact(path).layers``) or
            :func:`layers_from_model` records: ``name, weight_shape, vector_axis, n, m,
            codebook`` (fp32 values, int8 times scale), ``scale``, ``assignments``, ``mask``,
            ``codebook_bits``.
        array: ``(R, L)``: reduction rows and output-channel columns.
        groups: ``{name: groups}`` for grouped convs (an artifact does not store them;
            default 1).
        l2_kb: L2 slice size for :attr:`StreamLayer.slices` (``None``: one slice).

    Returns:
        One :class:`StreamLayer` per layer.

    Raises:
        ValueError: a layer that is not int8 or not laid out along the output channel.
    """
    out = []
    groups = groups or {}
    for lay in layers:
        name = _get(lay, 'name')
        axis, bits = _get(lay, 'vector_axis'), _get(lay, 'codebook_bits')
        if axis != 'out_channel':
            raise ValueError(f'{name}: vector_axis={axis!r}; the weight loader streams '
                             "'out_channel' sub-vectors (d output channels each)")
        if bits != 8:
            raise ValueError(f'{name}: codebook_bits={bits}; the codebook RF holds int8 '
                             'codewords (codebook_bits=8)')
        cb = torch.as_tensor(_get(lay, 'codebook'), dtype=torch.float32)
        scale = _get(lay, 'scale')
        scale = float(scale) if scale is not None else float(cb.abs().max()) / 127
        q = torch.round(cb / scale).clamp(-128, 127).to(torch.int64).numpy()
        shape = tuple(int(s) for s in _get(lay, 'weight_shape'))
        mask = torch.as_tensor(_get(lay, 'mask')).bool()
        d = int(cb.shape[1])
        mask_vec = mask.reshape(-1, d) if mask.dim() == 2 and mask.shape[-1] == d else \
            to_subvectors(mask, d, 'out_channel')
        n, m = int(_get(lay, 'n')), int(_get(lay, 'm'))
        if n < m:
            codes = encode_mask(mask_vec, n, m).reshape(mask_vec.shape[0], -1).numpy()
        else:
            codes = np.zeros((mask_vec.shape[0], 1), dtype=np.int64)
        assign = torch.as_tensor(_get(lay, 'assignments')).reshape(-1).numpy()
        out.append(_build(name, shape, int(groups.get(name, 1)), d, int(cb.shape[0]), n, m, q,
                          scale, assign, codes, tuple(array), l2_kb))
    return out


def write_stream(layers: list[StreamLayer], directory: str | Path) -> Path:
    """Write each layer's codebook image and pairs and ``manifest.json``; returns the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for i, lay in enumerate(layers):
        stem = f'{i:03d}_{lay.name.replace(".", "_") or "root"}'
        cb_file, pair_file = f'{stem}.codebook.bin', f'{stem}.pairs.bin'
        cb = np.ascontiguousarray(lay.codebook, dtype=np.int8).tobytes()
        (directory / cb_file).write_bytes(cb)
        pairs = np.concatenate([lay.indices[:, None], lay.mask_codes], axis=1)
        if pairs.size and (pairs.max() > 65535 or pairs.min() < 0):
            raise ValueError(f'{lay.name}: an index or mask code does not fit uint16')
        raw = pairs.astype('<u2').tobytes()
        (directory / pair_file).write_bytes(raw)
        records.append(dict(
            name=lay.name, weight_shape=list(lay.weight_shape), groups=lay.groups, d=lay.d,
            k=lay.k, n=lay.n, m=lay.m, sr=lay.sr, sc=lay.sc, scale=lay.scale,
            codebook=dict(file=cb_file, offset=0, bytes=len(cb), dtype='int8',
                          shape=[lay.k, lay.d]),
            pairs=dict(file=pair_file, offset=0, bytes=len(raw), entries=len(lay.indices),
                       layout=f'uint16 index + {lay.mask_codes.shape[1]} uint16 mask codes, LE',
                       index_bits=lay.index_bits, mask_bits=lay.mask_bits,
                       packed_bytes=math.ceil(len(lay.indices) * lay.entry_bits / 8)),
            folds=lay.folds, slices=lay.slices))
    manifest = directory / MANIFEST
    manifest.write_text(json.dumps(dict(version=STREAM_VERSION, array=list(layers[0].array)
                                        if layers else None, order='group, col_fold, row_fold, '
                                        'row, vector', layers=records), indent=1))
    return manifest


def read_stream(directory: str | Path) -> list[StreamLayer]:
    """Read a stream written by :func:`write_stream` (sub-vector numbers recomputed)."""
    directory = Path(directory)
    meta = json.loads((directory / MANIFEST).read_text())
    if meta.get('version') != STREAM_VERSION:
        raise ValueError(f'{directory / MANIFEST}: stream version {meta.get("version")!r}; '
                         f'this reader knows {STREAM_VERSION}')
    out = []
    for rec in meta['layers']:
        cb = np.frombuffer((directory / rec['codebook']['file']).read_bytes(), dtype=np.int8)
        raw = np.frombuffer((directory / rec['pairs']['file']).read_bytes(), dtype='<u2')
        pairs = raw.reshape(rec['pairs']['entries'], -1).astype(np.int64)
        shape = tuple(rec['weight_shape'])
        sub = np.concatenate([
            ((np.arange(f['vectors_per_row'])[None, :] + f['group'] * (rec['sc'] // rec['d'])
              + f['col_fold'] * (meta['array'][1] // rec['d'])) * rec['sr']
             + np.arange(f['row_fold'] * meta['array'][0],
                         f['row_fold'] * meta['array'][0] + f['rows'])[:, None]).reshape(-1)
            for f in rec['folds']]) if rec['folds'] else np.zeros(0, dtype=np.int64)
        lay = StreamLayer(rec['name'], shape, rec['groups'], rec['d'], rec['k'], rec['n'],
                          rec['m'], tuple(meta['array']), cb.reshape(rec['k'], rec['d']),
                          rec['scale'], pairs[:, 0], pairs[:, 1:], sub, rec['folds'],
                          rec['slices'])
        out.append(lay)
    return out
