"""MVQ configuration: the global settings and their per-layer resolution.

A :class:`MVQConfig` holds the global values. Two kinds of rules refine them per layer, in
increasing priority:

1. ``type_overrides``: ``{class_name: {field: value}}``, matched against the class names in
   the module's MRO (so ``'Linear'`` also matches a subclass of ``nn.Linear``);
2. ``overrides``: ``{regex: {field: value}}``, the regex must fullmatch the module name.

Every value is validated on construction; the error names the field, the value and what is
allowed.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ['MVQConfig', 'LayerConfig', 'METHODS', 'VECTOR_AXES', 'CODEBOOK_BITS', 'CONFIG_ATTR',
           'parse_nm', 'nm_pattern', 'NO_PRUNING']

#: Attribute under which every path that compresses (``compress``, ``prepare`` and so
#: ``run_recipe``, the OpenMMLab builder) leaves its :class:`MVQConfig` on the model; the
#: artifact stores it and :func:`mvq_plugin.load` puts it back.
CONFIG_ATTR = 'mvq_config'

METHODS = ('mvq', 'vq', 'prune_vq')
VECTOR_AXES = ('out_channel', 'in_channel', 'spatial')
KMEANS_INITS = ('kmeans++', 'random')
IMPORTANCES = ('magnitude', 'taylor', 'activation')
KMEANS_WEIGHTS = ('uniform', 'activation')
CODEBOOK_BITS = (8, 16, 32)
CODEBOOK_SCALES = ('lsq', 'maxabs')
KMEANS_STOPS = ('assignments', 'objective')

#: Fields that a per-layer rule (``overrides`` / ``type_overrides``) may change.
LAYER_FIELDS = ('block_size', 'num_codewords', 'n', 'm', 'method', 'vector_axis',
                'kmeans_iters', 'kmeans_init', 'tol', 'codebook_bits', 'importance',
                'kmeans_weights', 'codebook_scale', 'kmeans_stop', 'change_tol')


#: Words for "no N:M pruning" in :func:`parse_nm`.
NO_PRUNING = ('none', 'dense', '1:1')


def parse_nm(value: Any) -> tuple[int, int] | None:
    """``'2:8'`` -> ``(2, 8)``; ``'none'`` -> ``None`` (no pruning: plain VQ)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NO_PRUNING):
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        n, m = value
    elif isinstance(value, str) and value.count(':') == 1:
        n, m = value.split(':')
    else:
        raise ValueError(f"N:M choice {value!r} must be 'N:M' (e.g. '2:8') or 'none'")
    try:
        n, m = int(n), int(m)
    except ValueError:
        raise ValueError(f"N:M choice {value!r} must be 'N:M' with integers, or 'none'") from None
    if not 1 <= n <= m:
        raise ValueError(f'N:M choice {value!r} needs 1 <= N <= M')
    return (None if n == m else (n, m))


def nm_pattern(value: Any) -> tuple[int, int]:
    """:func:`parse_nm` of a pattern that must prune (``argparse`` ``type=`` of ``--nm``)."""
    pattern = parse_nm(value)
    if pattern is None:
        raise ValueError(f'N:M {value!r}: a pruning pattern such as 2:8 is needed here')
    return pattern


def prunes(method: str, n: int, m: int) -> bool:
    """The rule "does this layer store an N:M mask": ``vq`` never prunes, ``n == m`` keeps all."""
    return method != 'vq' and n < m


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f'MVQConfig.{name}={value!r} is not allowed; '
                         f'choose one of {list(allowed)}')


