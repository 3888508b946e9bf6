"""``allocate(model, budget, ...)``: per-layer MVQ settings chosen for a size, energy or
latency target.

Three steps, each its own module: the admissible choices of every layer
(:mod:`.choices`, filtered by :func:`~mvq_plugin.core.plan.plan`), their costs
(:mod:`.costs`: accounted bits, energy and cycles on the hardware model) and their measured
distortion (:mod:`.sensitivity`); then the exact solver (:mod:`.solver`). The result is an
:class:`Allocation`: the chosen settings as the ``exclude``/``overrides`` a config carries,
the :class:`~mvq_plugin.core.plan.Plan` they produce, and the predicted costs, which
:meth:`Allocation.check` compares with what a compressed model really costs.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from torch import nn

from ..core.allocation_plan import with_allocation
from ..core.config import MVQConfig
from ..core.parametrize import quantized_layers
from ..core.plan import Plan, plan
from ..core.presets import config_from
from ..core.table import render_table
from .budget import Budget
from .choices import DENSE, Choice, ChoiceSpace
from .costs import CostModel
from .sensitivity import SensitivityCache, measure_sensitivity
from .solver import solve

__all__ = ['allocate', 'Allocation', 'layer_choices', 'realised_costs']


def layer_choices(model: nn.Module, space: ChoiceSpace, base: MVQConfig, *,
                  first_conv: str | Sequence[str] | None = None) -> dict[str, list[Choice]]:
    """``{layer: admissible choices}`` for every layer some choice can compress.

    Each choice is planned with the base's other rules (``exclude``, ``skip_first_conv``,
    ``min_params``...; its own per-layer ``overrides`` give way to the allocation): a layer
    is a candidate with the choices :func:`plan` admits for it (and ``dense`` when the space
    allows it). A layer no choice can compress (excluded, first conv, depthwise...) is not a
    candidate and stays dense.
    """
    admitted: dict[str, list[Choice]] = {}
    for choice in space.choices:
        trial = dataclasses.replace(base, **choice.fields(), overrides={}, type_overrides={})
        for lp in plan(model, trial, first_conv=first_conv).compressed:
            admitted.setdefault(lp.name, []).append(choice)
    if not admitted:
        raise ValueError(f'no layer of {type(model).__name__} admits any of the choices '
                         f'{space!r} (check block_size against the input channels and k '
                         'against the sub-vector counts)')
    order = [name for name, _ in model.named_modules() if name in admitted]
    return {name: ([DENSE] if space.dense else []) + admitted[name] for name in order}


@dataclass
class Allocation:
    """The chosen settings and what they are predicted to cost.

    Attributes:
        choices: ``{layer: Choice}`` for every candidate layer.
        budget: The budget solved for.
        limits: ``{metric: limit}`` it meant.
        predicted: ``{metric: cost}`` of the chosen plan (additive model, exact for bits).
        smallest: ``{metric: the least any plan reaches}``.
        dense: ``{metric: the dense model's cost}`` (energy/cycles on the baseline array).
        distortion: Sum of the chosen layers' measured distortions.
        sensitivity: ``{layer: {choice label: distortion}}``.
        costs: ``{layer: {choice label: {metric: cost}}}``.
        base: The base settings the choices refine.
        plan: The :class:`Plan` of :meth:`config` on the model.
        info: Measurement and solver statistics (``measured``, ``reused``, seconds).
    """

    choices: dict[str, Choice]
    budget: Budget
    limits: dict[str, float]
    predicted: dict[str, float]
    smallest: dict[str, float]
    dense: dict[str, float]
    distortion: float
    sensitivity: dict[str, dict[str, float]]
    costs: dict[str, dict[str, dict[str, float]]]
    base: MVQConfig
    plan: Plan | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def exclude(self) -> list[str]:
        """Anchored patterns of the layers chosen dense (``MVQConfig.exclude``)."""
        return [f'^{re.escape(n)}$' for n, c in self.choices.items() if c.dense]

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        """``{re.escape(layer): fields}`` of every compressed layer (``MVQConfig.overrides``)."""
        return {re.escape(n): c.fields() for n, c in self.choices.items() if not c.dense}

    def config(self, base: MVQConfig | None = None) -> MVQConfig:
        """``base`` (default: the one allocated with) with this plan's exclude and overrides.

        The allocation's rules come after the base's, so they win.
        """
        return with_allocation(base or self.base, self)

    def check(self, model: nn.Module, **hw_kwargs: Any) -> dict[str, float]:
        """The realised costs of a model compressed with :meth:`config` (see
        :func:`realised_costs`), raising if a limit is exceeded."""
        realised = realised_costs(model, self.limits, hw=self.budget.hw,
                                  input_shape=self.budget.input_shape, **hw_kwargs)
        over = {m: v for m, v in realised.items() if v > self.limits[m] * (1 + 1e-9)}
        if over:
            raise ValueError(f'the compressed model exceeds its budget: {over} > '
                             f'{ {m: self.limits[m] for m in over} }')
        return realised

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready record per candidate layer."""
        out = []
        for name, choice in self.choices.items():
            out.append(dict(name=name, choice=choice.label, **choice.to_dict(),
                            distortion=self.sensitivity[name][choice.label],
                            **self.costs[name][choice.label]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (what ``tools/allocate.py --out`` writes)."""
        return dict(budget=self.budget.to_dict(), limits=self.limits, predicted=self.predicted,
                    smallest=self.smallest, dense=self.dense, distortion=self.distortion,
                    exclude=self.exclude, overrides=self.overrides, layers=self.records(),
                    info=self.info)

    def __str__(self) -> str:
        metrics = list(self.predicted)
        rows = [('layer', 'choice', 'distortion', *metrics)]
        for rec in self.records():
            rows.append((rec['name'], rec['choice'], f'{rec["distortion"]:.3e}',
                         *[f'{rec[m]:,.0f}' for m in metrics]))
        lines = [render_table(rows)]
        for m in metrics:
            lines.append(f'{m}: predicted {self.predicted[m]:,.0f} <= limit {self.limits[m]:,.0f}'
                         f' (smallest reachable {self.smallest[m]:,.0f}, dense '
                         f'{self.dense.get(m, float("nan")):,.0f})')
        lines.append(f'total distortion {self.distortion:.4e} over {len(self.choices)} layers '
                     f'({sum(c.dense for c in self.choices.values())} dense)')
        return '\n'.join(lines)


def realised_costs(model: nn.Module, metrics: Iterable[str], *, hw: Any = 'mvq',
                   input_shape: Sequence[int] | None = None,
                   forward_fn: Callable | None = None) -> dict[str, float]:
    """What a compressed model costs: accounted bits, and energy/cycles on ``hw`` for one
    inference of ``input_shape``.

    Bits come from :func:`~mvq_plugin.core.compression_stats`; energy and cycles from
    :func:`mvq_plugin.hw.estimate` of the compressed model (its real masks and the codewords
    it really uses).
    """
    from ..core.accounting import compression_stats

    metrics = list(metrics)
    out: dict[str, float] = {}
    if 'bits' in metrics:
        out['bits'] = float(compression_stats(model).bits)
    if any(m != 'bits' for m in metrics):
        from ..hw.estimator import estimate
        report = estimate(model, input_shape, arch=hw, forward_fn=forward_fn)
        if 'energy_pj' in metrics:
            out['energy_pj'] = report.energy_pj
        if 'cycles' in metrics:
            out['cycles'] = float(report.cycles)
    return out


def allocate(model: nn.Module, budget: Budget | Mapping[str, Any], *,
             choices: ChoiceSpace | Mapping[str, Any] | None = None,
             calib: Iterable[Any] | None = None, objective: str | Callable = 'output',
             base: MVQConfig | Mapping[str, Any] | None = None,
             forward_fn: Callable | None = None,
             cache: SensitivityCache | str | None = None,
             first_conv: str | Sequence[str] | None = None, backend: str = 'auto',
             progress: Callable[[int, int, str], None] | None = None) -> Allocation:
    """Chooses per-layer MVQ settings with the least measured distortion within ``budget``.

    Args:
        model: The dense model (any ``nn.Module``; unchanged on return).
        budget: A :class:`Budget` or its fields, e.g. ``dict(bytes='1.5MiB')``,
            ``dict(energy_ratio=0.5, hw='mvq_64x64', input_shape=(1, 3, 224, 224))``.
        choices: The :class:`ChoiceSpace` (or its arguments) each layer chooses from.
        calib: Calibration batches the distortion is measured on (``forward_fn(model, b)``).
        objective: ``'output'``, ``'kl'`` or a callable (see
            :func:`~.sensitivity.measure_sensitivity`).
        base: The other settings (importance, k-means iterations, exclude, seed...); its plan
            decides which layers are candidates.
        forward_fn: ``forward_fn(model, batch)``; default ``model(batch)``.
        cache: A :class:`SensitivityCache` or a JSON path: measurements another budget
            already made are reused.
        first_conv: Input conv(s) ``skip_first_conv`` keeps dense (see :func:`plan`).
        backend: k-means search backend.
        progress: ``progress(i, total, layer)`` during the measurements.

    Returns:
        The :class:`Allocation`.

    Raises:
        InfeasibleBudget: No plan meets the budget (the smallest reachable cost is named).
    """
    budget = Budget.from_any(budget)
    space = ChoiceSpace.from_any(choices)
    if base is None:
        base = MVQConfig()
    elif not isinstance(base, MVQConfig):
        base = config_from(dict(base))
    if quantized_layers(model):
        raise ValueError('allocate needs the dense model; this one already has MVQ layers '
                         f'({list(quantized_layers(model))[:3]}...)')
    if calib is None:
        raise ValueError('allocate measures each choice on calibration data: pass calib= a '
                         'few input batches')
    if not isinstance(cache, SensitivityCache):
        cache = SensitivityCache(cache)
    candidates = layer_choices(model, space, base, first_conv=first_conv)
    cost_model = CostModel.build(model, candidates, budget.metrics, hw=budget.hw,
                                 baseline=budget.baseline, input_shape=budget.input_shape,
                                 forward_fn=forward_fn, vector_axis=base.vector_axis)
    limits = budget.limits(cost_model.dense)
    smallest = cost_model.smallest()
    names = list(candidates)
    # Refuse an unreachable budget before measuring anything.
    solve([np.zeros(len(candidates[n])) for n in names],
          {m: [lc.costs[m] for lc in cost_model.layers] for m in limits}, limits,
          cost_model.fixed)
    sens, info = measure_sensitivity(model, candidates, base, calib, forward_fn=forward_fn,
                                     objective=objective, cache=cache, backend=backend,
                                     progress=progress)
    picks = solve([sens[n] for n in names],
                  {m: [lc.costs[m] for lc in cost_model.layers] for m in limits}, limits,
                  cost_model.fixed)
    chosen = {n: candidates[n][p] for n, p in zip(names, picks)}
    result = Allocation(
        choices=chosen, budget=budget, limits=limits, predicted=cost_model.total(picks),
        smallest=smallest, dense=cost_model.dense,
        distortion=float(sum(sens[n][p] for n, p in zip(names, picks))),
        sensitivity={n: {c.label: float(v) for c, v in zip(candidates[n], sens[n])}
                     for n in names},
        costs={lc.name: {c.label: {m: float(lc.costs[m][j]) for m in cost_model.metrics}
                         for j, c in enumerate(lc.choices)} for lc in cost_model.layers},
        base=base, info=info)
    result.plan = plan(model, result.config(), first_conv=first_conv)
    return result
