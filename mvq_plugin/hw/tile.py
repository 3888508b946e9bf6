"""The array's tiles and their resource counts (the paper's Table 2 and this project's
activation-mux tile).

A tile is the repeating unit of the array. Three kinds:

* ``dense`` (EWS, section 5.3 and Table 2's left column): an ``H x d`` block of ordinary PEs,
  ``H*d`` multipliers and adders, each PE with a ``wrf_depth``-entry weight RF.
* ``out_channel`` (the paper's sparse tile, section 5.3, Fig. 8, Table 2's right column): an
  ``H x d`` block whose ``d`` columns are the ``d`` output channels of one sub-vector. Each of
  its ``H`` rows has ``Q = (N/M)*d`` multipliers fed by one activation; their weights sit in
  ``Q`` weight RFs beside ``Q`` mask RFs of ``log2(d)``-bit positions, which ``Q`` cascaded
  leading-zero counters (LZCs) encode from the ``d``-bit mask when the weights load. Each
  product goes through a DEMUX (``b_psum`` bits) to its output channel's partial sum, a MUX
  (``b_w`` bits) selects the RF read, and the ``d`` partial-sum adders per row stay
  (``H*d`` adders, adder trees of depth ``d``). PEs are zero-value gated with a 1W2R weight RF
  (Fig. 9). Its throughput equals the dense tile's on an N:M sparse layer (``2*H*d`` ops/cycle).
* ``in_channel`` (this project's first layout): ``d`` rows x 1 column; ``Q`` multipliers each
  choosing its activation with a ``d``-to-1 mux, a ``Q``-input adder tree and one accumulator.

:func:`tile_resources` counts one tile; :func:`array_resources` the whole array.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .arch import ArrayConfig
from .workload import Workload

__all__ = ['TileResources', 'tile_resources', 'array_resources', 'tile_kind', 'TILE_KINDS',
           'resolve_tile', 'layer_fits_tile']

TILE_KINDS = ('dense', 'out_channel', 'in_channel')


@dataclass(frozen=True)
class TileResources:
    """Resources of one tile (or, summed, of an array).

    Attributes:
        kind: ``'dense'``, ``'out_channel'`` or ``'in_channel'``.
        height: Tile rows ``H`` (``d`` for an ``in_channel`` tile).
        width: Tile columns (``d`` for ``dense``/``out_channel``, 1 for ``in_channel``).
        multipliers: 8-bit multipliers.
        adders: Partial-sum adders (``b_psum`` bits; adder-tree nodes included).
        weight_rf_bits: Weight register-file bits.
        mask_rf_bits: Mask register-file bits (positions, ``log2 d`` each).
        lzc: Leading-zero counters.
        demux_bits: DEMUX bits (product to partial-sum position).
        mux_bits: 2:1-mux-equivalent bits (RF read select; activation muxes of ``in_channel``).
        parallelism: Dense-equivalent operations per cycle (2 per MAC position).
    """

    kind: str
    height: int
    width: int
    multipliers: int
    adders: int
    weight_rf_bits: int
    mask_rf_bits: int
    lzc: int
    demux_bits: int
    mux_bits: int
    parallelism: int

    def scaled(self, count: int) -> 'TileResources':
        """The resources of ``count`` such tiles."""
        keys = ('multipliers', 'adders', 'weight_rf_bits', 'mask_rf_bits', 'lzc', 'demux_bits',
                'mux_bits', 'parallelism')
        values = {k: getattr(self, k) * count for k in keys}
        return TileResources(self.kind, self.height, self.width, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return asdict(self)


def tile_kind(arch: ArrayConfig) -> str:
    """The tile the array is built from: ``'dense'`` without the sparse array, else its
    ``sparse_tile``."""
    return arch.sparse_tile if arch.sparse_compute else 'dense'


def tile_resources(arch: ArrayConfig, height: int | None = None) -> TileResources:
    """Resources of one tile of ``arch``.

    Args:
        arch: The array (``sparse_block`` is ``d``, ``multipliers_per_tile`` is ``Q``,
            ``wrf_depth`` the RF entries, ``weight_bits``/``psum_bits`` the widths).
        height: ``H`` of a ``dense``/``out_channel`` tile (default: the array's rows).

    Returns:
        The counts; for ``out_channel`` they are Table 2's right column: ``H*Q`` multipliers,
        ``H*d`` adders, RF ``H*Q*depth*b_w`` + ``H*Q*depth*log2(d)``, ``H*Q`` LZCs,
        ``H*Q*b_psum`` DEMUX bits, ``H*Q*b_w`` MUX bits, parallelism ``2*H*d``.
    """
    d, q, depth = arch.sparse_block, arch.multipliers_per_tile, arch.wrf_depth
    wb, pb, ab = arch.weight_bits, arch.psum_bits, arch.act_bits
    h = arch.rows if height is None else height
    kind = tile_kind(arch)
    if kind == 'dense':
        return TileResources('dense', h, d, multipliers=h * d, adders=h * d,
                             weight_rf_bits=h * d * depth * wb, mask_rf_bits=0, lzc=0,
                             demux_bits=0, mux_bits=0, parallelism=2 * h * d)
    sel = max(1, math.ceil(math.log2(d)))
    if kind == 'out_channel':
        return TileResources('out_channel', h, d, multipliers=h * q, adders=h * d,
                             weight_rf_bits=h * q * depth * wb, mask_rf_bits=h * q * depth * sel,
                             lzc=h * q, demux_bits=h * q * pb, mux_bits=h * q * wb,
                             parallelism=2 * h * d)
    # in_channel: d rows x 1 column, Q-input adder tree plus the accumulator.
    return TileResources('in_channel', d, 1, multipliers=q, adders=q,
                         weight_rf_bits=q * depth * wb, mask_rf_bits=q * depth * sel, lzc=0,
                         demux_bits=0, mux_bits=q * (d - 1) * ab, parallelism=2 * d)


def array_resources(arch: ArrayConfig) -> TileResources:
    """Resources of the whole ``rows x cols`` array (tiles of ``tile_resources``)."""
    tile = tile_resources(arch)
    count = (arch.rows // tile.height) * (arch.cols // tile.width) if tile.kind != 'dense' \
        else arch.cols // tile.width if arch.cols % tile.width == 0 else 0
    if tile.kind == 'dense' and count == 0:  # columns not a multiple of d: count PEs directly
        one = tile_resources(arch.with_(sparse_block=1, sparse_n=1, sparse_m=1))
        return one.scaled(arch.cols)
    return tile.scaled(count)


def resolve_tile(workload: Workload, arch: ArrayConfig) -> ArrayConfig:
    """``arch`` with ``sparse_tile='auto'`` resolved from ``workload``.

    ``auto`` becomes the layout carrying most of the compressed layers' weights
    (``out_channel`` or ``in_channel``); a workload whose layers name no layout (topology files,
    hand-built workloads) maps to ``in_channel``, this project's first tile.
    """
    if arch.sparse_tile != 'auto':
        return arch
    weight = {'out_channel': 0, 'in_channel': 0}
    for lay in workload:
        if lay.compressed and lay.vector_axis in weight:
            weight[lay.vector_axis] += lay.weight_numel
    tile = 'out_channel' if weight['out_channel'] > weight['in_channel'] else 'in_channel'
    return arch.with_(sparse_tile=tile)


def layer_fits_tile(axis: np.ndarray, arch: ArrayConfig) -> np.ndarray:
    """Per layer: whether its sub-vectors run along the (resolved) tile's axis (a layer that
    names no axis fits any tile)."""
    return np.array([a in ('', None, arch.sparse_tile) for a in axis], dtype=bool)
