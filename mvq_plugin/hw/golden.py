"""A golden functional model of the paper's weight loader and sparse tile running a
:mod:`~mvq_plugin.hw.stream` weight stream.

For each fold (tile) of a :class:`~mvq_plugin.hw.stream.StreamLayer`, in stream order:

1. **weight loader** (section 5.2): every (index, mask-code) entry reads one codeword from the
   codebook RF (``codebook_reads``), the mask LUT turns the codes into the ``d``-bit mask, and
   the masked codeword goes to its PE row; a row of ``L/d`` entries decodes per cycle through
   the ``L/d`` read ports, and the tile's packed entries cross the ``B``-bit weight bus, so the
   tile loads in ``max(rows * ceil(vectors / ports), ceil(tile_bits / B))`` cycles;
2. **sparse tile** (section 5.3): the cascaded LZCs encode each mask into its ``Q`` positions
   (``weight_loads``: the kept weights written with their positions into the weight and mask
   RFs; ``ceil(kept / Q)`` passes when a sub-vector keeps more than ``Q``);
3. **compute**: each streamed activation row multiplies the ``Q`` kept weights of every entry
   (``multiplies``), and each product is DEMUXed to the partial sum of its output channel
   (``b*d + position``), accumulated over the reduction in int64 (the psum adders and RFs).

With double buffering the tile time is ``max(T * passes, next load)``; :func:`run_layer`
returns the output and the counts (totals and per tile), which must equal
:func:`mvq_plugin.hw.cost.layer_costs`' ``weight_loads``, ``macs``, ``codebook_reads``,
``load_cycles_total`` and ``cycles`` for the same layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .arch import ArrayConfig
from .stream import StreamLayer

__all__ = ['GoldenResult', 'run_layer', 'im2col']


@dataclass
class GoldenResult:
    """Output and counts of one layer.

    Attributes:
        output: ``(groups, T, C_out/groups)`` int64 outputs.
        weight_loads: Kept weights written into the weight RFs (with their mask positions).
        multiplies: Multiplies done (``T`` per kept weight).
        codebook_reads: Codebook RF reads (one per entry).
        tile_load_cycles: Load cycles of every tile, stream order.
        tile_compute_cycles: Compute cycles of every tile (``T * passes``).
        cycles: Layer cycles with the array's timing (double-buffered or not).
    """

    output: np.ndarray
    weight_loads: int = 0
    multiplies: int = 0
    codebook_reads: int = 0
    tile_load_cycles: list[int] = field(default_factory=list)
    tile_compute_cycles: list[int] = field(default_factory=list)
    cycles: int = 0


def im2col(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0), groups: int = 1) -> np.ndarray:
    """``(groups, T, Sr)`` activation rows of an NCHW input (``Sr`` in ``c*kh*kw + i*kw + j``
    order, the stream's reduction order); a 2-D ``(T, C)`` input is a Linear's."""
    if x.ndim == 2:
        return x[None].astype(np.int64)
    b, c, h, w = x.shape
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - kh) // stride[0] + 1
    ow = (w + 2 * padding[1] - kw) // stride[1] + 1
    cols = np.empty((b, c, kh, kw, oh, ow), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + stride[0] * oh:stride[0],
                                  j:j + stride[1] * ow:stride[1]]
    cols = cols.transpose(0, 4, 5, 1, 2, 3).reshape(b * oh * ow, groups, c // groups * kh * kw)
    return cols.transpose(1, 0, 2)


def run_layer(layer: StreamLayer, x_cols: np.ndarray, arch: ArrayConfig) -> GoldenResult:
    """Run one layer's stream on the sparse array.

    Args:
        layer: The layer's weight stream (aligned to ``arch.rows x arch.cols``).
        x_cols: ``(groups, T, Sr)`` int8-valued activations (:func:`im2col`).
        arch: The array (``multipliers_per_tile`` is ``Q``, ``read_ports``, ``rows + cols``
            skew, ``weight_load_bw_bits``, ``weight_double_buffer``).

    Returns:
        The :class:`GoldenResult`.
    """
    rows, cols = layer.array
    if (arch.rows, arch.cols) != (rows, cols):
        raise ValueError(f'{layer.name}: the stream is aligned to {rows}x{cols}, the array is '
                         f'{arch.rows}x{arch.cols}')
    groups, t, sr = x_cols.shape
    if (groups, sr) != (layer.groups, layer.sr):
        raise ValueError(f'{layer.name}: activations {x_cols.shape} do not match groups='
                         f'{layer.groups}, Sr={layer.sr}')
    d, q = layer.d, arch.multipliers_per_tile
    masks = layer.masks()
    res = GoldenResult(np.zeros((groups, t, layer.sc), dtype=np.int64))
    ports = arch.read_ports
    for f in layer.folds:
        lo, n_ent = f['first_entry'], f['rows'] * f['vectors_per_row']
        idx = layer.indices[lo:lo + n_ent]
        mask = masks[lo:lo + n_ent]
        words = layer.codebook[idx].astype(np.int64)            # codebook RF reads
        res.codebook_reads += n_ent
        kept = mask.sum(axis=1)                                 # LZC: Q positions per entry
        passes = max(1, math.ceil(int(kept.max(initial=0)) / q))
        res.weight_loads += int(kept.sum())
        # DEMUX routing: value of each kept weight to (PE row, output channel) of the tile.
        tile = np.zeros((f['rows'], f['vectors_per_row'] * d), dtype=np.int64)
        r_of = np.repeat(np.arange(f['rows']), f['vectors_per_row'])
        v_of = np.tile(np.arange(f['vectors_per_row']), f['rows'])
        er, pos = np.nonzero(mask)
        tile[r_of[er], v_of[er] * d + pos] = words[er, pos]
        r0 = f['row_fold'] * rows
        c0 = f['col_fold'] * cols
        xs = x_cols[f['group'], :, r0:r0 + f['rows']]
        res.output[f['group'], :, c0:c0 + tile.shape[1]] += xs @ tile
        res.multiplies += t * int(kept.sum())
        bits = n_ent * layer.entry_bits
        bw = math.ceil(bits / arch.weight_load_bw_bits) if arch.weight_load_bw_bits else 0
        res.tile_load_cycles.append(max(f['rows'] * math.ceil(f['vectors_per_row'] / ports), bw))
        res.tile_compute_cycles.append(t * passes)
    loads, comp = res.tile_load_cycles, res.tile_compute_cycles
    skew = arch.rows + arch.cols - 2
    per_group = len(loads) // max(groups, 1)
    total = 0
    for g in range(groups):
        ld, cp = loads[g * per_group:(g + 1) * per_group], comp[g * per_group:(g + 1) * per_group]
        if arch.weight_double_buffer:
            total += ld[0] + sum(max(c, n) for c, n in zip(cp[:-1], ld[1:])) + cp[-1] + skew - 1
        else:
            total += sum(n + skew for n in ld) + sum(cp) - 1
    res.cycles = total
    return res
