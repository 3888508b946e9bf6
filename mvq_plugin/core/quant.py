"""Codebook quantization: int8 symmetric fake quantization with a max-abs or an LSQ scale.

A stored int8 codebook is ``s * q`` with integer codes ``q`` in ``[INT8_MIN, INT8_MAX]`` and one
fp32 scale ``s`` per codebook (the paper's Eq. 5: signed 8-bit symmetric, one scale per
codebook). Two ways to choose ``s`` (``LayerConfig.codebook_scale``):

* ``'maxabs'``: ``s = max|c| / 127``, derived from the codewords on every pass (no parameter);
* ``'lsq'`` (Esser et al., ICLR 2020, "Learned Step Size Quantization"): ``s`` is a parameter
  trained with the codewords. Initialisation ``s = 2 * mean|c| / sqrt(Q_p)``; forward
  ``s * round(clamp(c / s, -Q_n, Q_p))``; gradients: ``dq/dc = 1`` inside the clamp range and
  0 outside, ``dq/ds = round(c/s) - c/s`` inside, ``-Q_n`` or ``Q_p`` outside, the scale's
  gradient multiplied by ``g = 1 / sqrt(k * d * Q_p)`` (the number of values the scale
  quantizes, LSQ's gradient scale). ``Q_n = 128``, ``Q_p = 127``.

Rounding uses a straight-through estimator (identity gradient), so the codewords keep
training while the forward pass computes exactly what the artifact stores.
"""
from __future__ import annotations

import math

import torch

__all__ = ['INT8_MIN', 'INT8_MAX', 'MIN_STEP', 'CODEBOOK_SCALES', 'int8_scale', 'lsq_init_scale',
           'fake_quant_int8', 'lsq_quant', 'lsq_step', 'round_fp16']

INT8_MIN, INT8_MAX = -128, 127
#: The smallest LSQ step (a scale that reached 0 would divide by it).
MIN_STEP = 1e-12
#: How the int8 scale of a codebook is chosen.
CODEBOOK_SCALES = ('lsq', 'maxabs')


class _RoundSTE(torch.autograd.Function):
    """``round(x)`` forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


class _HalfSTE(torch.autograd.Function):
    """fp16 rounding forward, identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.half().to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient times ``g`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, g: float) -> torch.Tensor:  # noqa: D102
        ctx.g = g
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return grad * ctx.g, None


def round_fp16(codebook: torch.Tensor) -> torch.Tensor:
    """The codebook rounded to fp16 (identity gradient)."""
    return _HalfSTE.apply(codebook)


def int8_scale(codebook: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 scale ``s = max|c| / 127`` (1 for an all-zero codebook)."""
    amax = codebook.detach().abs().max()
    return torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))


def lsq_init_scale(codebook: torch.Tensor) -> torch.Tensor:
    """LSQ's initial step ``2 * mean|c| / sqrt(Q_p)`` (1 for an all-zero codebook)."""
    mean = codebook.detach().abs().mean()
    return torch.where(mean > 0, 2 * mean / math.sqrt(INT8_MAX), torch.ones_like(mean))


def fake_quant_int8(codebook: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``s * clamp(round(c / s), -128, 127)`` with a straight-through estimator.

    Args:
        codebook: ``(k, d)`` float codewords.
        scale: A fixed scale (no gradient reaches it); ``None`` derives it from the codebook
            (:func:`int8_scale`, so ``|c / s| <= 127``).

    Returns:
        ``(k, d)`` values exactly representable as int8 times one fp32 scale.
    """
    scale = int8_scale(codebook) if scale is None else scale.detach()
    return _RoundSTE.apply(codebook / scale).clamp(INT8_MIN, INT8_MAX) * scale


def lsq_quant(codebook: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LSQ fake quantization of a ``(k, d)`` codebook with the learnable scalar ``scale``.

    Gradients reach both the codewords and the scale (see the module docstring).
    """
    g = 1.0 / math.sqrt(codebook.numel() * INT8_MAX)
    s = lsq_step(_GradScale.apply(scale, g))
    return _RoundSTE.apply((codebook / s).clamp(INT8_MIN, INT8_MAX)) * s


def lsq_step(scale: torch.Tensor) -> torch.Tensor:
    """The step an LSQ scale parameter stands for: ``|s|`` (at least ``MIN_STEP``), so that an
    optimizer step past zero cannot make it negative (the gradient of a positive ``s`` is
    unchanged)."""
    return scale.abs().clamp_min(MIN_STEP)
