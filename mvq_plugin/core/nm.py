"""N:M masks and their combinatorial codes.

An N:M mask keeps the ``n`` highest-scoring elements of every group of ``m`` consecutive
elements along the last axis (the input channel in the sub-vector layout). A group's mask is
stored as its rank among the ``C(m, n)`` possible patterns, ``ceil(log2 C(m, n))`` bits, not as
an m-bit bitmap (docs/design.md section 2).

The rank is the combinatorial number system: for kept positions ``p_1 < ... < p_n``,
``code = sum_i C(p_i, i)`` (1-based ``i``), a bijection onto ``[0, C(m, n))``.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

__all__ = ['nm_mask', 'mask_code_bits', 'encode_mask', 'decode_mask']


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or not 1 <= n <= m:
        raise ValueError(f'invalid N:M pattern {n}:{m}; need integers 1 <= n <= m')


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keeps the ``n`` largest scores of every ``m`` consecutive elements on the last axis.

    Ties are broken towards the lower index, so the result is deterministic.

    Args:
        scores: ``(..., L)`` importance scores, ``L % m == 0`` (e.g. ``(n_sub, d)``).
        n: Elements kept per group.
        m: Group length.

    Returns:
        Bool tensor shaped like ``scores`` with exactly ``n`` True per group.
    """
    _check_nm(n, m)
    if scores.shape[-1] % m:
        raise ValueError(f'last dimension {scores.shape[-1]} is not a multiple of m={m}')
    groups = scores.reshape(-1, m)
    if n == m:
        return torch.ones_like(scores, dtype=torch.bool)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(1, order, True)
    return mask.reshape(scores.shape)


def mask_code_bits(n: int, m: int) -> int:
    """Bits per group for a combinatorial N:M code: ``ceil(log2 C(m, n))`` (0 when n == m)."""
    _check_nm(n, m)
    return math.ceil(math.log2(math.comb(m, n))) if n < m else 0


@lru_cache(maxsize=None)
def _patterns(n: int, m: int) -> torch.Tensor:
    """All ``C(m, n)`` masks, row ``r`` being the pattern of code ``r``: ``(C(m,n), m)`` bool."""
    rows = []
    for code in range(math.comb(m, n)):
        # Greedy decode of the combinatorial number system, largest position first.
        row = [False] * m
        rest = code
        for i in range(n, 0, -1):
            p = i - 1
            while math.comb(p + 1, i) <= rest:
                p += 1
            row[p] = True
            rest -= math.comb(p, i)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.bool)


def encode_mask(mask: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Combinatorial codes of an N:M mask.

    Args:
        mask: ``(..., L)`` bool, exactly ``n`` True in every group of ``m``.
        n: Kept per group.
        m: Group length.

    Returns:
        ``(numel // m,)`` int64 codes in ``[0, C(m, n))``.
    """
    _check_nm(n, m)
    groups = mask.reshape(-1, m).to(torch.int64)
    counts = groups.sum(1)
    if not torch.all(counts == n):
        bad = int(torch.nonzero(counts != n)[0])
        raise ValueError(f'group {bad} of the mask keeps {int(counts[bad])} elements, '
                         f'not n={n} of m={m}')
    # i-th kept position (1-based rank i among kept) contributes C(p, i).
    rank = torch.cumsum(groups, dim=1)
    table = torch.tensor([[math.comb(p, i) for i in range(n + 1)] for p in range(m)],
                         dtype=torch.int64, device=mask.device)
    pos = torch.arange(m, device=mask.device).expand_as(groups)
    contrib = table[pos, rank.clamp(max=n)] * groups
    return contrib.sum(1)


def decode_mask(codes: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Inverse of :func:`encode_mask`: ``(g,)`` codes to a ``(g * m,)`` bool mask."""
    _check_nm(n, m)
    patterns = _patterns(n, m).to(codes.device)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= patterns.shape[0]):
        raise ValueError(f'mask code out of range [0, {patterns.shape[0]}) for N:M={n}:{m}')
    return patterns[codes.long()].reshape(-1)
