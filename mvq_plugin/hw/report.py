"""Hardware reports: per-layer and total costs, comparisons, and JSON/CSV/Markdown/PNG output.

A :class:`HardwareReport` is one workload on one array. With a baseline it also carries the
gain decomposed into its parts (docs/design.md section 5): the target architecture with only the
sparse array (``sparsity_only``), with only the (index, mask) weight stream and codebook RF
(``vq_only``), and with both, each against the same baseline.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.table import render_table
from .arch import ArrayConfig
from .cost import ENERGY_COMPONENTS
from .tables import CostTable
from .workload import Workload

__all__ = ['HardwareReport', 'FORMATS', 'VARIANTS']

logger = logging.getLogger('mvq_plugin')

FORMATS = ('json', 'csv', 'md', 'png')
#: The text formats and the method that renders each (``png`` is the plots module's).
_TEXT_WRITERS = {'json': 'to_json', 'csv': 'to_csv', 'md': 'to_markdown'}
#: Decomposition variants: (label, sparse_compute, vq_weights) applied to the target arch.
VARIANTS = (('sparsity_only', True, False), ('vq_only', False, True), ('both', True, True))

# Per-layer CSV columns: (column name, key in the cost dict); SCALE-Sim names where they exist.
CSV_COLUMNS = (
    ('Layer name', None), ('Sr', 'sr'), ('Sc', 'sc'), ('T', 't'), ('Groups', 'groups'),
    ('Total Cycles', 'cycles'), ('Compute Cycles', 'compute_cycles'),
    ('Overall Util %', 'utilization'), ('Mapping Efficiency %', 'mapping_efficiency'),
    ('MAC Util %', 'mac_utilization'), ('Dense MACs', 'dense_macs'), ('MACs', 'macs'),
    ('SRAM IFMAP Reads', 'sram_ifmap_reads'), ('SRAM Filter Reads', 'sram_filter_reads'),
    ('SRAM OFMAP Writes', 'sram_ofmap_writes'), ('SRAM Psum Reads', 'sram_psum_reads'),
    ('SRAM Filter Read Bits', 'sram_filter_read_bits'),
    ('DRAM IFMAP Reads', 'dram_ifmap_read_bits'), ('DRAM Filter Reads', 'dram_filter_read_bits'),
    ('DRAM OFMAP Writes', 'dram_ofmap_write_bits'),
) + tuple((f'Energy {c} (pJ)', f'energy_{c}') for c in ENERGY_COMPONENTS) + (
    ('Energy total (pJ)', 'energy_total'),)
_PERCENT = {'utilization', 'mapping_efficiency', 'mac_utilization'}
_BYTES = {'dram_ifmap_read_bits', 'dram_filter_read_bits', 'dram_ofmap_write_bits'}


@dataclass
class HardwareReport:
    """One workload on one array, optionally compared with a baseline.

    Attributes:
        workload: The costed workload.
        arch: The array.
        table: The energy/area table used.
        layers: Per-layer cost arrays (see :func:`mvq_plugin.hw.cost.layer_costs`).
        area: Area breakdown in um^2 (see :func:`mvq_plugin.hw.cost.array_area`).
        baseline: The baseline report (dense workload on the baseline arch), if any.
        variants: Decomposition reports ``{'sparsity_only', 'vq_only', 'both'}``, if any.
    """

    workload: Workload
    arch: ArrayConfig
    table: CostTable
    layers: dict[str, np.ndarray]
    area: dict[str, float]
    baseline: 'HardwareReport | None' = None
    variants: dict[str, 'HardwareReport'] = field(default_factory=dict)

    # Totals ---------------------------------------------------------------------------------
    def total(self, key: str) -> float:
        """Sum of a per-layer quantity over the network."""
        return float(np.sum(self.layers[key]))

    @property
    def cycles(self) -> int:
        """Total cycles (layers run one after another)."""
        return int(np.sum(self.layers['cycles']))

    @property
    def latency_ms(self) -> float:
        """``cycles / clock``."""
        return self.cycles / (self.arch.clock_mhz * 1e3)

    @property
    def energy_pj(self) -> float:
        """Energy per inference (pJ), DRAM included."""
        return self.total('energy_total')

    @property
    def chip_energy_pj(self) -> float:
        """Energy per inference without DRAM (pJ)."""
        return self.energy_pj - self.total('energy_dram')

    @property
    def ops(self) -> float:
        """Dense-equivalent operations ``2 * dense MACs`` (the work done for the user)."""
        return 2.0 * self.total('dense_macs')

    @property
    def tops_per_w(self) -> float:
        """Accelerator (on-chip) efficiency: dense-equivalent ops per pJ = TOPS/W, no DRAM."""
        return self.ops / self.chip_energy_pj if self.chip_energy_pj else 0.0

    @property
    def tops_per_w_system(self) -> float:
        """System efficiency with DRAM: dense-equivalent TOPS/W."""
        return self.ops / self.energy_pj if self.energy_pj else 0.0

    @property
    def tops(self) -> float:
        """Dense-equivalent throughput (TOPS) at the clock."""
        return self.ops / (self.latency_ms * 1e-3) / 1e12 if self.cycles else 0.0

    @property
    def utilization(self) -> float:
        """``dense MACs / (cycles * R * C)`` over the network."""
        return self.total('dense_macs') / (self.cycles * self.arch.rows * self.arch.cols)

    def totals(self) -> dict[str, float]:
        """Network totals: cycles, latency, MACs, accesses, energies (uJ), area (mm^2), TOPS/W."""
        out = dict(cycles=float(self.cycles), latency_ms=self.latency_ms,
                   dense_macs=self.total('dense_macs'), macs=self.total('macs'),
                   utilization=self.utilization)
        for key in ('sram_ifmap_reads', 'sram_filter_reads', 'sram_ofmap_writes',
                    'sram_psum_reads', 'sram_filter_read_bits', 'dram_ifmap_read_bits',
                    'dram_filter_read_bits', 'dram_ofmap_write_bits'):
            out[key] = self.total(key)
        for comp in ENERGY_COMPONENTS:
            out[f'energy_{comp}_uj'] = self.total(f'energy_{comp}') * 1e-6
        out['energy_uj'] = self.energy_pj * 1e-6
        out['chip_energy_uj'] = self.chip_energy_pj * 1e-6
        out['tops_per_w'] = self.tops_per_w
        out['tops_per_w_system'] = self.tops_per_w_system
        out['tops'] = self.tops
        for key, val in self.area.items():
            out[f'area_{key}_mm2'] = val * 1e-6
        return out

    # Comparison ----------------------------------------------------------------------------
    def gain_over(self, base: 'HardwareReport') -> dict[str, float]:
        """Ratios against ``base`` (same network).

        ``speedup = cycles_base / cycles``; ``energy_efficiency = E_base / E`` (with DRAM) and
        ``chip_energy_efficiency`` (without); ``array_area_reduction = 1 - A / A_base``.
        """
        return dict(
            speedup=base.cycles / self.cycles,
            energy_efficiency=base.energy_pj / self.energy_pj,
            chip_energy_efficiency=base.chip_energy_pj / self.chip_energy_pj,
            array_area_reduction=1.0 - self.area['array'] / base.area['array'],
            tops_per_w=self.tops_per_w, tops_per_w_base=base.tops_per_w)

    def gains(self) -> dict[str, dict[str, float]]:
        """``{variant: gain_over(baseline)}`` for the decomposition (``{}`` without baseline)."""
        if self.baseline is None:
            return {}
        out = {name: rep.gain_over(self.baseline) for name, rep in self.variants.items()}
        out.setdefault('total', self.gain_over(self.baseline))
        return out

    def scalars(self, prefix: str = 'hw/') -> dict[str, float]:
        """Flat ``{prefix + name: float}`` for loggers (the hook logs these)."""
        t = self.totals()
        out = {f'{prefix}{k}': float(t[k]) for k in (
            'cycles', 'latency_ms', 'utilization', 'energy_uj', 'chip_energy_uj', 'tops_per_w',
            'tops_per_w_system', 'area_array_mm2', 'macs', 'dense_macs')}
        for comp in ENERGY_COMPONENTS:
            out[f'{prefix}energy_{comp}_uj'] = float(t[f'energy_{comp}_uj'])
        for variant, g in self.gains().items():
            tag = '' if variant == 'total' else f'{variant}/'
            for key in ('speedup', 'energy_efficiency', 'chip_energy_efficiency',
                        'array_area_reduction'):
                out[f'{prefix}{tag}{key}'] = float(g[key])
        return out

    # Serialisation -------------------------------------------------------------------------
    def layer_records(self) -> list[dict[str, Any]]:
        """One dict per layer: name, GEMM view, compression and all cost columns."""
        recs = []
        for i, lay in enumerate(self.workload.layers):
            rec = dict(name=lay.name, compressed=lay.compressed, block_size=lay.block_size,
                       num_codewords=lay.num_codewords, n=lay.n, m=lay.m)
            for key, arr in self.layers.items():
                v = arr[i]
                rec[key] = int(v) if arr.dtype.kind == 'i' else float(v)
            recs.append(rec)
        return recs

    def to_dict(self, with_layers: bool = True) -> dict[str, Any]:
        """JSON-ready report (baseline and variants summarised by their totals)."""
        out = dict(workload=self.workload.name, input_shape=self.workload.input_shape,
                   arch=self.arch.to_dict(), table=self.table.to_dict(), totals=self.totals(),
                   sparse_tile=self.arch.sparse_tile if self.arch.sparse_compute else None)
        if with_layers:
            out['layers'] = self.layer_records()
        if self.baseline is not None:
            out['baseline'] = dict(arch=self.baseline.arch.to_dict(),
                                   totals=self.baseline.totals())
            out['variants'] = {k: dict(arch=v.arch.to_dict(), totals=v.totals())
                               for k, v in self.variants.items()}
            out['gains'] = self.gains()
        return out

    def to_json(self, **kwargs: Any) -> str:
        """The report as a JSON string."""
        return json.dumps(self.to_dict(**kwargs), indent=1)

    def to_csv(self) -> str:
        """Per-layer CSV (SCALE-Sim column names where they exist; DRAM columns in bytes)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(['LayerID'] + [c for c, _ in CSV_COLUMNS])
        for i, lay in enumerate(self.workload.layers):
            row: list[Any] = [i]
            for _, key in CSV_COLUMNS:
                if key is None:
                    row.append(lay.name)
                    continue
                v = self.layers[key][i]
                if key in _PERCENT:
                    v = 100.0 * v
                elif key in _BYTES:
                    v = v / 8.0
                row.append(int(v) if isinstance(v, (np.integer, int)) else
                           float(f'{float(v):.6g}'))
            writer.writerow(row)
        return buf.getvalue()

    def summary_rows(self) -> list[tuple[str, str]]:
        """(quantity, value) pairs of the headline totals."""
        t = self.totals()
        rows = [('array', f'{self.arch.name} {self.arch.rows}x{self.arch.cols} '
                          f'@ {self.table.node_nm:g} nm, {self.arch.clock_mhz:g} MHz'),
                ('sparse tile', self.arch.sparse_tile if self.arch.sparse_compute else 'none'),
                ('layers', str(len(self.workload))),
                ('cycles', f'{self.cycles:,}'), ('latency (ms)', f'{t["latency_ms"]:.3f}'),
                ('utilization', f'{100 * t["utilization"]:.1f}%'),
                ('dense MACs', f'{t["dense_macs"]:,.0f}'), ('executed MACs', f'{t["macs"]:,.0f}'),
                ('energy / inference (uJ)', f'{t["energy_uj"]:.2f}'),
                ('on-chip energy (uJ)', f'{t["chip_energy_uj"]:.2f}'),
                ('TOPS/W (on-chip)', f'{t["tops_per_w"]:.2f}'),
                ('TOPS/W (with DRAM)', f'{t["tops_per_w_system"]:.2f}'),
                ('array area (mm^2)', f'{t["area_array_mm2"]:.3f}')]
        for comp in ENERGY_COMPONENTS:
            rows.append((f'  energy {comp} (uJ)', f'{t[f"energy_{comp}_uj"]:.3f}'))
        return rows

    def gain_rows(self) -> list[tuple[str, ...]]:
        """Header plus one row per decomposition variant."""
        head = ('vs ' + (self.baseline.arch.name if self.baseline else '-'), 'speed-up',
                'energy eff.', 'on-chip energy eff.', 'array area reduction', 'TOPS/W')
        rows = [head]
        for name, g in self.gains().items():
            rows.append((name, f'{g["speedup"]:.2f}x', f'{g["energy_efficiency"]:.2f}x',
                         f'{g["chip_energy_efficiency"]:.2f}x',
                         f'{100 * g["array_area_reduction"]:.1f}%', f'{g["tops_per_w"]:.2f}'))
        return rows

    def table_text(self, max_layers: int | None = None) -> str:
        """Plain-text table: per-layer cycles/energy, totals and the decomposed gains."""
        head = ('layer', 'Sr', 'Sc', 'T', 'cycles', 'util%', 'MACs', 'energy uJ', 'compressed')
        rows = [head]
        n = len(self.workload) if max_layers is None else min(max_layers, len(self.workload))
        for i in range(n):
            lay = self.workload.layers[i]
            L = self.layers
            rows.append((lay.name, str(L['sr'][i]), str(L['sc'][i]), str(L['t'][i]),
                         f'{L["cycles"][i]:,}', f'{100 * L["utilization"][i]:.1f}',
                         f'{L["macs"][i]:,.0f}', f'{L["energy_total"][i] * 1e-6:.3f}',
                         f'd={lay.block_size} k={lay.num_codewords} {lay.n}:{lay.m}'
                         if lay.compressed else '-'))
        text = [render_table(rows)]
        if n < len(self.workload):
            text.append(f'... {len(self.workload) - n} more layers')
        text.append('')
        text.append(render_table([('total', '')] + self.summary_rows()))
        if self.baseline is not None:
            text.append('')
            text.append(render_table(self.gain_rows()))
        return '\n'.join(text)

    def to_markdown(self) -> str:
        """Markdown: totals, decomposed gains, per-layer table."""
        out = [f'# Hardware report: {self.workload.name} on {self.arch.name}', '',
               '| quantity | value |', '|---|---|']
        out += [f'| {k.strip()} | {v} |' for k, v in self.summary_rows()]
        if self.baseline is not None:
            rows = self.gain_rows()
            out += ['', '## Gain, decomposed', '', '| ' + ' | '.join(rows[0]) + ' |',
                    '|' + '---|' * len(rows[0])]
            out += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
        out += ['', '## Per layer', '',
                '| layer | Sr | Sc | T | cycles | util % | MACs | energy (uJ) | compression |',
                '|---|---|---|---|---|---|---|---|---|']
        L = self.layers
        for i, lay in enumerate(self.workload.layers):
            comp = (f'd={lay.block_size} k={lay.num_codewords} {lay.n}:{lay.m}'
                    if lay.compressed else 'dense')
            out.append(f'| {lay.name} | {L["sr"][i]} | {L["sc"][i]} | {L["t"][i]} | '
                       f'{L["cycles"][i]:,} | {100 * L["utilization"][i]:.1f} | '
                       f'{L["macs"][i]:,.0f} | {L["energy_total"][i] * 1e-6:.3f} | {comp} |')
        return '\n'.join(out) + '\n'

    def write(self, directory: str | Path, formats: Iterable[str] = FORMATS,
              stem: str = 'hw_report') -> dict[str, Path]:
        """Write the report files into ``directory``.

        Args:
            directory: Output folder (created).
            formats: Any of ``json``, ``csv``, ``md``, ``png`` (per-layer cycles and energy
                breakdown plots; skipped with a warning if matplotlib is missing).
            stem: File name stem.

        Returns:
            ``{format: path}`` of the files written (``png`` -> the first plot).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        formats = list(formats)
        bad = sorted(set(formats) - set(FORMATS))
        if bad:
            raise ValueError(f'unknown report formats {bad}; allowed: {FORMATS}')
        written: dict[str, Path] = {}
        for fmt in formats:
            if fmt in _TEXT_WRITERS:
                written[fmt] = directory / f'{stem}.{fmt}'
                written[fmt].write_text(getattr(self, _TEXT_WRITERS[fmt])())
                continue
            try:  # png
                from .plots import plot_report
            except ImportError as err:  # matplotlib is optional
                logger.warning('hw: PNG plots skipped (%s)', err)
                continue
            paths = plot_report(self, directory, stem)
            if paths:
                written['png'] = paths[0]
        return written
