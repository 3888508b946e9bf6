"""What a compressed model may cost: a :class:`Budget` of size, energy and/or cycles.

Sizes are the accounted bits of :func:`~mvq_plugin.core.compression_stats` (indices, masks,
codebooks, every other parameter at 32 bits; BN statistics are not counted), given as bits or
bytes (``'1.5MiB'``, ``'900kB'``, ``1.2e6``). Energy and cycles are one inference on a
hardware preset of :mod:`mvq_plugin.hw` (``'mvq'``, ``'mvq_64x64'``, ...), given absolutely
(pJ, cycles) or as a ratio of the dense model on the ``baseline`` array of the same size
(``energy_ratio=0.5``: half the energy the uncompressed network takes on the EWS array).
Several limits may be given at once; every one must hold.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ['Budget', 'parse_bytes', 'METRICS', 'LIMIT_FIELDS']

#: The cost dimensions a budget can limit, each with the Budget fields that limit it.
LIMIT_FIELDS = {'bits': ('bits', 'bytes'), 'energy_pj': ('energy_pj', 'energy_ratio'),
                'cycles': ('cycles', 'cycles_ratio')}
METRICS = tuple(LIMIT_FIELDS)

_UNITS = {'': 1, 'b': 1, 'kb': 1e3, 'mb': 1e6, 'gb': 1e9, 'kib': 2**10, 'mib': 2**20,
          'gib': 2**30}


def parse_bytes(value: Any) -> float:
    """Bytes from a number or a string with a unit (``'1.5MiB'``, ``'900 kB'``, ``'2e6'``)."""
    if isinstance(value, bool):
        raise ValueError(f'bytes={value!r} must be a number or a size such as "1.5MiB"')
    if isinstance(value, (int, float)):
        out = float(value)
    else:
        match = re.fullmatch(r'\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*',
                             str(value))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise ValueError(f'bytes={value!r} is not a size; write a number with an optional '
                             f'unit, one of B, kB, MB, GB, KiB, MiB, GiB (e.g. "1.5MiB")')
        out = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f'bytes={value!r} must be a positive size')
    return out


def _positive(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f'Budget.{name}={value!r} must be a positive number')


@dataclass(frozen=True)
class Budget:
    """Limits on the compressed model; at least one must be given.

    Attributes:
        bits: Accounted bits.
        bytes: Accounted bytes (a number or ``'1.5MiB'``); ``bits = 8 * bytes``.
        energy_pj: Energy of one inference on ``hw`` (pJ).
        energy_ratio: Energy as a fraction of the dense model on ``baseline``.
        cycles: Cycles of one inference on ``hw``.
        cycles_ratio: Cycles as a fraction of the dense model on ``baseline``.
        hw: Array preset (``'mvq'``, ``'mvq_32x32'``...) or ``ArrayConfig`` fields as a dict.
        baseline: The array the dense model runs on for the ratios.
        input_shape: ``(batch, C, H, W)`` of the costed inference (needed for energy/cycles).
    """

    bits: float | None = None
    bytes: Any = None
    energy_pj: float | None = None
    energy_ratio: float | None = None
    cycles: float | None = None
    cycles_ratio: float | None = None
    hw: Any = 'mvq'
    baseline: Any = 'ews'
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ('bits', 'energy_pj', 'energy_ratio', 'cycles', 'cycles_ratio'):
            _positive(name, getattr(self, name))
        if self.bits is not None and self.bytes is not None:
            raise ValueError(f'Budget: give bits={self.bits!r} or bytes={self.bytes!r}, '
                             'not both')
        for a, b in (('energy_pj', 'energy_ratio'), ('cycles', 'cycles_ratio')):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ValueError(f'Budget: give {a} or {b}, not both')
        if self.bytes is not None:
            parse_bytes(self.bytes)
        if not self.wants_size and not self.wants_hw:
            raise ValueError('Budget needs at least one limit: bits, bytes, energy_pj, '
                             'energy_ratio, cycles or cycles_ratio')
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                     for s in shape):
                raise ValueError(f'Budget.input_shape={self.input_shape!r} must be (batch, C, '
                                 '...) positive integers')
            object.__setattr__(self, 'input_shape', shape)
        if self.wants_hw:
            from ..hw.arch import get_arch
            get_arch(self.hw)  # names an unknown preset now, not after the measurements
            get_arch(self.baseline)

    @classmethod
    def from_any(cls, value: 'Budget | Mapping[str, Any]') -> 'Budget':
        """A budget from a :class:`Budget` or a dict of its fields (unknown keys named)."""
        if isinstance(value, Budget):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f'budget={value!r} must be a Budget or a dict such as '
                             "dict(bytes='1.5MiB') or dict(energy_ratio=0.5, hw='mvq')")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f'budget has unknown key(s) {unknown}; allowed: {known}')
        return cls(**dict(value))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The limited :data:`METRICS`, in their order."""
        return tuple(m for m, names in LIMIT_FIELDS.items()
                     if any(getattr(self, f) is not None for f in names))

    @property
    def wants_size(self) -> bool:
        """Whether bits are limited."""
        return 'bits' in self.metrics

    @property
    def wants_hw(self) -> bool:
        """Whether energy or cycles are limited (the hardware model is needed)."""
        return any(m != 'bits' for m in self.metrics)

    def limits(self, dense: Mapping[str, float] | None = None) -> dict[str, float]:
        """``{metric: limit}`` in :data:`METRICS` units.

        Args:
            dense: The dense model's ``energy_pj``/``cycles`` on :attr:`baseline` (needed for
                the ratios).
        """
        out: dict[str, float] = {}
        if self.bits is not None:
            out['bits'] = float(self.bits)
        elif self.bytes is not None:
            out['bits'] = 8 * parse_bytes(self.bytes)
        for metric, absolute, ratio in (('energy_pj', self.energy_pj, self.energy_ratio),
                                        ('cycles', self.cycles, self.cycles_ratio)):
            if absolute is not None:
                out[metric] = float(absolute)
            elif ratio is not None:
                if dense is None or metric not in dense:
                    raise ValueError(f'Budget: a {metric} ratio needs the dense cost')
                out[metric] = ratio * float(dense[metric])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields that were given."""
        out = asdict(self)
        if not self.wants_hw:
            out.pop('hw'), out.pop('baseline')
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items()
                if v is not None}
