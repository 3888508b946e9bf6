"""Which layers MVQ compresses, with which settings, or why a layer stays dense.

:func:`plan` lists every conv/linear layer (and every other module owning a weight matrix, so
nothing is skipped silently) as a :class:`LayerPlan`; :func:`register_layer_type` admits
framework layers; :func:`check_patterns` refuses ``exclude``/``overrides`` patterns that match
nothing.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Iterator, Sequence

from torch import nn
from torch.nn.utils import parametrize

from .bits import layer_bits
from .blocking import blocking_error
from .config import LayerConfig, MVQConfig
from .parametrize import is_compressed
from .table import render_table

__all__ = ['LayerPlan', 'Plan', 'plan', 'register_layer_type', 'check_patterns', 'LayerCheck']


@dataclass
class LayerPlan:
    """One conv/linear layer: its settings when compressed, or why it is not.

    Attributes:
        name: Module name.
        type: Class name.
        weight_shape: Shape of ``weight``.
        config: Resolved settings (``None`` when skipped).
        num_subvectors: ``numel / d`` (0 when skipped).
        bits: Bits the layer's weight costs after compression (``32 * numel`` when skipped).
        reason: Why the layer stays dense (``None`` when compressed).
    """

    name: str
    type: str
    weight_shape: tuple[int, ...]
    config: LayerConfig | None = None
    num_subvectors: int = 0
    bits: int = 0
    reason: str | None = None

    @property
    def will_compress(self) -> bool:
        """Whether the layer will be compressed (``Plan.compressed`` lists these layers)."""
        return self.reason is None

    @property
    def numel(self) -> int:
        """Weight elements."""
        return math.prod(self.weight_shape)

    def record(self) -> dict:
        """Flat, JSON-ready record."""
        cfg = self.config
        return dict(name=self.name, type=self.type, weight_shape=list(self.weight_shape),
                    compressed=self.will_compress, method=cfg.method if cfg else None,
                    vector_axis=cfg.vector_axis if cfg else None,
                    block_size=cfg.block_size if cfg else None,
                    num_codewords=cfg.num_codewords if cfg else None,
                    n=cfg.n if cfg else None, m=cfg.m if cfg else None,
                    num_subvectors=self.num_subvectors, bits=self.bits, reason=self.reason)


@dataclass
class Plan:
    """Per-layer plan of a model (``str()`` renders a table)."""

    layers: list[LayerPlan] = field(default_factory=list)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def compressed(self) -> list[LayerPlan]:
        """The layers that will be compressed."""
        return [lp for lp in self.layers if lp.will_compress]

    @property
    def skipped(self) -> list[LayerPlan]:
        """The layers that stay dense, each with its reason."""
        return [lp for lp in self.layers if not lp.will_compress]

    def records(self) -> list[dict]:
        """One flat record per layer."""
        return [lp.record() for lp in self.layers]

    def model_bits(self, model: nn.Module) -> int:
        """Bits of ``model``'s parameters once planned: the compressed layers' weights as
        planned, every other parameter (biases, norms, dense layers) at 32 bits. ``model`` may
        already be compressed (its codebooks are then not counted twice)."""
        planned = {id(_weight(model.get_submodule(lp.name))) for lp in self.compressed}
        rest = sum(p.numel() for p in _dense_parameters(model) if id(p) not in planned)
        return sum(lp.bits for lp in self.compressed) + 32 * rest

    def compression_ratio(self, model: nn.Module) -> float:
        """``32 * parameters / model_bits``: the ratio the accounting will report."""
        total = sum(p.numel() for p in _dense_parameters(model))
        return 32 * total / self.model_bits(model)

    @property
    def layers_ratio(self) -> float:
        """``32 * weights / bits`` over the compressed layers only: the paper's Eq. 7
        (assignments, masks and codebooks against the fp32 weights they replace)."""
        bits = sum(lp.bits for lp in self.compressed)
        return 32 * sum(lp.numel for lp in self.compressed) / bits if bits else float('nan')

    def __str__(self) -> str:
        head = ('layer', 'type', 'shape', 'method', 'd', 'k', 'N:M', 'subvectors', 'bits',
                'note')
        rows = [head]
        for lp in self.layers:
            c = lp.config
            rows.append((lp.name, lp.type, 'x'.join(map(str, lp.weight_shape)),
                         c.method if c else '-', str(c.block_size) if c else '-',
                         str(c.num_codewords) if c else '-',
                         f'{c.n}:{c.m}' if c and c.prunes else '-',
                         str(lp.num_subvectors) if c else '-', f'{lp.bits:,}',
                         lp.reason or ''))
        lines = render_table(rows).split('\n')
        n_c = len(self.compressed)
        lines.append(f'{n_c} of {len(self.layers)} layers compressed, '
                     f'{len(self.layers) - n_c} kept dense (reasons above)')
        return '\n'.join(lines)


def _weight(module: nn.Module) -> nn.Parameter:
    """The tensor ``module.weight`` is derived from: itself, or a parametrization's original."""
    if parametrize.is_parametrized(module, 'weight'):
        return module.parametrizations.weight.original
    return module.weight


