"""What each choice costs each layer: accounted bits, and energy/cycles on the hardware model.

Every cost is additive over layers: bits by :func:`~mvq_plugin.core.bits.layer_bits` (the
accounting rule), energy and cycles by :func:`~mvq_plugin.hw.cost.layer_costs`, which costs
each layer on its own (layers run one after another; a module called twice is summed). What
no choice changes (biases, BN, layers the base plan keeps dense) is the fixed part, so
``fixed + sum of the chosen layer costs`` is the model's cost, exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from torch import nn

from ..core.bits import layer_bits
from ..core.config import LayerConfig
from .budget import METRICS
from .choices import Choice

__all__ = ['LayerCosts', 'CostModel', 'model_params']


def model_params(model: nn.Module) -> int:
    """Parameters of a dense model (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def choice_bits(numel: int, choice: Choice) -> int:
    """Accounted bits of one layer's weight under ``choice`` (32 per weight when dense)."""
    if choice.dense:
        return 32 * numel
    return layer_bits(numel, d=choice.block_size, k=choice.num_codewords, n=choice.n,
                      m=choice.m, codebook_bits=choice.codebook_bits,
                      prunes=choice.prunes).total


@dataclass
class LayerCosts:
    """One layer's choices and their costs.

    Attributes:
        name: Module name.
        numel: Weight elements.
        choices: The admissible choices.
        costs: ``{metric: (len(choices),) array}``.
    """

    name: str
    numel: int
    choices: list[Choice]
    costs: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class CostModel:
    """Per-layer cost tables and the fixed part of a model.

    Attributes:
        layers: One :class:`LayerCosts` per candidate layer.
        fixed: ``{metric: cost no choice changes}``.
        dense: ``{metric: the dense model's cost}`` (energy/cycles on the baseline array).
        metrics: The metrics costed, in :data:`~.budget.METRICS` order.
    """

    layers: list[LayerCosts]
    fixed: dict[str, float]
    dense: dict[str, float]
    metrics: tuple[str, ...]

    @classmethod
    def build(cls, model: nn.Module, candidates: Mapping[str, Sequence[Choice]],
              metrics: Sequence[str], *, hw: Any = 'mvq', baseline: Any = 'ews',
              input_shape: Sequence[int] | None = None,
              forward_fn: Callable | None = None,
              vector_axis: str | None = None) -> 'CostModel':
        """Costs every candidate layer under each of its choices.

        Args:
            model: The dense model.
            candidates: ``{layer name: admissible choices}``.
            metrics: A subset of :data:`~.budget.METRICS`.
            hw: Array the compressed model runs on (energy/cycles).
            baseline: Array of the dense reference (the ratios' denominator).
            input_shape: ``(batch, C, H, W)`` of one inference (energy/cycles).
            forward_fn: ``forward_fn(model, inputs)`` for the trace.
            vector_axis: The sub-vector layout of choices that name none (the base config's;
                ``None``: ``MVQConfig``'s default): it decides the sparse tile a layer maps to.
        """
        metrics = tuple(m for m in METRICS if m in metrics)
        layers = [LayerCosts(name, model.get_submodule(name).weight.numel(), list(choices))
                  for name, choices in candidates.items()]
        numel = sum(lc.numel for lc in layers)
        fixed: dict[str, float] = {}
        dense: dict[str, float] = {'bits': 32.0 * model_params(model)}
        if 'bits' in metrics:
            fixed['bits'] = dense['bits'] - 32.0 * numel
            for lc in layers:
                lc.costs['bits'] = np.array([choice_bits(lc.numel, c) for c in lc.choices],
                                            dtype=np.float64)
        hw_metrics = [m for m in metrics if m != 'bits']
        if hw_metrics:
            if input_shape is None:
                raise ValueError('an energy or cycles budget needs input_shape=(batch, C, H, W) '
                                 'of one inference')
            _hw_costs(model, layers, hw_metrics, hw, baseline, input_shape, forward_fn, fixed,
                      dense, vector_axis or LayerConfig().vector_axis)
        return cls(layers, fixed, dense, metrics)

    def total(self, picks: Sequence[int]) -> dict[str, float]:
        """``{metric: fixed + sum of the picked choices' costs}`` (one index per layer)."""
        return {m: self.fixed[m] + float(sum(lc.costs[m][i] for lc, i in zip(self.layers, picks)))
                for m in self.metrics}

    def smallest(self) -> dict[str, float]:
        """``{metric: the least cost any plan reaches}`` (each metric on its own)."""
        return {m: self.fixed[m] + float(sum(lc.costs[m].min() for lc in self.layers))
                for m in self.metrics}


_HW_KEYS = {'energy_pj': 'energy_total', 'cycles': 'cycles'}


def _hw_costs(model, layers: list[LayerCosts], metrics: list[str], hw, baseline, input_shape,
              forward_fn, fixed: dict, dense: dict, vector_axis: str | None = None) -> None:
    from ..hw.arch import get_arch
    from ..hw.cost import layer_costs
    from ..hw.estimator import cost_workload
    from ..hw.tables import load_table
    from ..hw.tracing import extract_workload

    workload = extract_workload(model, input_shape, forward_fn=forward_fn).dense()
    arch, table = get_arch(hw), load_table(None)
    base_report = cost_workload(workload, get_arch(baseline), table)
    dense['energy_pj'], dense['cycles'] = base_report.energy_pj, float(base_report.cycles)
    owner = [lay.name.split('#')[0] for lay in workload.layers]
    index = {lc.name: i for i, lc in enumerate(layers)}

    def per_layer(wl) -> dict[str, np.ndarray]:
        costs = layer_costs(wl, arch, table)
        return {m: np.asarray(costs[_HW_KEYS[m]], dtype=np.float64) for m in metrics}

    plain = per_layer(workload)
    for m in metrics:
        fixed[m] = float(sum(v for v, o in zip(plain[m], owner) if o not in index))
        for lc in layers:
            lc.costs[m] = np.zeros(len(lc.choices))
    distinct = list(dict.fromkeys(c for lc in layers for c in lc.choices))
    for choice in distinct:
        takers = {lc.name for lc in layers if choice in lc.choices}
        if choice.dense:
            costs = plain
        else:
            fields = dict(compressed=True, block_size=choice.block_size,
                          num_codewords=choice.num_codewords,
                          n=choice.n if choice.prunes else choice.m, m=choice.m,
                          method=choice.method, source='plan',
                          vector_axis=choice.vector_axis or vector_axis)
            wl = replace(workload, layers=[replace(lay, **fields) if o in takers else lay
                                           for lay, o in zip(workload.layers, owner)])
            costs = per_layer(wl)
        for m in metrics:
            for j, o in enumerate(owner):
                if o in takers:
                    lc = layers[index[o]]
                    lc.costs[m][lc.choices.index(choice)] += costs[m][j]
