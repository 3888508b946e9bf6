"""Settings of different methods matched at equal accounted bits, and their effective MACs.

Comparing ``mvq``, ``vq`` and ``prune_vq`` is only fair at the same size: :func:`match_points`
picks, for each MVQ setting, the plain-VQ (d, k) whose accounted bits
(:func:`accounted_bits`, the :mod:`~mvq_plugin.core.accounting` formula evaluated on the plan,
no clustering) come closest; :func:`effective_macs` counts a forward pass's multiply-
accumulates with pruned weights skipped.

A helper of the benchmarks (``tools/bench/mvq_recipe.py``, ``tools/bench/allocate.py``), not
part of the installed package.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from mvq_plugin.core.accounting import count_macs
from mvq_plugin.core.config import MVQConfig, prunes
from mvq_plugin.core.plan import plan

__all__ = ['LEGACY_LAYOUT', 'PAPER_LAYOUT', 'LAYOUTS', 'Setting', 'MatchedPoint',
           'accounted_bits', 'closest_setting', 'match_points',
           'effective_macs', 'VQ_BLOCK_SIZES', 'VQ_CODEWORDS']

#: The layout and codebook settings the committed results of the recipe, allocation, k-means
#: and ImageNet benches were measured with (before the paper's out_channel MVQ became the
#: default): their settings name them so that their commands still reproduce those files.
LEGACY_LAYOUT = dict(vector_axis='in_channel', codebook_scale='maxabs', kmeans_stop='objective')
#: The paper's layout and quantization (``MVQConfig()``'s defaults, written out).
PAPER_LAYOUT = dict(vector_axis='out_channel', codebook_scale='lsq', kmeans_stop='assignments')
#: ``--layout`` choices of the benches.
LAYOUTS = {'paper': PAPER_LAYOUT, 'legacy': LEGACY_LAYOUT}

VQ_BLOCK_SIZES = (4, 8, 16)
VQ_CODEWORDS = tuple(2**i for i in range(4, 15))


@dataclasses.dataclass(frozen=True)
class Setting:
    """One method's quantizer settings (the MVQConfig fields this benchmark varies).

    Attributes:
        method: ``'mvq'``, ``'vq'`` or ``'prune_vq'``.
        block_size: Sub-vector length d.
        num_codewords: Codebook size k.
        n: Weights kept per group of ``m`` (ignored by ``vq``).
        m: N:M group length (ignored by ``vq``).
    """

    method: str
    block_size: int
    num_codewords: int
    n: int = 1
    m: int = 1

    @property
    def prunes(self) -> bool:
        """Whether the setting stores an N:M mask (and skips pruned MACs)."""
        return prunes(self.method, self.n, self.m)

    @property
    def label(self) -> str:
        """Short human-readable form, e.g. ``'mvq 2:8 d=8 k=256'``."""
        nm = f' {self.n}:{self.m}' if self.prunes else ''
        return f'{self.method}{nm} d={self.block_size} k={self.num_codewords}'

    def mvq_fields(self, layout: Mapping[str, Any] = LEGACY_LAYOUT) -> dict[str, Any]:
        """The ``MVQConfig`` fields of this setting in ``layout`` (:data:`LAYOUTS`; the
        default is the one the committed legacy results were measured with)."""
        n, m = (self.n, self.m) if self.prunes else (1, 1)
        return dict(method=self.method, block_size=self.block_size,
                    num_codewords=self.num_codewords, n=n, m=m, **layout)


@dataclasses.dataclass
class MatchedPoint:
    """The three methods' settings at one compression ratio.

    Attributes:
        settings: ``{method: Setting}``.
        bits: ``{method: accounted bits of the whole model}``.
        params: Parameters of the dense model.
    """

    settings: dict[str, Setting]
    bits: dict[str, int]
    params: int

    def ratio(self, method: str) -> float:
        """Accounted compression ratio ``32 * params / bits``."""
        return 32 * self.params / self.bits[method]

    def mismatch(self, method: str) -> float:
        """Relative bit difference to the MVQ setting, ``bits / bits_mvq - 1``."""
        return self.bits[method] / self.bits['mvq'] - 1

    def record(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {method: dict(setting=dataclasses.asdict(s), label=s.label,
                             bits=self.bits[method], compression_ratio=self.ratio(method),
                             mismatch_vs_mvq=self.mismatch(method))
                for method, s in self.settings.items()}


def accounted_bits(model: nn.Module, setting: Setting,
                   fields: Mapping[str, Any] | None = None) -> int:
    """Total accounted bits of ``model`` compressed with ``setting``, without clustering.

    ``sum(plan bits of every conv/linear weight) + 32 * (every other parameter)``, the
    formula of ``mvq_plugin.compression_stats`` (the first conv stays dense, layers with
    fewer sub-vectors than k stay dense, both at 32 bits per weight).

    Args:
        model: The dense model.
        setting: The quantizer settings.
        fields: Other ``MVQConfig`` fields, overriding the setting's (e.g. the paper's layout
            and ``min_params``).

    Returns:
        Bits.
    """
    the_plan = plan(model, MVQConfig(**{**setting.mvq_fields(), **(fields or {})}))
    weights = {f'{lp.name}.weight' for lp in the_plan}
    other = sum(p.numel() for name, p in model.named_parameters() if name not in weights)
    return sum(lp.bits for lp in the_plan) + 32 * other


def closest_setting(model: nn.Module, target_bits: int, method: str, n: int = 1, m: int = 1,
                    block_sizes: Sequence[int] = VQ_BLOCK_SIZES,
                    codewords: Sequence[int] = VQ_CODEWORDS, prefer_block_size: int | None = None,
                    tolerance: float = 0.03,
                    fields: Mapping[str, Any] | None = None) -> tuple[Setting, int]:
    """The ``(d, k)`` of ``method`` (at ``n:m``) whose accounted bits come closest to a target.

    Ties go to ``prefer_block_size``; d must be a multiple of ``m`` when the method prunes.
    ``fields`` are passed to :func:`accounted_bits`.

    Returns:
        ``(setting, bits)``.

    Raises:
        ValueError: no candidate lies within ``tolerance`` of ``target_bits``.
    """
    found = []
    for d in block_sizes:
        if prunes(method, n, m) and d % m:
            continue
        for k in codewords:
            cand = Setting(method, d, k, n, m)
            b = accounted_bits(model, cand, fields)
            found.append((abs(b / target_bits - 1), d != prefer_block_size, cand, b))
    if not found:
        raise ValueError(f'closest_setting: no block size in {list(block_sizes)} is a '
                         f'multiple of m={m}')
    err, _, best, bits = min(found, key=lambda t: t[:2])
    if err > tolerance:
        raise ValueError(f'no {method} setting within {tolerance:.0%} of {target_bits:,} bits; '
                         f'closest: {best.label} ({bits:,} bits, {bits / target_bits - 1:+.1%})')
    return best, bits


def match_points(model: nn.Module, mvq_settings: Sequence[Setting], tolerance: float = 0.03,
                 vq_block_sizes: Sequence[int] = VQ_BLOCK_SIZES,
                 vq_codewords: Sequence[int] = VQ_CODEWORDS) -> list[MatchedPoint]:
    """Chooses ``vq`` and ``prune_vq`` settings with the accounted bits of each MVQ setting.

    ``prune_vq`` takes the MVQ setting itself (same d, k and N:M: same bits). ``vq`` takes the
    candidate (d, k) minimising ``|bits_vq / bits_mvq - 1|``; ties go to MVQ's own d.

    Args:
        model: The dense model (real shapes).
        mvq_settings: One ``'mvq'`` setting per point.
        tolerance: Largest allowed ``|bits / bits_mvq - 1|``.
        vq_block_sizes: Candidate d for ``vq``.
        vq_codewords: Candidate k for ``vq``.

    Returns:
        One :class:`MatchedPoint` per MVQ setting.

    Raises:
        ValueError: A setting is not ``mvq``, or no ``vq`` candidate is within ``tolerance``.
    """
    params = sum(p.numel() for p in model.parameters())
    points = []
    for s in mvq_settings:
        if s.method != 'mvq':
            raise ValueError(f'match_points needs mvq settings, got {s.label!r}')
        target = accounted_bits(model, s)
        pvq = dataclasses.replace(s, method='prune_vq')
        bits = {'mvq': target, 'prune_vq': accounted_bits(model, pvq)}

        try:
            vq, bits['vq'] = closest_setting(model, target, 'vq', block_sizes=vq_block_sizes,
                                             codewords=vq_codewords,
                                             prefer_block_size=s.block_size,
                                             tolerance=tolerance)
        except ValueError as err:
            raise ValueError(f'{s.label}: {err}') from None
        points.append(MatchedPoint({'mvq': s, 'vq': vq, 'prune_vq': pvq}, bits, params))
    return points


def effective_macs(model: nn.Module, setting: Setting | None, example_inputs: Any,
                   forward_fn: Callable[[nn.Module, Any], Any] | None = None,
                   fields: Mapping[str, Any] | None = None) -> int:
    """MACs of one forward pass, pruned weights skipped (``N/M`` of a pruned layer's MACs).

    Args:
        model: The dense model.
        setting: The quantizer settings (``None``: dense).
        example_inputs: Input of the forward pass.
        forward_fn: ``forward_fn(model, inputs)`` (e.g. an OpenMMLab tensor-mode forward).
        fields: Other ``MVQConfig`` fields (the layout), overriding the setting's.

    Returns:
        Effective multiply-accumulates of the conv and linear layers.
    """
    density = {}
    if setting is not None and setting.prunes:
        the_plan = plan(model, MVQConfig(**{**setting.mvq_fields(), **(fields or {})}))
        density = {lp.name: setting.n / setting.m for lp in the_plan.compressed}
    counts = count_macs(model, example_inputs, forward_fn=forward_fn)
    return int(sum(v * density.get(k, 1.0) for k, v in counts.items()))
