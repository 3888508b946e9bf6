"""SR-STE: N:M-sparse training with a mask recomputed from the dense weights every step.

Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch"
(ICLR 2021), the paper's sparse phase for classification (docs/design.md section 2). The
forward uses ``W * mask(W)``, the N:M mask of the *current* dense weights along the layer's
sub-vector axis (magnitude: the ``N`` largest ``|w|`` of every ``M`` consecutive elements of a
sub-vector); the backward passes the gradient to every dense weight (straight-through) and
adds the sparse-refined term ``lambda_w * (1 - mask) * W``, which pulls the pruned weights
towards zero so that the mask settles::

    dL/dW = dL/dW_sparse + lambda_w * (1 - mask) * W

The mask freezes when the sparse phase ends (the schedule recomputes it once more from the
final dense weights, then clusters with it).
"""
from __future__ import annotations

import torch

from .blocking import from_subvectors, to_subvectors
from .nm import nm_mask

__all__ = ['srste_weight', 'srste_mask', 'DEFAULT_LAMBDA']

#: The sparse-refined decay of Zhou et al. (their ``lambda_w``).
DEFAULT_LAMBDA = 2e-4


class _SRSTE(torch.autograd.Function):
    """``W * keep`` forward; ``grad + lam * (1 - keep) * W`` backward."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, keep: torch.Tensor, lam: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(weight, keep)
        ctx.lam = lam
        return weight * keep

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        weight, keep = ctx.saved_tensors
        return grad + ctx.lam * (~keep) * weight, None, None


@torch.no_grad()
def srste_mask(weight: torch.Tensor, d: int, axis: str, n: int, m: int) -> torch.Tensor:
    """The ``(num_subvectors, d)`` N:M keep-mask of ``|weight|`` in the sub-vector layout."""
    return nm_mask(to_subvectors(weight.detach(), d, axis).abs().float(), n, m)


def srste_weight(weight: torch.Tensor, mask: torch.Tensor, weight_shape: tuple[int, ...],
                 axis: str, lam: float = DEFAULT_LAMBDA) -> torch.Tensor:
    """``W * mask`` with SR-STE's gradient.

    Args:
        weight: The dense weight (``weight_shape``).
        mask: ``(num_subvectors, d)`` bool keep-mask in the sub-vector layout.
        weight_shape: The weight's shape.
        axis: The sub-vector layout.
        lam: ``lambda_w`` of the sparse-refined term.
    """
    keep = from_subvectors(mask, weight_shape, axis).contiguous()
    return _SRSTE.apply(weight, keep, float(lam))
