"""Cutting a weight into sub-vectors and putting it back together.

Three layouts (docs/design.md section 2):

* ``out_channel`` (the paper's MVQ, sections 4.3 and 5.2): ``d`` consecutive output channels
  at one (input channel, kh, kw), ``v(b, c, kh, kw) = W[b*d:(b+1)*d, c, kh, kw]``, i.e.
  ``W.reshape(O/d, d, C, kh, kw).permute(0, 2, 3, 4, 1).reshape(-1, d)`` (the weight
  reshaped to ``(C_out/d * C_in * kh * kw) x d``); a Linear's ``d`` consecutive output rows
  at one input column. The accelerator's sparse tile computes ``d`` output channels from one
  activation with Q multipliers. Needs ``(C_out / groups) % d == 0`` (a sub-vector never
  crosses a group).
* ``in_channel``: ``v(o, g, kh, kw) = W[o, g*d:(g+1)*d, kh, kw]``, i.e.
  ``W.permute(0, 2, 3, 1).reshape(-1, d)``; a Linear ``W[o, c]`` is ``W.reshape(-1, d)``.
  The d products of a sub-vector share one adder tree in the MVQ accelerator. Needs
  ``(C_in / groups) % d == 0``.
* ``spatial`` (BGD/PQF baselines): ``W.reshape(-1, d)`` in memory order, so ``d = kh*kw``
  cuts the kernel into its spatial blocks and ``d`` dividing ``C_in`` for 1x1 convs cuts
  consecutive input channels. Needs ``W.numel() % d == 0`` and, for ``d > kh*kw``, whole
  kernels.
"""
from __future__ import annotations

import torch

__all__ = ['to_subvectors', 'from_subvectors', 'blocking_error']


def blocking_error(weight_shape: tuple[int, ...], d: int, axis: str,
                   groups: int = 1) -> str | None:
    """Why a weight of this shape cannot be cut into length-``d`` sub-vectors, or ``None``.

    Args:
        weight_shape: ``(C_out, C_in/groups, kh, kw)`` or ``(C_out, C_in)``.
        d: Sub-vector length.
        axis: ``'out_channel'``, ``'in_channel'`` or ``'spatial'``.
        groups: The conv's groups (``out_channel`` sub-vectors stay inside a group).
    """
    c_in = weight_shape[1]
    if axis == 'out_channel':
        c_out = weight_shape[0] // max(groups, 1)
        if c_out % d:
            return (f'C_out/groups={c_out} is not a multiple of block_size={d}'
                    if groups > 1 else
                    f'C_out={c_out} is not a multiple of block_size={d}')
        return None
    if axis == 'in_channel':
        if c_in % d:
            return f'C_in/groups={c_in} is not a multiple of block_size={d}'
        return None
    kernel = 1
    for s in weight_shape[2:]:
        kernel *= s
    if kernel % d and d % kernel:
        return f'spatial block_size={d} neither divides nor is a multiple of kernel size {kernel}'
    if d > kernel and (c_in * kernel) % d:
        return f'spatial block_size={d} does not tile C_in/groups*kh*kw={c_in * kernel}'
    return None


def to_subvectors(weight: torch.Tensor, d: int, axis: str = 'in_channel') -> torch.Tensor:
    """Cuts a weight into sub-vectors.

    Args:
        weight: ``(O, C, kh, kw)`` conv weight or ``(O, C)`` linear weight.
        d: Sub-vector length.
        axis: ``'out_channel'``, ``'in_channel'`` or ``'spatial'``.

    Returns:
        ``(weight.numel() // d, d)`` tensor (a copy for ``out_channel`` and ``in_channel``
        convs).
    """
    if axis == 'out_channel':
        o = weight.shape[0]
        return weight.reshape(o // d, d, -1).transpose(1, 2).reshape(-1, d)
    if axis == 'in_channel' and weight.dim() == 4:
        return weight.permute(0, 2, 3, 1).reshape(-1, d)
    return weight.reshape(-1, d)


def from_subvectors(vectors: torch.Tensor, shape: torch.Size | tuple[int, ...],
                    axis: str = 'in_channel') -> torch.Tensor:
    """Inverse of :func:`to_subvectors`.

    Args:
        vectors: ``(n, d)`` sub-vectors.
        shape: The weight shape to rebuild.
        axis: The layout the vectors were cut with.

    Returns:
        Tensor of ``shape``.
    """
    if axis == 'out_channel':
        o, d = shape[0], vectors.shape[-1]
        rest = vectors.numel() // o
        return vectors.reshape(o // d, rest, d).transpose(1, 2).reshape(shape)
    if axis == 'in_channel' and len(shape) == 4:
        o, c, kh, kw = shape
        return vectors.reshape(o, kh, kw, c).permute(0, 3, 1, 2)
    return vectors.reshape(shape)
