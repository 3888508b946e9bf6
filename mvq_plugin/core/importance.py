"""Pruning importance policies: ``score = f(weight, grad)``, elementwise.

A policy is any callable ``(weight, grad) -> scores`` with ``scores`` shaped like ``weight``;
the N:M mask keeps the highest scores. Register new ones in :data:`IMPORTANCE`. The
data-aware ``activation`` policy also takes the layer's calibration statistics
(:mod:`~mvq_plugin.core.calibration`); :func:`get_importance` binds them.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch

from .calibration import NO_CALIBRATION

__all__ = ['Importance', 'IMPORTANCE', 'magnitude', 'taylor', 'activation', 'get_importance']

Importance = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def magnitude(weight: torch.Tensor, grad: torch.Tensor | None = None) -> torch.Tensor:
    """``|w|``."""
    return weight.abs()


def taylor(weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """First-order Taylor saliency ``|w * dL/dw|`` (needs calibration gradients)."""
    if grad is None:
        raise ValueError("importance='taylor' needs gradients: pass taylor_loss=callable(model) "
                         "-> loss to compress()")
    return (weight * grad).abs()


def activation(weight: torch.Tensor, grad: torch.Tensor | None = None, *,
               input_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``|w| * sqrt(E[x_c^2])``: the weight times the norm of the input channel it reads.

    ``input_sq`` is ``E[x_c^2]`` broadcast to ``weight``'s shape (sub-vector layout).
    """
    if input_sq is None:
        raise ValueError(f"importance='activation' {NO_CALIBRATION}")
    return weight.abs() * input_sq.sqrt()


IMPORTANCE: dict[str, Importance] = {'magnitude': magnitude, 'taylor': taylor,
                                     'activation': activation}


def get_importance(name_or_fn: str | Importance,
                   input_sq: torch.Tensor | None = None) -> Importance:
    """Looks a policy up by name (binding ``input_sq`` for ``'activation'``), or returns a
    callable unchanged."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in IMPORTANCE:
        raise ValueError(f'importance={name_or_fn!r} is not allowed; choose one of '
                         f'{sorted(IMPORTANCE)} or pass a callable (weight, grad) -> scores')
    if name_or_fn == 'activation':
        return functools.partial(activation, input_sq=input_sq)
    return IMPORTANCE[name_or_fn]
