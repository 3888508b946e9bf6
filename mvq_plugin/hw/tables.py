"""Energy and area tables (YAML with units and provenance) and technology scaling.

The default table, ``mvq_plugin/hw/tables/default.yaml``, gives per-operation and per-bit
energies (pJ) and per-component areas (um^2) at 45 nm with their sources, and scales them to
the requested node (default 40 nm)::

    energy(node) = energy(45 nm) * (node / 45) ** energy_exponent   (entries with scale: true)
    area(node)   = area(45 nm)   * (node / 45) ** area_exponent

Built-in tables (:data:`BUILTIN_TABLES`, passed by name): ``default`` (Horowitz/Eyeriss at
45 nm, the earlier calibration) and ``paper-40nm`` (the paper's Table 8 access energies in
units of one MAC, times ``energy_unit_pj``, the pJ of that MAC). A table with
``energy_unit_pj`` gives its energies in those units. Users pass their own YAML path or dict
with the same keys.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ['CostTable', 'load_table', 'DEFAULT_TABLE', 'BUILTIN_TABLES']

DEFAULT_TABLE = Path(__file__).parent / 'tables' / 'default.yaml'
#: ``{name: path}`` of the tables shipped with the package.
BUILTIN_TABLES = {'default': DEFAULT_TABLE,
                  'paper-40nm': Path(__file__).parent / 'tables' / 'paper-40nm.yaml'}

ENERGY_KEYS = ('mult_int8', 'add_int32', 'add_int8', 'mux2_bit', 'register_bit', 'rf_bit',
               'sram_bit', 'dram_bit')
AREA_KEYS = ('mult_int8', 'add_int32', 'add_int16', 'register_bit', 'mux2_bit', 'sram_bit')
#: Optional energy keys and the key each falls back to: the register files of the EWS array
#: (weight, activation, psum, codebook) and one LZC encode of a ``d``-bit mask.
OPTIONAL_ENERGY = {'wrf_bit': 'rf_bit', 'arf_bit': 'rf_bit', 'prf_bit': 'rf_bit',
                   'crf_bit': 'rf_bit', 'lzc': None}
#: Optional area keys (um^2; 0 when absent): one LZC, the array controller.
OPTIONAL_AREA = ('lzc', 'controller')


@dataclass(frozen=True)
class CostTable:
    """Energies (pJ) and areas (um^2) at one technology node.

    Attributes:
        name: Table name.
        node_nm: Node the values are scaled to.
        energy: ``{key: pJ}`` (``sram_bit`` excluded: see :meth:`sram_bit_energy`).
        area: ``{key: um^2}``.
        sram_points_kb: SRAM sizes (KiB) of the SRAM energy points.
        sram_values: pJ/bit at those sizes (already scaled).
        provenance: ``{key: source}`` for every entry.
    """

    name: str
    node_nm: float
    energy: dict[str, float]
    area: dict[str, float]
    sram_points_kb: tuple[float, ...]
    sram_values: tuple[float, ...]
    provenance: dict[str, str] = field(default_factory=dict)

    def sram_bit_energy(self, size_kb: float) -> float:
        """pJ per bit of an SRAM of ``size_kb`` KiB.

        Log-log interpolation between the table points,
        ``log e = interp(log size, log points, log values)``, clamped at both ends.
        """
        x = np.log(np.asarray(self.sram_points_kb, dtype=float))
        y = np.log(np.asarray(self.sram_values, dtype=float))
        return float(np.exp(np.interp(math.log(max(size_kb, 1e-9)), x, y)))

    @property
    def mac_int8(self) -> float:
        """One 8-bit MAC: 8b multiply plus 32b accumulate (pJ)."""
        return self.energy['mult_int8'] + self.energy['add_int32']

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return dict(name=self.name, node_nm=self.node_nm, energy_pj=dict(self.energy),
                    mac_pj=self.mac_int8,
                    area_um2=dict(self.area), sram_points_kb=list(self.sram_points_kb),
                    sram_pj_per_bit=list(self.sram_values))


def _value(section: dict, key: str, where: str) -> tuple[float, bool, str]:
    if key not in section:
        raise ValueError(f'cost table {where} is missing {key!r}; required: '
                         f'{ENERGY_KEYS if where == "energy" else AREA_KEYS}')
    entry = section[key]
    if isinstance(entry, dict):
        value, scale, prov = entry.get('value'), entry.get('scale', True), entry.get(
            'provenance', '')
    else:
        value, scale, prov = entry, True, ''
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f'cost table {where}.{key}={value!r} must be a number >= 0')
    return float(value), bool(scale), str(prov)


def load_table(table: 'str | Path | dict | CostTable | None' = None,
               node_nm: float | None = None) -> CostTable:
    """Load a cost table and scale it to ``node_nm``.

    Args:
        table: A built-in table's name (:data:`BUILTIN_TABLES`), a YAML path, an
            already-parsed dict, a :class:`CostTable` (returned as is) or ``None`` for the
            default table.
        node_nm: Target node in nm (default: the table's ``default_node_nm``).

    Returns:
        The scaled table.
    """
    if isinstance(table, CostTable):
        return table
    if table is None or isinstance(table, (str, Path)):
        import yaml
        if isinstance(table, str) and table in BUILTIN_TABLES:
            table = BUILTIN_TABLES[table]
        path = Path(table) if table is not None else DEFAULT_TABLE
        if not path.is_file():
            raise ValueError(f'cost table {str(table)!r} is neither a built-in table '
                             f'{sorted(BUILTIN_TABLES)} nor a file')
        with open(path) as f:
            raw = yaml.safe_load(f)
    elif isinstance(table, dict):
        raw = table
    else:
        raise ValueError(f'table must be a path, dict, CostTable or None, got '
                         f'{type(table).__name__}')
    ref = float(raw.get('reference_node_nm', 45))
    node = float(node_nm if node_nm is not None else raw.get('default_node_nm', ref))
    if not 1 <= node <= 1000:
        raise ValueError(f'node_nm={node} must be in [1, 1000]')
    scaling = raw.get('scaling', {})
    e_scale = (node / ref) ** float(scaling.get('energy_exponent', 1.0))
    unit = raw.get('energy_unit_pj', 1.0)
    if isinstance(unit, bool) or not isinstance(unit, (int, float)) or unit <= 0:
        raise ValueError(f'cost table energy_unit_pj={unit!r} must be a number > 0 (pJ)')
    unit = float(unit)
    a_scale = (node / ref) ** float(scaling.get('area_exponent', 2.0))
    energy_raw, area_raw = raw.get('energy', {}), raw.get('area', {})
    energy, area, prov = {}, {}, {}
    for key in ENERGY_KEYS:
        if key == 'sram_bit':
            continue
        value, scale, source = _value(energy_raw, key, 'energy')
        energy[key] = value * unit * (e_scale if scale else 1.0)
        prov[f'energy.{key}'] = source
    for key, fallback in OPTIONAL_ENERGY.items():
        if key in energy_raw:
            value, scale, source = _value(energy_raw, key, 'energy')
            energy[key] = value * unit * (e_scale if scale else 1.0)
            prov[f'energy.{key}'] = source
        else:
            energy[key] = energy[fallback] if fallback else 0.0
            prov[f'energy.{key}'] = f'= {fallback}' if fallback else 'absent: 0'
    for key in AREA_KEYS + OPTIONAL_AREA:
        if key in OPTIONAL_AREA and key not in area_raw:
            area[key], prov[f'area.{key}'] = 0.0, 'absent: 0'
            continue
        value, scale, source = _value(area_raw, key, 'area')
        area[key] = value * (a_scale if scale else 1.0)
        prov[f'area.{key}'] = source
    sram = energy_raw.get('sram_bit')
    if not isinstance(sram, dict) or 'points_kb' not in sram or 'values' not in sram:
        raise ValueError('cost table energy.sram_bit needs points_kb and values lists')
    points, values = list(sram['points_kb']), list(sram['values'])
    if len(points) != len(values) or not points or sorted(points) != points:
        raise ValueError(f'energy.sram_bit points_kb={points} must be ascending and as long '
                         f'as values={values}')
    s = unit * (e_scale if sram.get('scale', True) else 1.0)
    prov['energy.sram_bit'] = str(sram.get('provenance', ''))
    return CostTable(name=str(raw.get('name', 'custom')), node_nm=node, energy=energy,
                     area=area, sram_points_kb=tuple(float(p) for p in points),
                     sram_values=tuple(float(v) * s for v in values), provenance=prov)
