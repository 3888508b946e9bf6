"""Bits of one compressed weight: the accounting rule, written once (docs/design.md section 2).

Per compressed layer with ``numel`` weights, sub-vector length ``d``, ``k`` codewords and an
N:M mask::

    bits = (numel/d) * ceil(log2 k)                 # assignments
         + (numel/M) * ceil(log2 C(M, N))           # mask codes (0 when not pruned)
         + k * d * q_c                              # codebook
         + (32 if q_c == 8 else 0)                  # the fp32 int8 scale
"""
from __future__ import annotations

from dataclasses import dataclass

from .nm import mask_code_bits

__all__ = ['LayerBits', 'layer_bits', 'index_bits', 'INT8_SCALE_BITS']

#: The one fp32 scale an int8 codebook carries.
INT8_SCALE_BITS = 32


def index_bits(k: int) -> int:
    """``ceil(log2 k)`` in exact integer arithmetic (0 for k = 1): bits of one assignment."""
    return (k - 1).bit_length()


@dataclass(frozen=True)
class LayerBits:
    """Bits of one compressed layer, by part."""

    indices: int
    masks: int
    codebook: int

    @property
    def total(self) -> int:
        """All bits of the layer."""
        return self.indices + self.masks + self.codebook


def layer_bits(numel: int, *, d: int, k: int, n: int, m: int, codebook_bits: int,
               prunes: bool) -> LayerBits:
    """Bits of one compressed weight (formula in the module docstring).

    Args:
        numel: Weight elements.
        d: Sub-vector length.
        k: Codewords.
        n: Kept per group.
        m: Group length.
        codebook_bits: ``q_c``, bits per codeword element.
        prunes: Whether a mask is stored (see ``LayerConfig.prunes``).
    """
    indices = (numel // d) * index_bits(k)
    masks = (numel // m) * mask_code_bits(n, m) if prunes else 0
    codebook = k * d * codebook_bits + (INT8_SCALE_BITS if codebook_bits == 8 else 0)
    return LayerBits(indices, masks, codebook)
