"""Entry points: :func:`estimate`, :class:`HardwareEstimator` and :func:`ablation`.

``estimate(model_or_workload, input_shape, arch='mvq', baseline='ews')`` costs the
(compressed or planned) model on ``arch`` and, with a baseline, the dense model on the baseline
plus the decomposition (the target arch with only the sparse array, only the VQ weight stream,
both). :class:`HardwareEstimator` holds these settings for a training hook: the hook calls
``estimator.estimate(model)`` and logs ``report.scalars()`` / ``report.write(work_dir)``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from .arch import ArrayConfig, get_arch
from .cost import array_area, layer_costs
from .report import VARIANTS, HardwareReport
from .tables import CostTable, load_table
from .tile import resolve_tile
from .topology import read_topology
from .tracing import extract_workload
from .workload import Workload

__all__ = ['estimate', 'HardwareEstimator', 'ablation', 'cost_workload', 'EWS_SWITCHES']

logger = logging.getLogger('mvq_plugin')

#: The EWS register-file effects, each switchable alone (see :mod:`mvq_plugin.hw.arch`).
EWS_SWITCHES = ('weight_double_buffer', 'act_reuse', 'psum_accumulate')


def cost_workload(workload: Workload, arch: ArrayConfig,
                  table: 'CostTable | str | None' = None) -> HardwareReport:
    """Cost one workload on one array (no baseline); ``table=None``: the arch's own
    ``cost_table``. A ``sparse_tile='auto'`` array costs each layer on its own layout's tile
    and is reported (area, label) with the tile of most of the compressed weights."""
    tab = load_table(arch.cost_table if table is None else table)
    costs = layer_costs(workload, arch, tab)
    arch = resolve_tile(workload, arch)
    return HardwareReport(workload, arch, tab, costs, array_area(arch, tab))


def _as_workload(model_or_workload: Any, input_shape: Sequence[int] | None, plan: Any,
                 forward_fn: Callable | None) -> Workload:
    if isinstance(model_or_workload, Workload):
        return model_or_workload
    if isinstance(model_or_workload, (str, Path)):
        return read_topology(model_or_workload)
    if input_shape is None:
        raise ValueError('estimate(model) needs input_shape=(batch, C, H, W)')
    return extract_workload(model_or_workload, input_shape, plan=plan, forward_fn=forward_fn)


def estimate(model_or_workload: Any, input_shape: Sequence[int] | None = None,
             arch: 'str | ArrayConfig | dict' = 'mvq', *,
             baseline: 'str | ArrayConfig | dict | None' = None,
             table: 'str | Path | dict | CostTable | None' = None,
             node_nm: float | None = None, plan: Any = None, decompose: bool = True,
             forward_fn: Callable | None = None, **arch_overrides: Any) -> HardwareReport:
    """Estimate cycles, energy and area of a network on an accelerator.

    Args:
        model_or_workload: An ``nn.Module`` (traced with ``input_shape``), a
            :class:`Workload`, or a SCALE-Sim topology CSV path.
        input_shape: ``(batch, C, H, W)`` for a module (ignored for workloads).
        arch: ``'ws'``, ``'ews'``, ``'mvq'``, a dict or an :class:`ArrayConfig`.
        baseline: Architecture the dense network runs on for comparison (e.g. ``'ews'``);
            ``None``: no comparison.
        table: Energy/area table (a built-in name, a YAML path, a dict or a
            :class:`CostTable`; default: the arch's ``cost_table``) and ``node_nm``.
        node_nm: Technology node the table is scaled to.
        plan: A :class:`~mvq_plugin.core.Plan` of a model not yet compressed.
        decompose: With a baseline, also cost the sparsity-only and VQ-only variants.
        forward_fn: ``forward_fn(model, inputs)`` for models that need a special call.
        **arch_overrides: ArrayConfig fields applied to ``arch`` and ``baseline`` alike
            (e.g. ``rows=32, cols=32``).

    Returns:
        A :class:`HardwareReport`; ``report.baseline`` / ``report.variants`` when compared.
    """
    workload = _as_workload(model_or_workload, input_shape, plan, forward_fn)
    target = get_arch(arch, **arch_overrides)
    tab = load_table(target.cost_table if table is None else table, node_nm)
    report = cost_workload(workload, target, tab)
    if baseline is None:
        return report
    base_arch = get_arch(baseline, **arch_overrides)
    report.baseline = cost_workload(workload.dense(), base_arch, tab)
    if decompose and (target.sparse_compute or target.vq_weights):
        for name, sparse, vq in VARIANTS:
            variant = replace(target, name=f'{target.name}[{name}]', sparse_compute=sparse,
                              vq_weights=vq)
            report.variants[name] = (report if (sparse, vq) == (target.sparse_compute,
                                                                  target.vq_weights)
                                     else cost_workload(workload, variant, tab))
    return report


def ablation(workload: Workload, base: 'str | ArrayConfig' = 'ws',
             switches: Sequence[str] = EWS_SWITCHES, table: Any = None,
             node_nm: float | None = None, **overrides: Any) -> dict[str, HardwareReport]:
    """Turn each boolean switch on alone over ``base`` (then all together).

    Args:
        workload: The network.
        base: Starting architecture.
        switches: Boolean ArrayConfig fields.
        table: Energy/area table.
        node_nm: Node.
        **overrides: ArrayConfig fields applied to every variant.

    Returns:
        ``{'base': ..., switch: ..., 'all': ...}`` reports.
    """
    arch = get_arch(base, **overrides)
    tab = load_table(arch.cost_table if table is None else table, node_nm)
    out = {'base': cost_workload(workload, arch, tab)}
    for sw in switches:
        if not isinstance(getattr(arch, sw, None), bool):
            raise ValueError(f'ablation switch {sw!r} is not a boolean ArrayConfig field')
        out[sw] = cost_workload(workload, replace(arch, name=f'{arch.name}+{sw}',
                                                  **{sw: True}), tab)
    out['all'] = cost_workload(workload, replace(arch, name=f'{arch.name}+all',
                                                 **{sw: True for sw in switches}), tab)
    return out


@dataclass
class HardwareEstimator:
    """Settings for repeated estimates (what a training hook holds).

    Attributes:
        arch: Target architecture for the (planned or compressed) model.
        input_shape: ``(batch, C, H, W)`` traced.
        baseline: Architecture of the dense comparison (``None``: none).
        table: Energy/area table (path, dict, CostTable or ``None`` for the default).
        node_nm: Technology node.
        decompose: Report sparsity-only / VQ-only / both.
        arch_overrides: ArrayConfig fields applied to arch and baseline (e.g. rows, cols).
        forward_fn: ``forward_fn(model, inputs)`` for models needing a special call.
    """

    arch: 'str | ArrayConfig | dict' = 'mvq'
    input_shape: Sequence[int] = (1, 3, 224, 224)
    baseline: 'str | ArrayConfig | dict | None' = 'ews'
    table: Any = None
    node_nm: float | None = None
    decompose: bool = True
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    forward_fn: Callable | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if len(shape) < 2 or any(not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f'HardwareEstimator.input_shape={shape!r} must be (batch, C, ...) '
                             f'positive integers')
        self.input_shape = shape
        # Validate early: a bad preset or field fails at construction, not mid-training.
        get_arch(self.arch, **self.arch_overrides)
        if self.baseline is not None:
            get_arch(self.baseline, **self.arch_overrides)
        arch = get_arch(self.arch, **self.arch_overrides)
        self._table = load_table(arch.cost_table if self.table is None else self.table,
                                 self.node_nm)

    def estimate(self, model: Any, plan: Any = None) -> HardwareReport:
        """Report for ``model`` (compressed layers detected; ``plan`` for planned ones)."""
        workload = extract_workload(model, self.input_shape, plan=plan,
                                    forward_fn=self.forward_fn)
        return estimate(workload, arch=self.arch, baseline=self.baseline, table=self._table,
                        decompose=self.decompose, **self.arch_overrides)

    __call__ = estimate

    def estimate_workload(self, workload: Workload) -> HardwareReport:
        """Report for an already-extracted workload."""
        return estimate(workload, arch=self.arch, baseline=self.baseline, table=self._table,
                        decompose=self.decompose, **self.arch_overrides)
