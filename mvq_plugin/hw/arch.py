"""Accelerator configurations: :class:`ArrayConfig` and the ``ws``/``ews``/``mvq`` presets.

Every effect the EWS and MVQ models add on top of SCALE-Sim's plain weight-stationary array is
one boolean or number here, so each can be switched on alone (``dataclasses.replace``):

=========================  ==================================================================
switch                      assumption (see ``docs/hardware.md``)
=========================  ==================================================================
``weight_double_buffer``    per-PE weight register files hold two tiles: the next tile loads
                            while the current one computes, and consecutive folds pipeline
                            (fill/drain paid once per layer instead of once per fold).
``act_reuse``               activation register files at the array edge keep the convolution
                            window: each ifmap element is read from SRAM once per column fold
                            instead of ``kh*kw/stride^2`` times.
``psum_accumulate``         psum register files (``psum_rf_depth`` words per column) accumulate
                            across reduction folds: outputs are written once; when ``T`` exceeds
                            the depth the stream is cut into chunks and weights reload per chunk.
``sparse_compute``          N:M sparse array: each ``d``-row tile has ``Q = (N/M)*d``
                            multipliers, ``d``-to-1 activation muxes and a ``Q``-input adder
                            tree; MACs on compressed layers scale by N/M.
``vq_weights``              weights stream as ``log2(k) + mask bits`` per sub-vector and are
                            expanded by a codebook register file with ``L/d`` read ports.
``sparse_tile``             which sparse tile the array is built from: ``'out_channel'`` (the
                            paper's tile, :mod:`~mvq_plugin.hw.tile`: ``Q`` multipliers per ``d``
                            output channels, LZCs, a mask RF and DEMUXes to the partial sums)
                            or ``'in_channel'`` (``Q`` multipliers per ``d`` rows with
                            activation muxes and a ``Q``-input adder tree).
``wrf_depth``               the EWS loop nest (extensions A, B, D): each PE's weight RF holds
                            ``A*B*D <= wrf_depth`` weights; activation SRAM reads drop by
                            ``A*D``, psum SRAM traffic by ``B*D`` (chosen per layer).
``idle_adders_gated``       ``False``: the ``d`` psum adders of every tile row add each cycle
                            (Table 2 keeps ``H*d`` adders); ``True``: only ``Q`` of them.
=========================  ==================================================================

The paper's six settings (WS, WS-CMS, EWS, EWS-C, EWS-CM, EWS-CMS) at 16x16, 32x32 and 64x64
are :data:`PAPER_SETTINGS` (``get_arch('EWS-CMS_32x32')``); ``ws``/``ews``/``mvq`` are this
project's earlier calibration (500 MHz, one weight row per cycle, the activation-mux tile),
kept as the named alternative ``guess-500mhz``.

``weight_load_bw_bits`` is the bandwidth ``B`` (bits/cycle) from the weight buffer into the
array; ``None`` means SCALE-Sim's assumption of one array row per cycle (``8*cols`` bits/cycle
for 8-bit weights), so a dense tile always loads in ``rows`` cycles.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ['ArrayConfig', 'PRESETS', 'PAPER_SETTINGS', 'PAPER_SIZES', 'get_arch', 'paper_setting']

DATAFLOWS = ('ws',)
DENSE_FALLBACKS = ('multipass',)
SPARSE_TILES = ('auto', 'in_channel', 'out_channel')
AREA_MODELS = ('pe', 'table2')


def _check_int(name: str, value: Any, low: int, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        rng = f'>= {low}' if high == math.inf else f'in [{low}, {high}]'
        raise ValueError(f'ArrayConfig.{name}={value!r} must be an integer {rng}')


def _check_pos(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'ArrayConfig.{name}={value!r} must be a number > 0')


@dataclass(frozen=True)
class ArrayConfig:
    """A weight-stationary systolic-array accelerator.

    Attributes:
        name: Label used in reports.
        rows: Logical array rows ``R`` (the reduction dimension ``Sr`` is folded over them).
        cols: Logical array columns ``C`` (output channels ``Sc`` are folded over them).
        dataflow: Only ``'ws'`` (weight stationary).
        ifmap_sram_kb: Ifmap buffer size (KiB), selects its per-bit energy.
        filter_sram_kb: Filter buffer size (KiB).
        ofmap_sram_kb: Ofmap/psum buffer size (KiB).
        weight_bits: Dense weight precision.
        act_bits: Activation precision (ifmap and final ofmap).
        psum_bits: Partial-sum precision (array psum registers, psum RF, psum spills).
        codebook_bits: Codeword element precision in the codebook register file.
        clock_mhz: Clock for latency and throughput (energy does not depend on it).
        weight_load_bw_bits: Weight-buffer-to-array bandwidth ``B`` in bits/cycle; ``None``:
            one array row per cycle (SCALE-Sim).
        weight_double_buffer: EWS weight register files (see module docstring).
        act_reuse: EWS activation register files.
        psum_accumulate: EWS psum register files.
        psum_rf_depth: Psum register-file words per column.
        act_rf_depth: Activation register-file words per row (area only).
        sparse_compute: MVQ sparse array (``Q = (N/M)*d`` multipliers per ``d``-row tile).
        vq_weights: MVQ (index, mask) weight stream and codebook register file.
        codebook_rf_entries: Codewords the codebook RF holds (a larger ``k`` reloads per fold).
        codebook_rf_width: Largest sub-vector length ``d`` the codebook RF holds.
        codebook_read_ports: Codebook RF read ports (one decoded sub-vector each per cycle);
            ``None``: ``rows // sparse_block`` (the paper's ``L/d``).
        sparse_block: Tile height ``d`` the sparse array is built for (multipliers per tile:
            ``sparse_n/sparse_m * sparse_block``), and the default ``d`` for area.
        sparse_n: N of the N:M pattern the sparse array is built for.
        sparse_m: M of the N:M pattern.
        dense_fallback: How a dense (uncompressed) layer runs on the sparse array:
            ``'multipass'`` streams each tile ``ceil(M/N)`` times, ``Q`` rows at a time.
        dram_activations: Every layer reads its ifmap from and writes its ofmap to DRAM once;
            ``False``: activations stay on chip (only the network input/output touch DRAM).
        l2_kb: On-chip L2 (KiB) that holds weights and feature maps (the paper's 2 MB); a
            layer whose ifmap + ofmap exceed it keeps them in DRAM, the others move L2 <-> L1
            once. ``None``: ``dram_activations`` decides.
        sparse_tile: ``'out_channel'`` (the paper's tile), ``'in_channel'`` or ``'auto'``
            (the layout of the workload's compressed layers; ``in_channel`` when they name
            none), resolved by :func:`mvq_plugin.hw.tile.resolve_tile`.
        wrf_depth: Weights per PE register file (EWS: 16); 1: a single weight register.
        idle_adders_gated: See the module docstring.
        area_model: ``'pe'`` (per-PE registers, the earlier calibration) or ``'table2'``
            (resource counts of :mod:`~mvq_plugin.hw.tile` times the table's areas).
        static_power_mw: Power drawn whatever the array does (the SoC's CPU, DMA, interconnect,
            IO and leakage; the paper's Fig. 16 'Other'), charged for the run time
            ``cycles / clock``; 0: none.
        cost_table: Built-in cost table used when a call names none
            (:data:`~mvq_plugin.hw.tables.BUILTIN_TABLES`).
    """

    name: str = 'ws'
    rows: int = 64
    cols: int = 64
    dataflow: str = 'ws'
    ifmap_sram_kb: int = 256
    filter_sram_kb: int = 256
    ofmap_sram_kb: int = 128
    weight_bits: int = 8
    act_bits: int = 8
    psum_bits: int = 32
    codebook_bits: int = 8
    clock_mhz: float = 500.0
    weight_load_bw_bits: int | None = None
    weight_double_buffer: bool = False
    act_reuse: bool = False
    psum_accumulate: bool = False
    psum_rf_depth: int = 1024
    act_rf_depth: int = 64
    sparse_compute: bool = False
    vq_weights: bool = False
    codebook_rf_entries: int = 256
    codebook_rf_width: int = 8
    codebook_read_ports: int | None = None
    sparse_block: int = 8
    sparse_n: int = 2
    sparse_m: int = 8
    dense_fallback: str = 'multipass'
    dram_activations: bool = True
    l2_kb: int | None = None
    sparse_tile: str = 'auto'
    wrf_depth: int = 1
    idle_adders_gated: bool = False
    area_model: str = 'pe'
    cost_table: str = 'default'
    static_power_mw: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'ArrayConfig.name={self.name!r} must be a non-empty string')
        _check_int('rows', self.rows, 1, 65536)
        _check_int('cols', self.cols, 1, 65536)
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f'ArrayConfig.dataflow={self.dataflow!r} must be one of '
                             f'{DATAFLOWS}')
        for key in ('ifmap_sram_kb', 'filter_sram_kb', 'ofmap_sram_kb'):
            _check_int(key, getattr(self, key), 1)
        for key in ('weight_bits', 'act_bits', 'codebook_bits'):
            _check_int(key, getattr(self, key), 1, 32)
        _check_int('psum_bits', self.psum_bits, 1, 64)
        _check_pos('clock_mhz', self.clock_mhz)
        if isinstance(self.static_power_mw, bool) or \
                not isinstance(self.static_power_mw, (int, float)) or self.static_power_mw < 0:
            raise ValueError(f'ArrayConfig.static_power_mw={self.static_power_mw!r} must be a '
                             'number >= 0 (mW)')
        if self.weight_load_bw_bits is not None:
            _check_int('weight_load_bw_bits', self.weight_load_bw_bits, 1)
        for key in ('weight_double_buffer', 'act_reuse', 'psum_accumulate', 'sparse_compute',
                    'vq_weights', 'dram_activations', 'idle_adders_gated'):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f'ArrayConfig.{key}={getattr(self, key)!r} must be a bool')
        _check_int('psum_rf_depth', self.psum_rf_depth, 1)
        _check_int('act_rf_depth', self.act_rf_depth, 1)
        _check_int('codebook_rf_entries', self.codebook_rf_entries, 2)
        _check_int('codebook_rf_width', self.codebook_rf_width, 1)
        _check_int('sparse_block', self.sparse_block, 1, 1024)
        _check_int('sparse_m', self.sparse_m, 1, self.sparse_block)
        _check_int('sparse_n', self.sparse_n, 1, self.sparse_m)
        if self.sparse_block % self.sparse_m:
            raise ValueError(f'ArrayConfig.sparse_m={self.sparse_m} must divide '
                             f'sparse_block={self.sparse_block}')
        if self.sparse_tile not in SPARSE_TILES:
            raise ValueError(f'ArrayConfig.sparse_tile={self.sparse_tile!r} must be one of '
                             f'{SPARSE_TILES}')
        if self.area_model not in AREA_MODELS:
            raise ValueError(f'ArrayConfig.area_model={self.area_model!r} must be one of '
                             f'{AREA_MODELS}')
        _check_int('wrf_depth', self.wrf_depth, 1, 1024)
        if self.l2_kb is not None:
            _check_int('l2_kb', self.l2_kb, 1)
        if not isinstance(self.cost_table, str) or not self.cost_table:
            raise ValueError(f'ArrayConfig.cost_table={self.cost_table!r} must be a table name')
        side, what = ((self.cols, 'cols') if self.sparse_tile == 'out_channel'
                      else (self.rows, 'rows'))
        if (self.sparse_compute or self.vq_weights) and side % self.sparse_block:
            raise ValueError(f'ArrayConfig.{what}={side} must be a multiple of '
                             f'sparse_block={self.sparse_block} ({self.sparse_tile} tiles of d)')
        if self.codebook_read_ports is not None:
            _check_int('codebook_read_ports', self.codebook_read_ports, 1)
        if self.dense_fallback not in DENSE_FALLBACKS:
            raise ValueError(f'ArrayConfig.dense_fallback={self.dense_fallback!r} must be one '
                             f'of {DENSE_FALLBACKS}')

    @property
    def read_ports(self) -> int:
        """Codebook RF read ports (``L // sparse_block`` unless set; ``L`` is the array side the
        sub-vectors run along: columns for ``out_channel`` tiles, rows for ``in_channel``)."""
        side = self.cols if self.sparse_tile == 'out_channel' else self.rows
        return self.codebook_read_ports or max(1, side // self.sparse_block)

    @property
    def multipliers_per_tile(self) -> int:
        """``Q = ceil(N/M * d)`` multipliers per ``d``-row tile of the sparse array."""
        return math.ceil(self.sparse_n * self.sparse_block / self.sparse_m)

    @property
    def peak_macs_per_cycle(self) -> int:
        """Physical multipliers: ``R*C`` dense, ``R*C*Q/d`` on the sparse array."""
        if self.sparse_compute:
            return self.rows * self.cols * self.multipliers_per_tile // self.sparse_block
        return self.rows * self.cols

    def with_(self, **changes: Any) -> 'ArrayConfig':
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready field values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> 'ArrayConfig':
        """Build from a dict, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown ArrayConfig keys {unknown}; allowed: {sorted(known)}')
        return cls(**values)


#: The earlier calibration (``guess-500mhz``): ``ws`` is SCALE-Sim 3.0.0's weight-stationary
#: array (the dense closed form reproduces it); ``ews`` adds weight/activation/psum register
#: files; ``mvq`` adds the codebook register file and the activation-mux sparse tile.
PRESETS: dict[str, ArrayConfig] = {
    'ws': ArrayConfig(name='ws'),
    'ews': ArrayConfig(name='ews', weight_double_buffer=True, act_reuse=True,
                       psum_accumulate=True),
    'mvq': ArrayConfig(name='mvq', weight_double_buffer=True, act_reuse=True,
                       psum_accumulate=True, sparse_compute=True, vq_weights=True),
}

#: The paper's memory system and clock (section 7.1, Table 9): 40 nm at 0.3 GHz, L2 2 MB,
#: L1 128 KB for 16x16 and 256 KB for 32x32 / 64x64, a 64-bit DMA feeding the weight loader.
PAPER_SYSTEM = dict(clock_mhz=300.0, weight_load_bw_bits=64, filter_sram_kb=2048, l2_kb=2048,
                    area_model='table2', cost_table='paper-40nm', sparse_tile='out_channel',
                    psum_rf_depth=64, act_rf_depth=16)
_EWS = dict(weight_double_buffer=True, wrf_depth=16)
_CM = dict(vq_weights=True, codebook_rf_entries=512, codebook_rf_width=16, sparse_block=16,
           sparse_n=4, sparse_m=16)
#: The paper's six settings (section 7.1) as ArrayConfig fields, with the MVQ preset
#: (:data:`mvq_plugin.core.presets.PRESETS`) the network is compressed with (``None``: dense).
PAPER_SETTINGS: dict[str, tuple[dict[str, Any], str | None]] = {
    'WS': (dict(), None),
    'WS-CMS': (dict(_CM, sparse_compute=True), 'resnet'),
    'EWS': (dict(_EWS), None),
    'EWS-C': (dict(_EWS, vq_weights=True, codebook_rf_entries=1024, codebook_rf_width=8,
                   sparse_block=8, sparse_n=8, sparse_m=8), 'resnet_common_vq'),
    'EWS-CM': (dict(_EWS, **_CM), 'resnet'),
    'EWS-CMS': (dict(_EWS, **_CM, sparse_compute=True), 'resnet'),
}
PAPER_SIZES = (16, 32, 64)
#: Static power (mW) of the paper's SoC per array size: the only numbers fitted to the paper's
#: results (the EWS bars of Fig. 19 on ResNet-18, with everything else fixed; its Fig. 16 shows
#: this 'Other' power but gives no values). Every other setting and figure is a prediction.
PAPER_STATIC_MW = {16: 67.4, 32: 112.3, 64: 107.3}


def paper_setting(name: str, size: int = 64) -> ArrayConfig:
    """One of the paper's six settings on a ``size x size`` array (L1 128 KB at 16, else 256 KB;
    static power from :data:`PAPER_STATIC_MW`, scaled by the array area for other sizes).

    Raises:
        ValueError: an unknown setting (the six are listed).
    """
    if name not in PAPER_SETTINGS:
        raise ValueError(f'unknown paper setting {name!r}; allowed: {list(PAPER_SETTINGS)}')
    _check_int('size', size, 1, 65536)
    l1 = 128 if size <= 16 else 256
    static = PAPER_STATIC_MW.get(size, PAPER_STATIC_MW[64] * size * size / 4096)
    fields_ = dict(PAPER_SYSTEM, ifmap_sram_kb=l1, ofmap_sram_kb=l1, static_power_mw=static,
                   **PAPER_SETTINGS[name][0])
    return ArrayConfig(name=name, rows=size, cols=size, **fields_)


PRESETS.update({name: paper_setting(name) for name in PAPER_SETTINGS})


def get_arch(arch: 'str | ArrayConfig | dict[str, Any]' = 'mvq', **overrides: Any) -> ArrayConfig:
    """Resolve a preset name, a dict or an :class:`ArrayConfig`, then apply ``overrides``.

    Args:
        arch: A preset (:data:`PRESETS`: the paper's ``'WS'`` ... ``'EWS-CMS'`` at 64x64 and
            the earlier ``'ws'``, ``'ews'``, ``'mvq'``), sized as ``'<preset>_<rows>x<cols>'``
            (``'EWS-CMS_16x16'`` also takes the paper's L1 for that size), a dict of fields
            (``preset`` may name the base), or a config.
        **overrides: Field values to replace (``None`` values are ignored).

    Returns:
        The validated configuration.
    """
    if isinstance(arch, ArrayConfig):
        cfg = arch
    elif isinstance(arch, str):
        sized = re.fullmatch(r'([A-Za-z-]+)_(\d+)x(\d+)', arch)
        if sized and sized.group(1) in PAPER_SETTINGS and sized.group(2) == sized.group(3):
            cfg = paper_setting(sized.group(1), int(sized.group(2)))
        elif sized and sized.group(1) in PRESETS:
            cfg = PRESETS[sized.group(1)].with_(rows=int(sized.group(2)),
                                                cols=int(sized.group(3)))
        elif arch in PRESETS:
            cfg = PRESETS[arch]
        else:
            raise ValueError(f'unknown arch {arch!r}; presets: {sorted(PRESETS)}, optionally '
                             f"sized as '<preset>_<rows>x<cols>' (e.g. 'EWS-CMS_32x32')")
    elif isinstance(arch, dict):
        values = dict(arch)
        base = values.pop('preset', None)
        if base is not None:
            cfg = get_arch(base).with_(**values)
        else:
            cfg = ArrayConfig.from_dict(values)
    else:
        raise ValueError(f'arch must be a preset name, dict or ArrayConfig, got '
                         f'{type(arch).__name__}')
    changes = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_(**changes) if changes else cfg
