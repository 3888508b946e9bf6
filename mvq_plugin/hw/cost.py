"""The analytical cost model: cycles, accesses, energy and area of a workload on an array.

All quantities are numpy arrays over the layers of a :class:`~mvq_plugin.hw.Workload`, so a
whole network costs a handful of vector operations. Notation per layer (one group; a layer
with ``G`` groups runs its ``G`` GEMMs one after another)::

    R, C            array rows / columns (ArrayConfig.rows / cols)
    Sr, Sc, T       reduction, output channels, streamed rows (workload.py)
    Fr = ceil(Sr/R), Fc = ceil(Sc/C), F = Fr * Fc      folds

**Dense WS (SCALE-Sim 3.0.0, preset ``ws``)**: a tile's weights shift in row by row (``R``
cycles), ``T`` ifmap rows stream through, and the skewed pipeline fills and drains
(``R + C - 2``); folds do not overlap::

    cycles        = F * (2R + C + T - 2) - 1
    filter reads  = Sr * Sc,  ifmap reads = T * Sr * Fc,  ofmap writes = T * Sc * Fr

(:func:`ws_cycles`, :func:`ws_sram_accesses`; tested against SCALE-Sim to the cycle.)

**Generalised model** (every extension is one ArrayConfig switch):

* ``load`` = cycles to put one weight tile in the array
  = ``max(fill, tile_bits / B)``; ``fill`` = ``R`` for a dense array (row shift),
  ``R * Q / d`` for the sparse array (only ``Q`` weight registers per ``d`` rows), and
  ``tile_subvectors / read_ports`` when the codebook RF decodes (index, mask) pairs.
* ``passes`` = ``ceil(d_tile * density_pattern / Q)`` on the sparse array (a dense layer needs
  ``M/N`` passes of ``Q`` rows each), 1 on a dense array; the stream per fold is
  ``S = T * passes``.
* psum RF of depth ``P`` (``psum_accumulate``): the stream is cut into ``c = ceil(T/P)``
  chunks, weights reload per chunk; without it ``c = 1`` and partial sums spill to SRAM.
* without weight double buffering: ``cycles_g = F*c*(load + R + C - 2) + F*S - 1``
  (equals the SCALE-Sim form for ``load = R, c = passes = 1``);
  with it (EWS): ``cycles_g = load + (F*c - 1) * max(s, load) + s + R + C - 3`` with
  ``s = S / c``: only the first load and one fill/drain are exposed unless loading is slower
  than streaming (small ``T``), which is where the MVQ weight stream also saves cycles.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arch import ArrayConfig
from .tables import CostTable
from .workload import Workload

__all__ = ['ws_cycles', 'ws_sram_accesses', 'layer_costs', 'array_area',
           'ENERGY_COMPONENTS']

#: Energy components (pJ) in reports; their sum is the total energy.
ENERGY_COMPONENTS = ('dram', 'sram', 'rf', 'codebook_rf', 'array', 'mac', 'mux_adder_tree')


def _ceil_div(a, b):
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


def ws_cycles(sr, sc, t, rows: int, cols: int):
    """SCALE-Sim 3.0.0 weight-stationary cycles of one GEMM.

    ``cycles = ceil(Sr/R) * ceil(Sc/C) * (2R + C + T - 2) - 1``

    Args:
        sr: Reduction size(s) ``Sr`` (int or int array).
        sc: Output channels ``Sc``.
        t: Streamed rows ``T``.
        rows: Array rows ``R``.
        cols: Array columns ``C``.

    Returns:
        Cycles (same shape as the inputs).
    """
    folds = _ceil_div(sr, rows) * _ceil_div(sc, cols)
    return folds * (2 * rows + cols + np.asarray(t, dtype=np.int64) - 2) - 1


def ws_sram_accesses(sr, sc, t, rows: int, cols: int) -> dict[str, Any]:
    """SCALE-Sim 3.0.0 SRAM counts (words) of one weight-stationary GEMM.

    ``filter reads = Sr*Sc``, ``ifmap reads = T*Sr*ceil(Sc/C)``,
    ``ofmap writes = T*Sc*ceil(Sr/R)``.
    """
    sr, sc, t = (np.asarray(v, dtype=np.int64) for v in (sr, sc, t))
    return dict(sram_filter_reads=sr * sc, sram_ifmap_reads=t * sr * _ceil_div(sc, cols),
                sram_ofmap_writes=t * sc * _ceil_div(sr, rows))


def array_area(arch: ArrayConfig, table: CostTable) -> dict[str, float]:
    """Area (um^2) of the array and its register files.

    Dense PE: ``mult + add32 + (db * w_bits + a_bits + p_bits) * reg_bit`` (``db`` = 2 with
    weight double buffering). Sparse ``d``-row tile: ``Q`` multipliers, each with a ``d``-to-1
    activation mux (``(d-1) * a_bits`` 2:1 mux bits) and ``db * (w_bits + ceil(log2 d))``
    register bits; a ``Q``-input adder tree (``Q - 1`` 16-bit adders) plus one 32-bit
    accumulate adder; ``d * a_bits`` pass-through activation registers and one psum register.
    Codebook RF: ``entries * width * cb_bits`` register bits plus, per read port, a
    ``entries``-to-1 mux of ``width * cb_bits`` bits. Activation RF (per row) and psum RF (per
    column) are counted as SRAM-like storage outside the array.

    Returns:
        ``{'pe_array', 'codebook_rf', 'array' (= pe_array + codebook_rf), 'act_rf', 'psum_rf',
        'sram', 'total'}`` in um^2.
    """
    a = table.area
    reg = a['register_bit']
    db = 2 if arch.weight_double_buffer else 1
    R, C = arch.rows, arch.cols
    if arch.sparse_compute:
        d, q = arch.sparse_block, arch.multipliers_per_tile
        sel = max(1, math.ceil(math.log2(d)))
        tile = (q * (a['mult_int8'] + (d - 1) * arch.act_bits * a['mux2_bit']
                     + db * (arch.weight_bits + sel) * reg)
                + (q - 1) * a['add_int16'] + a['add_int32']
                + d * arch.act_bits * reg + arch.psum_bits * reg)
        pe_array = (R // d) * C * tile
    else:
        pe = a['mult_int8'] + a['add_int32'] + (db * arch.weight_bits + arch.act_bits
                                                + arch.psum_bits) * reg
        pe_array = R * C * pe
    codebook = 0.0
    if arch.vq_weights:
        bits = arch.codebook_rf_entries * arch.codebook_rf_width * arch.codebook_bits
        codebook = bits * reg + arch.read_ports * (arch.codebook_rf_entries - 1) * \
            arch.codebook_rf_width * arch.codebook_bits * a['mux2_bit']
    act_rf = R * arch.act_rf_depth * arch.act_bits * a['sram_bit'] if arch.act_reuse else 0.0
    psum_rf = C * arch.psum_rf_depth * arch.psum_bits * a['sram_bit'] \
        if arch.psum_accumulate else 0.0
    sram = (arch.ifmap_sram_kb + arch.filter_sram_kb + arch.ofmap_sram_kb) * 8192 * a['sram_bit']
    out = dict(pe_array=pe_array, codebook_rf=codebook, array=pe_array + codebook,
               act_rf=act_rf, psum_rf=psum_rf, sram=sram)
    out['total'] = out['array'] + act_rf + psum_rf + sram
    return out


def layer_costs(workload: Workload, arch: ArrayConfig, table: CostTable) -> dict[str, np.ndarray]:
    """Per-layer cycles, accesses and energy of ``workload`` on ``arch``.

    Returns a dict of float64/int64 arrays (one entry per layer); the keys are the report
    columns (see :mod:`mvq_plugin.hw.report`). Energies are in pJ and
    ``energy_total = sum(energy_<c> for c in ENERGY_COMPONENTS)``.
    """
    w = workload.arrays()
    R, C = arch.rows, arch.cols
    G, sr, sc, t = w['groups'], w['sr'], w['sc'], w['t']
    fr, fc = _ceil_div(sr, R), _ceil_div(sc, C)
    folds = fr * fc
    numel = G * sr * sc
    dense_macs = numel * t
    e, tab = table.energy, table
    wb, ab, pb, cbb = arch.weight_bits, arch.act_bits, arch.psum_bits, arch.codebook_bits

    # Which MVQ effects apply to which layer.
    sparse_l = w['prunes'] & arch.sparse_compute
    vq_l = w['compressed'] & arch.vq_weights
    density = np.where(w['prunes'], w['density'], 1.0)

    # Sparse array passes: ceil(d_tile * pattern density / Q) (dense layers need M/N passes).
    if arch.sparse_compute:
        q = arch.multipliers_per_tile
        pattern = np.where(w['prunes'], w['n'] / w['m'], 1.0)
        passes = np.ceil(arch.sparse_block * pattern / q - 1e-9).astype(np.int64)
        passes = np.maximum(passes, 1)
    else:
        q = arch.sparse_block
        passes = np.ones_like(sr)

    # Weight stream (bits for the whole layer, one pass over all weights).
    d = w['d']
    nsub = np.where(w['compressed'], numel // np.maximum(d, 1), 0)
    dense_bits = numel * wb
    sparse_bits = numel * density * wb + nsub * w['mask_bits']
    vq_bits = nsub * (w['index_bits'] + w['mask_bits'])
    weight_bits = np.where(vq_l, vq_bits, np.where(sparse_l, sparse_bits, dense_bits))
    codebook_bits = np.where(vq_l, w['k'] * d * cbb, 0)
    cb_fits = (w['k_nominal'] <= arch.codebook_rf_entries) & (d <= arch.codebook_rf_width)

    # psum RF chunking.
    chunks = _ceil_div(t, arch.psum_rf_depth) if arch.psum_accumulate else np.ones_like(t)
    tiles = folds * chunks                          # tile loads per group
    stream = t * passes                             # S
    s = stream / chunks                             # per chunk

    # Load cycles of one tile.
    tile_bits = weight_bits / (G * folds)
    if arch.sparse_compute:
        fill = np.full(len(sr), R * q / arch.sparse_block)
    else:
        fill = np.full(len(sr), float(R))
    decode = (nsub / (G * folds)) / arch.read_ports
    fill = np.where(vq_l, decode, fill)
    bw = tile_bits / arch.weight_load_bw_bits if arch.weight_load_bw_bits else 0.0
    load = np.ceil(np.maximum(fill, bw) - 1e-9)

    skew = R + C - 2
    if arch.weight_double_buffer:
        cyc_g = load + (tiles - 1) * np.maximum(s, load) + s + skew - 1
    else:
        cyc_g = tiles * (load + skew) + folds * stream - 1
    cycles = np.ceil(G * cyc_g - 1e-9).astype(np.int64)
    compute_cycles = G * folds * stream

    executed = np.where(sparse_l, dense_macs * density, dense_macs)   # multiplies done
    mapping = (sr * sc) / (folds * R * C)
    utilization = dense_macs / (cycles * R * C)
    mac_util = executed / (cycles * arch.peak_macs_per_cycle)

    # SRAM (L2) accesses, in words of the operand width (SCALE-Sim units) and in bits.
    filter_reads = numel * chunks                                   # weights delivered
    filter_read_bits = weight_bits * chunks + np.where(
        vq_l, codebook_bits * np.where(cb_fits, 1, G * tiles), 0)
    stream_reads = G * t * sr * fc * passes                         # operands into rows
    if arch.act_reuse:
        unique = np.minimum(t * sr, w['cin_g'] * w['touched'])
        ifmap_reads = G * unique * fc * passes
        act_rf_bits = (ifmap_reads + stream_reads) * ab              # RF write + read
    else:
        ifmap_reads = stream_reads
        act_rf_bits = np.zeros(len(sr))
    fr_eff = fr * passes
    outputs = G * t * sc
    if arch.psum_accumulate:
        ofmap_writes = outputs
        psum_sram_bits = np.zeros(len(sr))
        psum_rf_bits = (outputs * fr_eff + outputs * (fr_eff - 1)) * pb
    else:
        ofmap_writes = outputs * fr_eff
        psum_sram_bits = outputs * (fr_eff - 1) * pb * 2              # spill write + read back
        psum_rf_bits = np.zeros(len(sr))
    psum_reads = np.zeros(len(sr)) if arch.psum_accumulate else outputs * (fr_eff - 1)

    e_if = tab.sram_bit_energy(arch.ifmap_sram_kb)
    e_fi = tab.sram_bit_energy(arch.filter_sram_kb)
    e_of = tab.sram_bit_energy(arch.ofmap_sram_kb)
    sram_ifmap = ifmap_reads * ab * e_if
    sram_filter = filter_read_bits * e_fi
    sram_ofmap = (outputs * ab + psum_sram_bits) * e_of

    # DRAM: weights (and codebooks) once; activations once per layer unless kept on chip.
    dram_w_bits = weight_bits + codebook_bits
    if arch.dram_activations:
        dram_if_bits = w['ifmap_elems'] * ab
        dram_of_bits = w['ofmap_elems'] * ab
    else:
        dram_if_bits = np.zeros(len(sr))
        dram_of_bits = np.zeros(len(sr))
        if len(sr):
            dram_if_bits[0] = w['ifmap_elems'][0] * ab
            dram_of_bits[-1] = w['ofmap_elems'][-1] * ab
    dram = (dram_w_bits + dram_if_bits + dram_of_bits) * e['dram_bit']

    # Array: systolic activation hops, psum hops, weight register writes.
    act_hops = dense_macs * passes
    psum_hops = np.where(arch.sparse_compute, dense_macs * passes / arch.sparse_block,
                         dense_macs)
    sel_bits = max(1, math.ceil(math.log2(arch.sparse_block))) if arch.sparse_compute else 0
    wreg_bits = np.where(arch.sparse_compute, numel * np.where(sparse_l, density, 1.0) *
                         (wb + sel_bits), numel * wb) * chunks
    array_e = (act_hops * ab + psum_hops * pb + wreg_bits) * e['register_bit']

    # Arithmetic.
    if arch.sparse_compute:
        accum = executed / q                                        # one per tile-cycle
        tree = executed - accum                                     # Q-1 per tile-cycle
        mux = executed * ab * (arch.sparse_block - 1) * e['mux2_bit']
    else:
        accum, tree, mux = executed, np.zeros(len(sr)), np.zeros(len(sr))
    mac_e = executed * e['mult_int8'] + accum * e['add_int32']
    mux_tree_e = tree * e['add_int32'] + mux

    # Codebook RF: one read of d * cb_bits per decoded sub-vector, writes when loaded.
    cb_reads = np.where(vq_l, nsub * chunks * d * cbb, 0)
    cb_writes = np.where(vq_l, codebook_bits * np.where(cb_fits, 1, G * tiles), 0)
    codebook_e = (cb_reads + cb_writes) * e['rf_bit']
    rf_e = (act_rf_bits + psum_rf_bits) * e['rf_bit']

    out = dict(
        sr=sr, sc=sc, t=t, groups=G, row_folds=fr, col_folds=fc, passes=passes,
        psum_chunks=chunks, load_cycles=load, cycles=cycles, compute_cycles=compute_cycles,
        dense_macs=dense_macs, macs=executed, utilization=utilization,
        mac_utilization=mac_util, mapping_efficiency=mapping,
        sram_ifmap_reads=ifmap_reads, sram_filter_reads=filter_reads,
        sram_ofmap_writes=ofmap_writes, sram_psum_reads=psum_reads,
        sram_filter_read_bits=filter_read_bits, weight_stream_bits=weight_bits,
        codebook_bits=codebook_bits,
        dram_ifmap_read_bits=dram_if_bits, dram_filter_read_bits=dram_w_bits,
        dram_ofmap_write_bits=dram_of_bits,
        energy_dram=dram, energy_sram=sram_ifmap + sram_filter + sram_ofmap,
        energy_sram_ifmap=sram_ifmap, energy_sram_filter=sram_filter,
        energy_sram_ofmap=sram_ofmap, energy_rf=rf_e, energy_codebook_rf=codebook_e,
        energy_array=array_e, energy_mac=mac_e, energy_mux_adder_tree=mux_tree_e,
    )
    out['energy_total'] = sum(out[f'energy_{c}'] for c in ENERGY_COMPONENTS)
    return {k: np.asarray(v, dtype=np.float64 if np.asarray(v).dtype.kind == 'f' else np.int64)
            for k, v in out.items()}
