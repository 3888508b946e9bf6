"""The budgeted choice, solved exactly: a multiple-choice knapsack as a 0/1 integer program.

Variables ``x[l, c]`` (layer ``l`` takes choice ``c``); minimise ``sum D[l, c] x[l, c]``
subject to ``sum_c x[l, c] = 1`` per layer and ``sum C_b[l, c] x[l, c] <= B_b - fixed_b`` per
budget ``b``. SciPy's ``milp`` (HiGHS, branch and bound, ``mip_rel_gap=0``) solves it to
proven optimality. An integer program rather than a dynamic program because the budgets are
several at once (bits, energy, cycles) and real-valued (pJ): a DP over a cost grid would have
to round the costs, and its table grows with the product of the budget grids. The solution is
checked against the budgets in exact arithmetic; a solver tolerance that lets a budget slip
tightens that row and solves again.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ['solve', 'InfeasibleBudget']


class InfeasibleBudget(ValueError):
    """No choice of settings meets the budget; the message names the smallest reachable cost."""


def _fmt(metric: str, value: float) -> str:
    if metric == 'bits':
        return f'{value:,.0f} bits ({value / 8 / 2**20:.4f} MiB)'
    if metric == 'energy_pj':
        return f'{value * 1e-6:,.3f} uJ'
    return f'{value:,.0f} cycles'


def solve(distortion: Sequence[np.ndarray], costs: Mapping[str, Sequence[np.ndarray]],
          limits: Mapping[str, float], fixed: Mapping[str, float] | None = None
          ) -> list[int]:
    """The choice per layer minimising total distortion within every limit.

    Args:
        distortion: Per layer, ``(choices,)`` distortions (lower is better).
        costs: ``{metric: per layer (choices,) costs}``.
        limits: ``{metric: the most the model may cost}``.
        fixed: ``{metric: cost outside the choices}`` (default 0).

    Returns:
        The chosen index per layer.

    Raises:
        InfeasibleBudget: A limit below the smallest reachable cost (named), or limits that
            cannot hold together.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    fixed = dict(fixed or {})
    sizes = [len(d) for d in distortion]
    if any(s == 0 for s in sizes):
        raise ValueError('every layer needs at least one choice')
    for metric, limit in limits.items():
        least = fixed.get(metric, 0.0) + sum(float(np.min(c)) for c in costs[metric])
        if least > limit:
            raise InfeasibleBudget(
                f'budget {metric} <= {_fmt(metric, limit)} cannot be met: the smallest '
                f'reachable is {_fmt(metric, least)} (every layer at its cheapest choice)')
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    obj = np.concatenate([np.asarray(d, dtype=np.float64) for d in distortion])
    one_hot = np.zeros((len(sizes), total))
    for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
        one_hot[i, a:b] = 1.0
    metrics = list(limits)
    rows = np.stack([np.concatenate([np.asarray(c, dtype=np.float64) for c in costs[m]])
                     for m in metrics]) if metrics else np.zeros((0, total))
    room = np.array([limits[m] - fixed.get(m, 0.0) for m in metrics])
    scale = np.maximum(np.abs(room), 1.0)
    # Tie-break towards cheaper plans: a tiny cost term far below any distortion difference.
    spread = np.ptp(obj) if obj.size else 0.0
    tiny = 1e-9 * (spread if spread > 0 else 1.0)
    obj = obj + tiny * (rows / scale[:, None]).sum(0) / max(len(metrics), 1)
    slack = np.zeros(len(metrics))
    for _ in range(8):
        constraints = [LinearConstraint(one_hot, 1, 1)]
        if metrics:
            constraints.append(LinearConstraint(rows / scale[:, None], -np.inf,
                                                (room - slack) / scale))
        res = milp(obj, constraints=constraints, integrality=np.ones(total),
                   bounds=Bounds(0, 1), options=dict(mip_rel_gap=0.0, disp=False))
        if res.x is None:
            raise InfeasibleBudget(
                'no plan meets every limit at once (' + ', '.join(
                    f'{m} <= {_fmt(m, limits[m])}' for m in metrics) + '); each on its own is '
                'reachable, so relax one of them')
        picks = [int(np.argmax(res.x[a:b])) for a, b in zip(offsets[:-1], offsets[1:])]
        spent = np.array([sum(float(costs[m][i][p]) for i, p in enumerate(picks))
                          for m in metrics])
        over = spent - room
        if not metrics or np.all(over <= 0):
            return picks
        slack = slack + np.maximum(over, 0) * 1.0001 + 1e-9 * scale
    raise InfeasibleBudget('the solver could not keep within the limits (numerical tolerance)')
