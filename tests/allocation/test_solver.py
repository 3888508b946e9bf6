"""The budgeted choice is the optimum: the integer program against brute force."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mvq_plugin.allocation import InfeasibleBudget, solve


def _brute_force(dist, costs, limits, fixed):
    best, best_value = None, np.inf
    for picks in itertools.product(*[range(len(d)) for d in dist]):
        ok = all(fixed.get(m, 0) + sum(costs[m][i][p] for i, p in enumerate(picks)) <= lim
                 for m, lim in limits.items())
        value = sum(d[p] for d, p in zip(dist, picks))
        if ok and value < best_value:
            best, best_value = picks, value
    return best, best_value


@pytest.mark.parametrize('seed', range(12))
def test_optimal_on_enumerable_cases(seed):
    rng = np.random.default_rng(seed)
    layers = int(rng.integers(3, 7))
    sizes = rng.integers(2, 6, size=layers)
    dist = [rng.random(s) for s in sizes]
    bits = [rng.integers(1_000, 400_000, size=s).astype(float) for s in sizes]
    energy = [rng.random(s) * 1e6 for s in sizes]  # real-valued, as pJ are
    costs = {'bits': bits, 'energy_pj': energy}
    fixed = {'bits': 12_345.0, 'energy_pj': 2.5e5}
    lo = {m: fixed[m] + sum(c.min() for c in costs[m]) for m in costs}
    hi = {m: fixed[m] + sum(c.max() for c in costs[m]) for m in costs}
    frac = rng.uniform(0.2, 0.8, size=2)
    limits = {m: lo[m] + f * (hi[m] - lo[m]) for m, f in zip(costs, frac)}
    if seed % 3 == 0:
        limits.pop('energy_pj')  # one budget alone too
    best, best_value = _brute_force(dist, costs, limits, fixed)
    if best is None:
        with pytest.raises(InfeasibleBudget):
            solve(dist, costs, limits, fixed)
        return
    picks = solve(dist, costs, limits, fixed)
    value = sum(d[p] for d, p in zip(dist, picks))
    assert value == pytest.approx(best_value, rel=1e-9, abs=1e-12)
    for m, lim in limits.items():
        assert fixed[m] + sum(costs[m][i][p] for i, p in enumerate(picks)) <= lim


def test_a_budget_below_the_cheapest_plan_names_the_smallest_reachable_cost():
    dist = [np.array([0.0, 1.0]), np.array([0.0, 2.0])]
    costs = {'bits': [np.array([800.0, 80.0]), np.array([1600.0, 160.0])]}
    with pytest.raises(InfeasibleBudget, match=r'smallest reachable is 1,240 bits'):
        solve(dist, costs, {'bits': 1000.0}, {'bits': 1000.0})


def test_limits_each_reachable_but_not_together_are_refused():
    dist = [np.array([0.0, 1.0])]
    costs = {'bits': [np.array([10.0, 1.0])], 'cycles': [np.array([1.0, 10.0])]}
    with pytest.raises(InfeasibleBudget, match='no plan meets every limit at once'):
        solve(dist, costs, {'bits': 5.0, 'cycles': 5.0})


def test_a_generous_budget_takes_the_least_distortion():
    dist = [np.array([0.3, 0.0, 0.1]), np.array([0.0, 0.2])]
    costs = {'bits': [np.array([1.0, 3.0, 2.0]), np.array([5.0, 1.0])]}
    assert solve(dist, costs, {'bits': 100.0}) == [1, 0]
    assert solve(dist, costs, {'bits': 4.0}) == [1, 1]  # 0.2: the best of what fits
