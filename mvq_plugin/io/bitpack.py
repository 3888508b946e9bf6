"""Packing unsigned integers at a fixed bit width.

Value ``i`` occupies bits ``[i*b, (i+1)*b)`` of the stream, least-significant bit first, and
bytes are filled from their least-significant bit (``numpy.packbits(bitorder='little')``), so
``n`` values of ``b`` bits take exactly ``ceil(n*b/8)`` bytes.
"""
from __future__ import annotations

import numpy as np

__all__ = ['pack_bits', 'unpack_bits', 'packed_size']

_CHUNK = 1 << 20  # values per step: bounds the n x b bit matrix to a few MiB


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: ``ceil(count*bits/8)``."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Packs non-negative integers ``< 2**bits`` into ``ceil(n*bits/8)`` bytes.

    Args:
        values: 1-D integer array.
        bits: Width in ``[0, 32]``; 0 packs to no bytes (every value must be 0).

    Returns:
        The packed bytes.
    """
    values = np.asarray(values).reshape(-1)
    if not 0 <= bits <= 32:
        raise ValueError(f'bits={bits} must be in [0, 32]')
    if values.size and (values.min() < 0 or int(values.max()) >= (1 << bits)):
        raise ValueError(f'values must lie in [0, {1 << bits}) to pack at {bits} bits, got '
                         f'[{int(values.min())}, {int(values.max())}]')
    if bits == 0 or values.size == 0:
        return b''
    v = values.astype(np.uint64)
    shifts = np.arange(bits, dtype=np.uint64)
    # Whole bytes per chunk: chunk sizes are multiples of 8 values.
    out = [np.packbits(((v[i:i + _CHUNK, None] >> shifts) & 1).astype(np.uint8).reshape(-1),
                       bitorder='little').tobytes() for i in range(0, v.size, _CHUNK)]
    return b''.join(out)


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` int64 values from ``data``."""
    if bits == 0:
        return np.zeros(count, dtype=np.int64)
    need = packed_size(count, bits)
    if len(data) < need:
        raise ValueError(f'{len(data)} bytes cannot hold {count} values of {bits} bits '
                         f'({need} needed)')
    raw = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=need), bitorder='little',
                        count=count * bits).reshape(count, bits).astype(np.int64)
    return raw @ (np.int64(1) << np.arange(bits, dtype=np.int64))