def _dense_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The parameters of ``model`` before compression: a parametrized weight by its original
    tensor, the parametrizations' own tensors (codebooks, scales) left out."""
    own = {id(p) for m in model.modules() if parametrize.is_parametrized(m, 'weight')
           for p in m.parametrizations.weight.parameters()
           if p is not m.parametrizations.weight.original}
    return (p for p in model.parameters() if id(p) not in own)


#: ``check(module, layer_config) -> reason | None`` of a registered layer type.
LayerCheck = Callable[[nn.Module, LayerConfig], 'str | None']

#: Layer types beyond ``Conv2d``/``Linear`` that :func:`plan` may compress.
_LAYER_TYPES: dict[type, LayerCheck] = {}


def register_layer_type(cls: type, check: LayerCheck) -> None:
    """Lets :func:`plan` compress a module type that is not an ``nn.Conv2d``/``nn.Linear``.

    The module must keep its weight as its own ``weight`` Parameter, laid out so that
    :func:`~mvq_plugin.core.blocking.to_subvectors` (a plain ``reshape(-1, d)`` for a weight
    that is not 4-D) cuts the sub-vectors the chosen ``vector_axis`` promises. ``check`` says
    why one instance cannot be compressed with its resolved settings (``None``: it can); it
    replaces the conv checks (depthwise, blocking), while exclusion, the first conv,
    ``min_params`` and the codeword count still apply. Integrations register their
    framework's layers this way (e.g. timm's ``CondConv2d``).

    Args:
        cls: The module class (subclasses match too).
        check: ``check(module, layer_config) -> reason | None``.
    """
    _LAYER_TYPES[cls] = check


def _layer_check(module: nn.Module) -> LayerCheck | None:
    for cls in type(module).__mro__:
        if cls in _LAYER_TYPES:
            return _LAYER_TYPES[cls]
    return None


def _has_matrix_weight(module: nn.Module) -> bool:
    """Whether a module of another type holds a >= 2-D ``weight`` of its own."""
    if parametrize.is_parametrized(module, 'weight'):
        return True
    weight = module._parameters.get('weight')
    return weight is not None and weight.dim() >= 2


def _candidates(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    # Conv/linear layers, plus any other module owning a weight matrix (listed as
    # unsupported unless registered), so that nothing is skipped silently.
    for name, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) or _has_matrix_weight(module):
            yield name, module


