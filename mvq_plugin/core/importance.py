"""Pruning importance policies: ``score = f(weight, grad)``, elementwise.

A policy is any callable ``(weight, grad) -> scores`` with ``scores`` shaped like ``weight``;
the N:M mask keeps the highest scores. Register new ones in :data:`IMPORTANCE`.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

__all__ = ['Importance', 'IMPORTANCE', 'magnitude', 'taylor', 'get_importance']

Importance = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


def magnitude(weight: torch.Tensor, grad: torch.Tensor | None = None) -> torch.Tensor:
    """``|w|``."""
    return weight.abs()


def taylor(weight: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """First-order Taylor saliency ``|w * dL/dw|`` (needs calibration gradients)."""
    if grad is None:
        raise ValueError("importance='taylor' needs gradients: pass calib=callable(model) -> "
                         'loss to compress()')
    return (weight * grad).abs()


IMPORTANCE: dict[str, Importance] = {'magnitude': magnitude, 'taylor': taylor}


def get_importance(name_or_fn: str | Importance) -> Importance:
    """Looks a policy up by name, or returns a callable unchanged."""
    if callable(name_or_fn):
        return name_or_fn
    if name_or_fn not in IMPORTANCE:
        raise ValueError(f'importance={name_or_fn!r} is not allowed; choose one of '
                         f'{sorted(IMPORTANCE)} or pass a callable (weight, grad) -> scores')
    return IMPORTANCE[name_or_fn]