def _check_int(name: str, value: Any, low: int, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        rng = f'>= {low}' if high == math.inf else f'in [{low}, {high}]'
        raise ValueError(f'MVQConfig.{name}={value!r} must be an integer {rng}')


@dataclass(frozen=True)
class LayerConfig:
    """The resolved settings for one layer (global values refined by the rules).

    Attributes:
        block_size: Sub-vector length d.
        num_codewords: Codebook size k.
        n: Weights kept in every group of ``m`` (``n == m``: no pruning).
        m: Group length of the N:M pattern; divides ``block_size``.
        method: ``'mvq'`` (N:M prune + masked k-means), ``'vq'`` (plain k-means, no pruning) or
            ``'prune_vq'`` (N:M prune, then plain k-means on zero-filled sub-vectors).
        vector_axis: ``'out_channel'`` (the paper's layout: ``d`` consecutive output
            channels), ``'in_channel'`` (``d`` consecutive input channels) or ``'spatial'``
            (BGD/PQF kernel blocks); see :mod:`~mvq_plugin.core.blocking`.
        kmeans_iters: Maximum Lloyd iterations.
        kmeans_init: ``'kmeans++'`` or ``'random'``.
        tol: With ``kmeans_stop='objective'``: stop when the relative objective decrease falls
            below this.
        kmeans_stop: ``'assignments'`` (the paper's rule: stop when fewer than ``change_tol``
            of the assignments change) or ``'objective'`` (``tol``).
        change_tol: Fraction of changed assignments that stops k-means (0.001: 0.1 %).
        codebook_bits: Bits per stored codeword element (8: int8 + scale, 16: fp16, 32: fp32).
        codebook_scale: The int8 scale of a codebook: ``'lsq'`` (learned with LSQ, the
            paper's Eq. 5) or ``'maxabs'`` (``max|c| / 127``); see :mod:`~mvq_plugin.core.quant`.
        importance: Pruning score, ``'magnitude'`` (|w|), ``'taylor'`` (|w * dL/dw|) or
            ``'activation'`` (|w| * sqrt(E[x_c^2]) from calibration data).
        kmeans_weights: ``'uniform'`` (every kept element counts alike) or ``'activation'``
            (each element weighted by ``E[x_c^2]`` of its input channel; calibration data).
    """

    block_size: int = 16
    num_codewords: int = 512
    n: int = 4
    m: int = 16
    method: str = 'mvq'
    vector_axis: str = 'out_channel'
    kmeans_iters: int = 50
    kmeans_init: str = 'kmeans++'
    tol: float = 1e-4
    codebook_bits: int = 8
    importance: str = 'magnitude'
    kmeans_weights: str = 'uniform'
    codebook_scale: str = 'lsq'
    kmeans_stop: str = 'assignments'
    change_tol: float = 1e-3

    def __post_init__(self) -> None:
        _check_int('block_size', self.block_size, 1)
        _check_int('num_codewords', self.num_codewords, 2)
        _check_int('m', self.m, 1)
        _check_int('n', self.n, 1, self.m)
        if self.method != 'vq' and self.n < self.m and self.block_size % self.m:
            divisors = [x for x in range(1, self.block_size + 1) if self.block_size % x == 0]
            raise ValueError(f'MVQConfig.m={self.m} must divide block_size={self.block_size} '
                             f'(N:M groups live inside a sub-vector); allowed m: {divisors}')
        _check_choice('method', self.method, METHODS)
        _check_choice('vector_axis', self.vector_axis, VECTOR_AXES)
        _check_int('kmeans_iters', self.kmeans_iters, 0)
        _check_choice('kmeans_init', self.kmeans_init, KMEANS_INITS)
        if not isinstance(self.tol, (int, float)) or isinstance(self.tol, bool) or self.tol < 0:
            raise ValueError(f'MVQConfig.tol={self.tol!r} must be a number >= 0')
        _check_choice('codebook_bits', self.codebook_bits, CODEBOOK_BITS)
        _check_choice('importance', self.importance, IMPORTANCES)
        _check_choice('kmeans_weights', self.kmeans_weights, KMEANS_WEIGHTS)
        _check_choice('codebook_scale', self.codebook_scale, CODEBOOK_SCALES)
        _check_choice('kmeans_stop', self.kmeans_stop, KMEANS_STOPS)
        if not isinstance(self.change_tol, (int, float)) or isinstance(self.change_tol, bool) \
                or not 0 <= self.change_tol < 1:
            raise ValueError(f'MVQConfig.change_tol={self.change_tol!r} must be a number in '
                             '[0, 1)')

    @property
    def prunes(self) -> bool:
        """Whether this layer is N:M pruned (:func:`prunes`)."""
        return prunes(self.method, self.n, self.m)

    @property
    def mask_reads_stats(self) -> bool:
        """Whether the N:M mask reads calibration statistics (``importance='activation'``)."""
        return self.prunes and self.importance == 'activation'

    @property
    def kmeans_reads_stats(self) -> bool:
        """Whether the clustering reads calibration statistics (``kmeans_weights``)."""
        return self.kmeans_weights == 'activation'

    @property
    def needs_calibration(self) -> bool:
        """Whether this layer's mask or clustering reads calibration statistics."""
        return self.mask_reads_stats or self.kmeans_reads_stats

    @property
    def masked_clustering(self) -> bool:
        """Whether k-means sees the mask (only ``mvq``; ``prune_vq`` clusters zero-filled)."""
        return self.method == 'mvq' and self.prunes


@dataclass(frozen=True)
class MVQConfig(LayerConfig):
    """MVQ settings for a whole model (see the module docstring for per-layer rules).

    Attributes:
        seed: Seed for k-means initialisation and re-seeding (results are identical for a seed).
        exclude: Regexes (``re.search``) on module names; matching layers stay dense.
        overrides: ``{regex: {field: value}}``; regex fullmatch on the module name. Wins over
            ``type_overrides``, which wins over the global value.
        type_overrides: ``{class_name: {field: value}}`` matched against the module's MRO.
        skip_first_conv: Keep the first convolution (usually ``C_in = 3``) dense.
        min_params: Layers with fewer weight elements stay dense.
    """

    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    type_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    skip_first_conv: bool = True
    min_params: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int('seed', self.seed, 0)
        _check_int('min_params', self.min_params, 0)
        if not isinstance(self.skip_first_conv, bool):
            raise ValueError(f'MVQConfig.skip_first_conv={self.skip_first_conv!r} must be a bool')
        if isinstance(self.exclude, str) or not all(isinstance(p, str) for p in self.exclude):
            raise ValueError(f'MVQConfig.exclude={self.exclude!r} must be a list of regex strings')
        object.__setattr__(self, 'exclude', list(self.exclude))
        for pattern in self.exclude:
            self._compile('exclude', pattern)
        for name in ('overrides', 'type_overrides'):
            rules = getattr(self, name)
            if not isinstance(rules, dict):
                raise ValueError(f'MVQConfig.{name}={rules!r} must be a dict '
                                 '{pattern: {field: value}}')
            for key, values in rules.items():
                if name == 'overrides':
                    self._compile(name, key)
                if not isinstance(values, dict):
                    raise ValueError(f'MVQConfig.{name}[{key!r}]={values!r} must be a dict '
                                     f'of fields; allowed fields: {list(LAYER_FIELDS)}')
                unknown = sorted(set(values) - set(LAYER_FIELDS))
                if unknown:
                    raise ValueError(f'MVQConfig.{name}[{key!r}] has unknown field(s) {unknown}; '
                                     f'allowed fields: {list(LAYER_FIELDS)}')
                # Validate the refined values now, not at compression time.
                dataclasses.replace(self.global_layer(), **values)

    @staticmethod
    def _compile(name: str, pattern: str) -> re.Pattern:
        try:
            return re.compile(pattern)
        except re.error as err:
            raise ValueError(f'MVQConfig.{name} pattern {pattern!r} is not a valid regex: '
                             f'{err}') from None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> 'MVQConfig':
        """Builds a config from a plain dict, naming unknown keys in the error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown MVQConfig field(s) {unknown}; allowed: {sorted(known)}')
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy of every field."""
        return dataclasses.asdict(self)

    def global_layer(self) -> LayerConfig:
        """The global values as a :class:`LayerConfig`."""
        return LayerConfig(**{f: getattr(self, f) for f in LAYER_FIELDS})

    def for_layer(self, name: str, module: Any = None) -> LayerConfig:
        """Resolves the settings of one layer: global < type rule < name rule.

        Args:
            name: Fully qualified module name.
            module: The module (its MRO class names select type rules).

        Returns:
            The layer's validated :class:`LayerConfig`.
        """
        values: dict[str, Any] = {}
        if module is not None:
            mro = [c.__name__ for c in type(module).__mro__]
            # The most specific class name wins: apply from the base upwards.
            for cls_name in reversed(mro):
                values.update(self.type_overrides.get(cls_name, {}))
        for pattern, rule in self.overrides.items():
            if re.fullmatch(pattern, name):
                values.update(rule)
        return dataclasses.replace(self.global_layer(), **values)

    def excluded(self, name: str) -> str | None:
        """The first ``exclude`` pattern matching ``name``, or ``None``."""
        for pattern in self.exclude:
            if re.search(pattern, name):
                return pattern
        return None