def _skip_reason(name: str, module: nn.Module, cfg: MVQConfig, lcfg: LayerConfig,
                 first_convs: Collection[str]) -> str | None:
    if is_compressed(module):
        return 'already compressed'
    check = _layer_check(module)
    if check is None and (not isinstance(module, (nn.Conv2d, nn.Linear))
                          or getattr(module, 'transposed', False)):
        return f'unsupported layer type {type(module).__name__} (only Conv2d and Linear)'
    pattern = cfg.excluded(name)
    if pattern is not None:
        return f'excluded by pattern {pattern!r}'
    if cfg.skip_first_conv and name in first_convs:
        return 'first conv (skip_first_conv)'
    shape = tuple(module.weight.shape)
    if check is not None:
        error = check(module, lcfg)
        if error:
            return error
    elif isinstance(module, nn.Conv2d) and module.groups > 1 and shape[1] == 1:
        return f'depthwise conv (groups={module.groups}, C_in/groups=1)'
    error = blocking_error(shape, lcfg.block_size, lcfg.vector_axis,
                           getattr(module, 'groups', 1))
    if error:
        return error
    numel = math.prod(shape)
    if numel < cfg.min_params:
        return f'too small ({numel} weights < min_params={cfg.min_params})'
    if numel // lcfg.block_size < lcfg.num_codewords:
        return (f'fewer sub-vectors ({numel // lcfg.block_size}) than codewords '
                f'(k={lcfg.num_codewords})')
    return None


def plan(model: nn.Module, cfg: MVQConfig, *,
         first_conv: str | Sequence[str] | None = None) -> Plan:
    """Per-layer plan without clustering.

    Every ``_ConvNd``/``Linear`` module, and every other module owning a weight matrix, is
    listed: compressed ones with their resolved settings, sub-vector count and bits, the rest
    with the reason they stay dense.

    Args:
        model: Any module.
        cfg: The MVQ settings.
        first_conv: Name(s) of the input conv(s) that ``cfg.skip_first_conv`` keeps dense
            (e.g. timm's ``pretrained_cfg['first_conv']``); ``None``: the first ``nn.Conv2d``
            in module order.

    Returns:
        A :class:`Plan`.
    """
    if not isinstance(cfg, MVQConfig):
        raise ValueError(f'cfg must be an MVQConfig, got {type(cfg).__name__}')
    if first_conv is None:
        guess = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
        first_convs = {guess} if guess is not None else set()
    else:
        first_convs = {first_conv} if isinstance(first_conv, str) else set(first_conv)
    result = Plan()
    for name, module in _candidates(model):
        lcfg = cfg.for_layer(name, module)
        shape = tuple(module.weight.shape)
        reason = _skip_reason(name, module, cfg, lcfg, first_convs)
        if reason:
            result.layers.append(LayerPlan(name, type(module).__name__, shape, None, 0,
                                           32 * math.prod(shape), reason))
            continue
        numel = math.prod(shape)
        bits = layer_bits(numel, d=lcfg.block_size, k=lcfg.num_codewords, n=lcfg.n,
                          m=lcfg.m, codebook_bits=lcfg.codebook_bits,
                          prunes=lcfg.prunes).total
        result.layers.append(LayerPlan(name, type(module).__name__, shape, lcfg,
                                       numel // lcfg.block_size, bits))
    return result


def check_patterns(model: nn.Module, cfg: MVQConfig) -> None:
    """Raises ``ValueError`` for an ``exclude``/``overrides`` pattern that matches no layer.

    A typo in a layer pattern would otherwise silently compress (or keep dense) the layers
    the user meant to treat differently.
    """
    names = [name for name, _ in _candidates(model)]
    rules = [('exclude', p, lambda p, n: re.search(p, n)) for p in cfg.exclude]
    rules += [('overrides', p, lambda p, n: re.fullmatch(p, n)) for p in cfg.overrides]
    for field_name, pattern, match in rules:
        if not any(match(pattern, n) for n in names):
            sample = ', '.join(names[:6]) + (', ...' if len(names) > 6 else '')
            raise ValueError(f'MVQConfig.{field_name} pattern {pattern!r} matches no conv/linear '
                             f'layer of {type(model).__name__} (layers: {sample})')
