"""Compress to a budget: per-layer MVQ settings chosen against a size, energy or cycle target.

* :mod:`.choices`: what one layer may get (:class:`Choice`, :class:`ChoiceSpace`);
* :mod:`.budget`: the limits (:class:`Budget`: bits/bytes, energy, cycles on a hw preset);
* :mod:`.costs`: each choice's additive cost per layer (accounting rule, hardware model);
* :mod:`.sensitivity`: each choice's measured output distortion, cached;
* :mod:`.solver`: the exact multiple-choice knapsack (0/1 integer program, HiGHS);
* :mod:`.allocate`: :func:`allocate` tying them together, :class:`Allocation`;
* :mod:`.channels`: Torch-Pruning channel pruning as a first stage.

Depends on :mod:`mvq_plugin.core` and :mod:`mvq_plugin.hw`; neither depends on it.
"""
from .allocate import Allocation, allocate, layer_choices, realised_costs
from .budget import Budget, parse_bytes
from .choices import DENSE, Choice, ChoiceSpace
from .costs import CostModel
from .sensitivity import OBJECTIVES, SensitivityCache, measure_sensitivity
from .solver import InfeasibleBudget, solve

__all__ = ['allocate', 'Allocation', 'Budget', 'Choice', 'ChoiceSpace', 'DENSE', 'CostModel',
           'SensitivityCache', 'measure_sensitivity', 'OBJECTIVES', 'solve', 'InfeasibleBudget',
           'layer_choices', 'realised_costs', 'parse_bytes']
