"""What the allocator may give one layer: a :class:`Choice`, drawn from a :class:`ChoiceSpace`.

A choice is either ``dense`` (the layer keeps its fp32 weight) or one MVQ setting: method,
sub-vector length ``d``, codewords ``k``, N:M pattern and codebook precision. The space is the
cross product of the sets a user gives (``nm=('2:8', '4:8', 'none')``, ``block_size=(8, 16)``,
...), each combination validated by :class:`~mvq_plugin.core.config.LayerConfig`; per layer,
only the combinations :func:`~mvq_plugin.core.plan.plan` admits remain (blocking, ``k`` no
larger than the sub-vector count).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..core.config import CODEBOOK_BITS, VECTOR_AXES, LayerConfig, parse_nm

__all__ = ['Choice', 'ChoiceSpace', 'DENSE', 'parse_nm']

#: ``nm`` entries meaning "no pruning" (plain ``vq``).
@dataclass(frozen=True)
class Choice:
    """One setting for one layer.

    Attributes:
        method: ``'dense'`` (no compression), ``'mvq'``, ``'vq'`` or ``'prune_vq'``.
        block_size: ``d`` (``None`` when dense).
        num_codewords: ``k``.
        n: N of N:M (``n == m``: no pruning).
        m: M of N:M.
        codebook_bits: 8 (int8 + scale), 16 or 32.
        vector_axis: The sub-vector layout (``None``: the base config's).
    """

    method: str
    block_size: int | None = None
    num_codewords: int | None = None
    n: int | None = None
    m: int | None = None
    codebook_bits: int | None = None
    vector_axis: str | None = None

    def __post_init__(self) -> None:
        if self.method == 'dense':
            return
        LayerConfig(**self.fields())  # validates every value, naming the field

    @property
    def dense(self) -> bool:
        """Whether the layer stays uncompressed."""
        return self.method == 'dense'

    @property
    def prunes(self) -> bool:
        """Whether the choice stores an N:M mask."""
        return not self.dense and self.method != 'vq' and self.n < self.m

    def fields(self) -> dict[str, Any]:
        """The :data:`~mvq_plugin.core.config.LAYER_FIELDS` this choice sets (dense: none)."""
        if self.dense:
            return {}
        fields = dict(method=self.method, block_size=self.block_size,
                      num_codewords=self.num_codewords, n=self.n, m=self.m,
                      codebook_bits=self.codebook_bits)
        if self.vector_axis is not None:
            fields['vector_axis'] = self.vector_axis
        return fields

    @property
    def clustering(self) -> 'Choice':
        """The choice with fp32 codebooks: one k-means serves every codebook precision."""
        return dataclasses.replace(self, codebook_bits=32)

    @property
    def label(self) -> str:
        """Short name, e.g. ``'mvq d16 k32 2:8 int8'``, ``'vq d8 k256 fp16'``, ``'dense'``."""
        if self.dense:
            return 'dense'
        nm = f' {self.n}:{self.m}' if self.prunes else ''
        prec = {8: 'int8', 16: 'fp16', 32: 'fp32'}[self.codebook_bits]
        axis = f' {self.vector_axis}' if self.vector_axis is not None else ''
        return f'{self.method} d{self.block_size} k{self.num_codewords}{nm} {prec}{axis}'

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


#: The choice that keeps a layer dense.
DENSE = Choice('dense')


def _as_tuple(name: str, value: Any) -> tuple:
    if isinstance(value, (str, int)) or value is None:
        value = (value,)
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f'ChoiceSpace.{name}={value!r} must be a value or a sequence') from None
    if not values:
        raise ValueError(f'ChoiceSpace.{name} is empty; give at least one value')
    return values


class ChoiceSpace:
    """The settings the allocator may choose from, per layer.

    Args:
        nm: N:M patterns (``'2:8'``...) and/or ``'none'`` (no pruning: ``vq``).
        block_size: Sub-vector lengths ``d``.
        num_codewords: Codebook sizes ``k``.
        codebook_bits: Codebook precisions (8: int8 + scale, 16: fp16, 32: fp32).
        dense: Whether keeping a layer dense is a choice.
        method: What a pruned choice runs, ``'mvq'`` (masked k-means) or ``'prune_vq'``.
        vector_axis: Sub-vector layouts to choose from (``None``: the base config's), e.g.
            ``('out_channel', 'in_channel')`` lets each layer take the layout it compresses
            best in.

    Raises:
        ValueError: A value no layer could use (named, with what is allowed).
    """

    def __init__(self, nm: Iterable[Any] = ('2:8', '4:8', 'none'),
                 block_size: Iterable[int] = (8, 16),
                 num_codewords: Iterable[int] = (16, 32, 64, 128, 256),
                 codebook_bits: Iterable[int] = (8,), dense: bool = True,
                 method: str = 'mvq', vector_axis: Any = None) -> None:
        if method not in ('mvq', 'prune_vq'):
            raise ValueError(f"ChoiceSpace.method={method!r} must be 'mvq' or 'prune_vq'")
        if not isinstance(dense, bool):
            raise ValueError(f'ChoiceSpace.dense={dense!r} must be a bool')
        self.nm = tuple(parse_nm(v) for v in _as_tuple('nm', nm))
        self.block_size = _as_tuple('block_size', block_size)
        self.num_codewords = _as_tuple('num_codewords', num_codewords)
        self.codebook_bits = _as_tuple('codebook_bits', codebook_bits)
        for bits in self.codebook_bits:
            if bits not in CODEBOOK_BITS:
                raise ValueError(f'ChoiceSpace.codebook_bits has {bits!r}; allowed: '
                                 f'{list(CODEBOOK_BITS)}')
        self.vector_axis = _as_tuple('vector_axis', vector_axis)
        for axis in self.vector_axis:
            if axis is not None and axis not in VECTOR_AXES:
                raise ValueError(f'ChoiceSpace.vector_axis has {axis!r}; allowed: '
                                 f'{list(VECTOR_AXES)} or None (the base config\'s)')
        self.dense = dense
        self.method = method
        choices = []
        for nm_, d, k, bits, axis in itertools.product(self.nm, self.block_size,
                                                       self.num_codewords, self.codebook_bits,
                                                       self.vector_axis):
            if nm_ is not None and d % nm_[1]:
                continue  # the N:M group must fit a sub-vector
            n, m = nm_ if nm_ is not None else (1, 1)
            choices.append(Choice(self.method if nm_ else 'vq', d, k, n, m, bits, axis))
        if not choices and not dense:
            raise ValueError(f'ChoiceSpace: no (N:M, d) combination fits (M must divide d): '
                             f'nm={nm!r}, block_size={self.block_size!r}')
        #: Every compressed choice, in a fixed order (dense, when allowed, is separate).
        self.choices: tuple[Choice, ...] = tuple(dict.fromkeys(choices))

    @classmethod
    def from_any(cls, value: 'ChoiceSpace | Mapping[str, Any] | None') -> 'ChoiceSpace':
        """A space from a :class:`ChoiceSpace`, a dict of its arguments or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, ChoiceSpace):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f'choices={value!r} must be a ChoiceSpace or a dict of nm, '
                             'block_size, num_codewords, codebook_bits, dense, method, '
                             'vector_axis')
        try:
            return cls(**dict(value))
        except TypeError as err:
            raise ValueError(f'choices={dict(value)!r}: {err}; allowed keys: nm, block_size, '
                             'num_codewords, codebook_bits, dense, method, vector_axis') from None

    def to_dict(self) -> dict[str, Any]:
        """The arguments that rebuild this space."""
        return dict(nm=['none' if v is None else f'{v[0]}:{v[1]}' for v in self.nm],
                    block_size=list(self.block_size), num_codewords=list(self.num_codewords),
                    codebook_bits=list(self.codebook_bits), dense=self.dense,
                    method=self.method, vector_axis=list(self.vector_axis))

    def __repr__(self) -> str:
        return f'ChoiceSpace({self.to_dict()})'
