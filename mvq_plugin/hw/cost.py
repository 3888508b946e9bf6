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
  = ``max(fill, tile_bits / B)``, per tile class (full or last row fold x full or last
  column fold; ``load_cycles`` is the first tile's, ``load_cycles_total`` the sum);
  ``fill`` = ``R`` for a dense array (row shift),
  ``R * Q / d`` for the sparse array (only ``Q`` weight registers per ``d`` rows), and
  ``tile_subvectors / read_ports`` when the codebook RF decodes (index, mask) pairs.
* ``passes`` = ``ceil(d_tile * density_pattern / Q)`` on the sparse array (a dense layer needs
  ``M/N`` passes of ``Q`` rows each), 1 on a dense array; the stream per fold is
  ``S = T * passes``.
* psum RF of depth ``P`` (``psum_accumulate``): the stream is cut into ``c = ceil(T/P)``
  chunks, weights reload per chunk; without it ``c = 1`` and partial sums spill to SRAM.
* without weight double buffering: ``cycles_g = F*c*(load + R + C - 2) + F*S - 1``
  (equals the SCALE-Sim form for ``load = R, c = passes = 1``);
  with it (EWS): ``cycles_g = load_1 + sum_{i>1} max(s, load_i) + s + R + C - 3`` with
  ``s = S / c``: only the first load and one fill/drain are exposed unless loading is slower
  than streaming (small ``T``), which is where the MVQ weight stream also saves cycles.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .arch import ArrayConfig
from .tables import CostTable
from .tile import array_resources, layer_fits_tile
from .workload import Workload

__all__ = ['ws_cycles', 'ws_sram_accesses', 'layer_costs', 'array_area', 'ews_reuse',
           'ENERGY_COMPONENTS']

#: Energy components (pJ) in reports; their sum is the total energy.
ENERGY_COMPONENTS = ('dram', 'sram', 'rf', 'codebook_rf', 'array', 'mac', 'mux_adder_tree',
                     'static')


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

    ``area_model='pe'`` (the earlier calibration): dense PE ``mult + add32 + (db * w_bits +
    a_bits + p_bits) * reg_bit`` (``db`` = 2 with weight double buffering); sparse ``d``-row
    tile: ``Q`` multipliers, each with a ``d``-to-1 activation mux (``(d-1) * a_bits`` 2:1 mux
    bits) and ``db * (w_bits + ceil(log2 d))`` register bits; a ``Q``-input adder tree
    (``Q - 1`` 16-bit adders) plus one 32-bit accumulate adder; ``d * a_bits`` pass-through
    activation registers and one psum register.

    ``area_model='table2'`` (the paper's design point): the array's resources
    (:func:`~mvq_plugin.hw.tile.array_resources`, Table 2's counts) times the table's areas:
    multipliers, 32-bit adders, weight and mask RF bits (``max(wrf_depth, 2)`` entries: a
    single weight register is double buffered), LZCs, DEMUX/MUX bits, plus one activation
    register and one psum register per PE (dense) or, in the combinational ``out_channel``
    tile (Gemmini-style, Fig. 6), one activation register per tile row and one psum register
    per column, and the controller.

    Both: codebook RF ``entries * width * cb_bits`` register bits plus, per read port, an
    ``entries``-to-1 mux of ``width * cb_bits`` bits; activation RF (per row) and psum RF (per
    column, present with ``act_reuse``/``psum_accumulate`` or ``wrf_depth > 1``) as register
    bits (``table2``) or SRAM (``pe``).

    Returns:
        ``{'pe_array', 'codebook_rf', 'array' (= pe_array + codebook_rf), 'act_rf', 'psum_rf',
        'controller', 'accelerator' (array + RFs + controller: Table 7's row), 'sram',
        'total'}`` in um^2.
    """
    a = table.area
    reg = a['register_bit']
    db = 2 if arch.weight_double_buffer else 1
    R, C = arch.rows, arch.cols
    ews_rf = arch.wrf_depth > 1
    if arch.area_model == 'table2':
        res = array_resources(arch)
        if res.kind == 'out_channel':  # combinational tile: registers at its edges only
            pipeline = (R * C // arch.sparse_block) * arch.act_bits + C * arch.psum_bits
        else:
            pipeline = R * C * (arch.act_bits + arch.psum_bits)
        regs = (res.weight_rf_bits + res.mask_rf_bits) * (2 if arch.wrf_depth == 1 else 1)
        regs += pipeline
        pe_array = (res.multipliers * a['mult_int8'] + res.adders * a['add_int32']
                    + regs * reg + (res.demux_bits + res.mux_bits) * a['mux2_bit']
                    + res.lzc * a['lzc'])
        rf_bit_area = reg
    elif arch.sparse_compute:
        d, q = arch.sparse_block, arch.multipliers_per_tile
        sel = max(1, math.ceil(math.log2(d)))
        tile = (q * (a['mult_int8'] + (d - 1) * arch.act_bits * a['mux2_bit']
                     + db * (arch.weight_bits + sel) * reg)
                + (q - 1) * a['add_int16'] + a['add_int32']
                + d * arch.act_bits * reg + arch.psum_bits * reg)
        pe_array = (R // d) * C * tile
        rf_bit_area = a['sram_bit']
    else:
        pe = a['mult_int8'] + a['add_int32'] + (db * arch.weight_bits + arch.act_bits
                                                + arch.psum_bits) * reg
        pe_array = R * C * pe
        rf_bit_area = a['sram_bit']
    codebook = 0.0
    if arch.vq_weights:
        bits = arch.codebook_rf_entries * arch.codebook_rf_width * arch.codebook_bits
        codebook = bits * reg + arch.read_ports * (arch.codebook_rf_entries - 1) * \
            arch.codebook_rf_width * arch.codebook_bits * a['mux2_bit']
    act_rf = R * arch.act_rf_depth * arch.act_bits * rf_bit_area \
        if (arch.act_reuse or ews_rf) else 0.0
    psum_rf = C * arch.psum_rf_depth * arch.psum_bits * rf_bit_area \
        if (arch.psum_accumulate or ews_rf) else 0.0
    sram = (arch.ifmap_sram_kb + arch.filter_sram_kb + arch.ofmap_sram_kb) * 8192 * a['sram_bit']
    controller = a['controller']
    out = dict(pe_array=pe_array, codebook_rf=codebook, array=pe_array + codebook,
               act_rf=act_rf, psum_rf=psum_rf, controller=controller, sram=sram)
    out['accelerator'] = out['array'] + act_rf + psum_rf + controller
    out['total'] = out['accelerator'] + sram
    return out


def ews_reuse(fr, fc, k_area, depth: int, act_cost, psum_cost):
    """The EWS extensions ``(A, B, D)`` of every layer (the paper's section 5.1, Fig. 7).

    A PE's weight RF holds ``A*B*D <= depth`` weights: ``A`` output-channel folds share an
    activation fetch, ``D`` kernel-plane positions reuse it through the activation RF, ``B``
    input-channel folds (with ``D``) accumulate in the psum RF. Activation SRAM reads fall by
    ``A*D`` and psum SRAM traffic by ``B*D`` (``A <= Fc``, ``D <= min(kh*kw, Fr)``,
    ``B*D <= Fr``). Per layer the triple with the least SRAM energy
    ``act_cost / (A*D) + psum_cost(ceil(Fr / (B*D)))`` is taken.

    Returns:
        ``(A, B, D)`` int arrays.
    """
    best = None
    for a in range(1, depth + 1):
        for dd in range(1, depth // a + 1):
            for b in range(1, depth // (a * dd) + 1):
                ok = (a <= fc) & (dd <= np.minimum(k_area, fr)) & (b * dd <= np.maximum(fr, 1))
                groups = _ceil_div(fr, b * dd)
                cost = np.where(ok, act_cost / (a * dd) + psum_cost(groups), np.inf)
                if best is None:
                    best = [cost, np.full(len(fr), a), np.full(len(fr), b), np.full(len(fr), dd)]
                    continue
                better = cost < best[0] - 1e-9
                best[0] = np.where(better, cost, best[0])
                for i, v in ((1, a), (2, b), (3, dd)):
                    best[i] = np.where(better, v, best[i])
    return best[1], best[2], best[3]


def layer_costs(workload: Workload, arch: ArrayConfig, table: CostTable) -> dict[str, np.ndarray]:
    """Per-layer cycles, accesses and energy of ``workload`` on ``arch``.

    With ``sparse_tile='auto'`` every layer is costed on the tile of its own layout
    (``out_channel`` or, naming none, ``in_channel``), so a layer's cost never depends on the
    other layers (the allocation sums them).

    Returns a dict of float64/int64 arrays (one entry per layer); the keys are the report
    columns (see :mod:`mvq_plugin.hw.report`). Energies are in pJ and
    ``energy_total = sum(energy_<c> for c in ENERGY_COMPONENTS)``.
    """
    if arch.sparse_tile != 'auto':
        return _layer_costs(workload, arch, table)
    oc = np.array([lay.vector_axis == 'out_channel' for lay in workload], dtype=bool)
    parts = []
    for sel, tile in ((oc, 'out_channel'), (~oc, 'in_channel')):
        if sel.any():
            sub = Workload(workload.name, [lay for lay, k in zip(workload, sel) if k],
                           workload.input_shape)
            parts.append((sel, _layer_costs(sub, arch.with_(sparse_tile=tile), table)))
    if len(parts) == 1:
        return parts[0][1]
    out = {}
    for key in parts[0][1]:
        dtype = np.result_type(*(p[key] for _, p in parts))
        merged = np.zeros(len(oc), dtype=dtype)
        for sel, p in parts:
            merged[sel] = p[key]
        out[key] = merged
    return out


def _layer_costs(workload: Workload, arch: ArrayConfig, table: CostTable
                 ) -> dict[str, np.ndarray]:
    """:func:`layer_costs` on a resolved tile."""
    w = workload.arrays()
    R, C = arch.rows, arch.cols
    G, sr, sc, t = w['groups'], w['sr'], w['sc'], w['t']
    fr, fc = _ceil_div(sr, R), _ceil_div(sc, C)
    folds = fr * fc
    numel = G * sr * sc
    dense_macs = numel * t
    e, tab = table.energy, table
    wb, ab, pb, cbb = arch.weight_bits, arch.act_bits, arch.psum_bits, arch.codebook_bits
    n_l = len(sr)
    zeros = np.zeros(n_l)
    oc_tile = arch.sparse_compute and arch.sparse_tile == 'out_channel'
    ews = arch.wrf_depth > 1

    # Which MVQ effects apply to which layer (the sparse array only exploits masks laid out
    # along its tile's axis).
    sparse_l = w['prunes'] & arch.sparse_compute & layer_fits_tile(w['axis'], arch)
    vq_l = w['compressed'] & arch.vq_weights
    density = np.where(w['prunes'], w['density'], 1.0)

    # Sparse array passes: ceil(d_tile * pattern density / Q) (dense layers need M/N passes).
    if arch.sparse_compute:
        q = arch.multipliers_per_tile
        pattern = np.where(sparse_l, w['n'] / w['m'], 1.0)
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

    # Load cycles of every tile: tiles come in (at most) four classes, full or last row fold x
    # full or last column fold, each loading in max(fill, tile_bits / B) cycles.
    bits_per_weight = weight_bits / np.maximum(numel, 1)
    d_tile = np.maximum(np.where(vq_l, d, 1), 1)
    classes = []
    for rows_c, n_r in ((np.full(n_l, R), fr - 1), (sr - (fr - 1) * R, np.ones_like(fr))):
        for cols_c, n_c in ((np.full(n_l, C), fc - 1), (sc - (fc - 1) * C, np.ones_like(fc))):
            if oc_tile or (arch.vq_weights and arch.sparse_tile == 'out_channel'):
                decode = rows_c * _ceil_div(_ceil_div(cols_c, d_tile), arch.read_ports)
            else:
                decode = rows_c * cols_c / d_tile / arch.read_ports
            if arch.sparse_compute and not oc_tile:
                fill = np.full(n_l, R * q / arch.sparse_block)
            else:
                fill = np.full(n_l, float(R))
            fill = np.where(vq_l, decode, fill)
            tb = rows_c * cols_c * bits_per_weight
            bw = tb / arch.weight_load_bw_bits if arch.weight_load_bw_bits else 0.0
            classes.append((np.ceil(np.maximum(fill, bw) - 1e-9), n_r * n_c))
    first = np.where(fr > 1, np.where(fc > 1, classes[0][0], classes[1][0]),
                     np.where(fc > 1, classes[2][0], classes[3][0]))
    load = first
    load_total = chunks * sum(ld * n for ld, n in classes)

    skew = R + C - 2
    if arch.weight_double_buffer:
        busy = chunks * sum(np.maximum(s, ld) * n for ld, n in classes)
        cyc_g = first + busy - np.maximum(s, first) + s + skew - 1
    else:
        cyc_g = load_total + tiles * skew + folds * stream - 1
    cycles = np.ceil(G * cyc_g - 1e-9).astype(np.int64)
    compute_cycles = G * folds * stream

    executed = np.where(sparse_l, dense_macs * density, dense_macs)   # multiplies done
    mapping = (sr * sc) / (folds * R * C)
    utilization = dense_macs / (cycles * R * C)
    mac_util = executed / (cycles * arch.peak_macs_per_cycle)

    # SRAM accesses, in words of the operand width (SCALE-Sim units) and in bits.
    filter_reads = numel * chunks                                   # weights delivered
    filter_read_bits = weight_bits * chunks + np.where(
        vq_l, codebook_bits * np.where(cb_fits, 1, G * tiles), 0)
    stream_reads = G * t * sr * fc * passes                         # operands into rows
    fr_eff = fr * passes
    outputs = G * t * sc
    e_if = tab.sram_bit_energy(arch.ifmap_sram_kb)
    e_fi = tab.sram_bit_energy(arch.filter_sram_kb)
    e_of = tab.sram_bit_energy(arch.ofmap_sram_kb)
    reuse_a = reuse_b = reuse_d = np.ones(n_l, dtype=np.int64)
    if ews:
        def psum_cost(groups):
            return outputs * (groups - 1) * pb * 2 * e_of
        reuse_a, reuse_b, reuse_d = ews_reuse(fr_eff, fc, w['k_area'], arch.wrf_depth,
                                              stream_reads * ab * e_if, psum_cost)
        ifmap_reads = np.ceil(stream_reads / (reuse_a * reuse_d))
        groups = _ceil_div(fr_eff, reuse_b * reuse_d)
        act_rf_e = (ifmap_reads + stream_reads) * ab * e['arf_bit']     # RF write + read
        ofmap_writes = outputs * groups
        psum_sram_bits = outputs * (groups - 1) * pb * 2
        psum_rf_e = outputs * fr_eff * 2 * pb * e['prf_bit']            # accumulate: read + write
        psum_reads = outputs * (groups - 1)
    else:
        if arch.act_reuse:
            unique = np.minimum(t * sr, w['cin_g'] * w['touched'])
            ifmap_reads = G * unique * fc * passes
            act_rf_e = (ifmap_reads + stream_reads) * ab * e['rf_bit']   # RF write + read
        else:
            ifmap_reads = stream_reads
            act_rf_e = zeros
        if arch.psum_accumulate:
            ofmap_writes = outputs
            psum_sram_bits = zeros
            psum_rf_e = (outputs * fr_eff + outputs * (fr_eff - 1)) * pb * e['rf_bit']
        else:
            ofmap_writes = outputs * fr_eff
            psum_sram_bits = outputs * (fr_eff - 1) * pb * 2          # spill write + read back
            psum_rf_e = zeros
        psum_reads = zeros if arch.psum_accumulate else outputs * (fr_eff - 1)
    sram_ifmap = ifmap_reads * ab * e_if
    sram_filter = filter_read_bits * e_fi
    sram_ofmap = (outputs * ab + psum_sram_bits) * e_of

    # DRAM: weights (and codebooks) once; activations once per layer unless kept on chip. With
    # an L2, feature maps live there (one L2 read of the ifmap and one write of the ofmap per
    # layer) unless a layer's ifmap + ofmap exceed it.
    dram_w_bits = weight_bits + codebook_bits
    act_l2 = zeros
    if arch.l2_kb is not None:
        spill = (w['ifmap_elems'] + w['ofmap_elems']) * ab > arch.l2_kb * 8192
        dram_if_bits = np.where(spill, w['ifmap_elems'] * ab, 0)
        dram_of_bits = np.where(spill, w['ofmap_elems'] * ab, 0)
        act_l2 = np.where(spill, 0, (w['ifmap_elems'] + w['ofmap_elems']) * ab) * \
            tab.sram_bit_energy(arch.l2_kb)
    elif arch.dram_activations:
        dram_if_bits = w['ifmap_elems'] * ab
        dram_of_bits = w['ofmap_elems'] * ab
    else:
        dram_if_bits = np.zeros(n_l)
        dram_of_bits = np.zeros(n_l)
        if n_l:
            dram_if_bits[0] = w['ifmap_elems'][0] * ab
            dram_of_bits[-1] = w['ofmap_elems'][-1] * ab
    dram = (dram_w_bits + dram_if_bits + dram_of_bits) * e['dram_bit']

    # Array: systolic activation hops, psum hops, weight register (or weight RF) traffic.
    act_hops = dense_macs * passes
    psum_hops = (dense_macs * passes / arch.sparse_block
                 if arch.sparse_compute and not oc_tile else dense_macs * passes)
    sel_bits = max(1, math.ceil(math.log2(arch.sparse_block))) if arch.sparse_compute else 0
    loaded = numel * np.where(sparse_l, density, 1.0) if arch.sparse_compute else numel
    wreg_bits = loaded * (wb + sel_bits) * chunks
    array_e = (act_hops * ab + psum_hops * pb) * e['register_bit']
    if ews:  # weight RF: written when a tile loads, read by every multiply (mask RF alike)
        wrf_e = (wreg_bits + executed * (wb + (sel_bits if oc_tile else 0))) * e['wrf_bit']
    else:
        wrf_e = wreg_bits * e['register_bit']
    array_e = array_e + wrf_e

    # Arithmetic.
    if oc_tile:   # products DEMUXed to their psum positions; d adders per tile row
        adds = executed if arch.idle_adders_gated else dense_macs * passes
        accum, tree = adds, zeros
        mux = executed * (pb + wb) * e['mux2_bit'] + loaded * chunks * e['lzc']
    elif arch.sparse_compute:
        accum = executed / q                                        # one per tile-cycle
        tree = executed - accum                                     # Q-1 per tile-cycle
        mux = executed * ab * (arch.sparse_block - 1) * e['mux2_bit']
    else:
        accum, tree, mux = executed, zeros, zeros
    mac_e = executed * e['mult_int8'] + accum * e['add_int32']
    mux_tree_e = tree * e['add_int32'] + mux

    # Codebook RF: one read of d * cb_bits per decoded sub-vector, writes when loaded.
    cb_reads = np.where(vq_l, nsub * chunks * d * cbb, 0)
    cb_writes = np.where(vq_l, codebook_bits * np.where(cb_fits, 1, G * tiles), 0)
    codebook_e = (cb_reads + cb_writes) * e['crf_bit']
    rf_e = act_rf_e + psum_rf_e
    sram_e = sram_ifmap + sram_filter + sram_ofmap + act_l2

    out = dict(
        sr=sr, sc=sc, t=t, groups=G, row_folds=fr, col_folds=fc, passes=passes,
        psum_chunks=chunks, load_cycles=load, load_cycles_total=G * load_total, cycles=cycles,
        compute_cycles=compute_cycles,
        dense_macs=dense_macs, macs=executed, utilization=utilization,
        mac_utilization=mac_util, mapping_efficiency=mapping,
        sram_ifmap_reads=ifmap_reads, sram_filter_reads=filter_reads,
        sram_ofmap_writes=ofmap_writes, sram_psum_reads=psum_reads,
        sram_filter_read_bits=filter_read_bits, weight_stream_bits=weight_bits,
        codebook_bits=codebook_bits, codebook_reads=np.where(vq_l, nsub * chunks, 0),
        weight_loads=loaded * chunks, ews_a=reuse_a, ews_b=reuse_b, ews_d=reuse_d,
        dram_ifmap_read_bits=dram_if_bits, dram_filter_read_bits=dram_w_bits,
        dram_ofmap_write_bits=dram_of_bits,
        energy_dram=dram, energy_sram=sram_e,
        energy_sram_ifmap=sram_ifmap, energy_sram_filter=sram_filter,
        energy_sram_ofmap=sram_ofmap, energy_sram_act_l2=act_l2, energy_rf=rf_e,
        energy_codebook_rf=codebook_e, energy_wrf=wrf_e,
        energy_array=array_e, energy_mac=mac_e, energy_mux_adder_tree=mux_tree_e,
        energy_static=cycles * arch.static_power_mw * 1e-3 / (arch.clock_mhz * 1e6) * 1e12,
    )
    out['energy_total'] = sum(out[f'energy_{c}'] for c in ENERGY_COMPONENTS)
    out['energy_data_access'] = dram + sram_e + rf_e + codebook_e + wrf_e
    return {k: np.asarray(v, dtype=np.float64 if np.asarray(v).dtype.kind == 'f' else np.int64)
            for k, v in out.items()}
