"""Planning and applying MVQ to any ``nn.Module``.

``plan`` decides, per conv/linear layer, the settings or the reason it stays dense;
``compress`` prunes, clusters every planned layer and only then attaches the
:class:`~mvq_plugin.core.parametrize.MVQWeight` parametrizations, so a failure leaves the model
unchanged. ``to_dense`` bakes the effective weights back into plain layers.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Collection, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .accounting import layer_bits
from .blocking import blocking_error, from_subvectors, to_subvectors
from .config import LayerConfig, MVQConfig
from .importance import Importance, get_importance
from .kmeans import masked_kmeans
from .nm import nm_mask
from .parametrize import MVQWeight

__all__ = ['LayerPlan', 'Plan', 'plan', 'compress', 'CompressionReport', 'LayerReport',
           'quantized_layers', 'to_dense', 'codebook_param_groups', 'set_codebook_quant',
           'is_compressed', 'register_layer_type', 'attach_mvq_weight', 'CONFIG_ATTR']

logger = logging.getLogger('mvq_plugin')

#: Attribute under which :func:`compress` leaves its :class:`MVQConfig` on the model (the
#: artifact stores it; :func:`mvq_plugin.load` puts it back).
CONFIG_ATTR = 'mvq_config'

#: ``progress(index, total, layer_name)``, called before each layer is clustered.
ProgressFn = Callable[[int, int, str], None]


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
    def compressed(self) -> bool:
        """Whether the layer will be compressed."""
        return self.reason is None

    @property
    def numel(self) -> int:
        """Weight elements."""
        return math.prod(self.weight_shape)

    def record(self) -> dict:
        """Flat, JSON-ready record."""
        cfg = self.config
        return dict(name=self.name, type=self.type, weight_shape=list(self.weight_shape),
                    compressed=self.compressed, method=cfg.method if cfg else None,
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
        return [lp for lp in self.layers if lp.compressed]

    @property
    def skipped(self) -> list[LayerPlan]:
        """The layers that stay dense, each with its reason."""
        return [lp for lp in self.layers if not lp.compressed]

    def records(self) -> list[dict]:
        """One flat record per layer."""
        return [lp.record() for lp in self.layers]

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
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ['  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, '  '.join('-' * w for w in widths))
        n_c = len(self.compressed)
        lines.append(f'{n_c} of {len(self.layers)} layers compressed, '
                     f'{len(self.layers) - n_c} kept dense (reasons above)')
        return '\n'.join(lines)


def is_compressed(module: nn.Module) -> bool:
    """Whether ``module.weight`` is an MVQ weight."""
    return (parametrize.is_parametrized(module, 'weight')
            and any(isinstance(p, MVQWeight) for p in module.parametrizations.weight))


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
    error = blocking_error(shape, lcfg.block_size, lcfg.vector_axis)
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
        bits = layer_bits(numel, lcfg.block_size, lcfg.num_codewords, lcfg.n, lcfg.m,
                          lcfg.codebook_bits, prunes=lcfg.prunes).total
        result.layers.append(LayerPlan(name, type(module).__name__, shape, lcfg,
                                       numel // lcfg.block_size, bits))
    return result


@dataclass
class LayerReport:
    """Outcome of clustering one layer.

    Attributes:
        name: Module name.
        masked_sse: Final k-means objective ``sum ||m * (w - c_a)||^2``.
        relative_error: ``||W - W_hat||_F / ||W||_F`` (pruning and clustering together).
        iterations: Lloyd update steps.
        seconds: Wall time of pruning and clustering.
        bits: Bits of the compressed weight.
        objective: The objective after each assignment step.
    """

    name: str
    masked_sse: float
    relative_error: float
    iterations: int
    seconds: float
    bits: int
    objective: list[float] = field(default_factory=list)


@dataclass
class CompressionReport:
    """What :func:`compress` did: the plan and one :class:`LayerReport` per compressed layer."""

    plan: Plan
    layers: list[LayerReport] = field(default_factory=list)

    def records(self) -> list[dict]:
        """One flat record per compressed layer (without the objective history)."""
        return [{k: v for k, v in asdict(r).items() if k != 'objective'} for r in self.layers]

    def __str__(self) -> str:
        lines = [f'{"layer":40s} {"rel.err":>8s} {"iters":>5s} {"sec":>6s} {"bits":>12s}']
        for r in self.layers:
            lines.append(f'{r.name:40s} {r.relative_error:8.4f} {r.iterations:5d} '
                         f'{r.seconds:6.2f} {r.bits:12,d}')
        return '\n'.join(lines)


def _calibration_grads(model: nn.Module, names: list[str],
                       calib: Callable[[nn.Module], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``dL/dW`` of the named layers from ``calib(model)``, leaving existing grads intact."""
    modules = {n: model.get_submodule(n) for n in names}
    saved = {n: m.weight.grad for n, m in modules.items()}
    for m in modules.values():
        m.weight.grad = None
    try:
        loss = calib(model)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError('calib(model) must return a scalar loss tensor, got '
                             f'{type(loss).__name__}')
        loss.backward()
        grads = {}
        for n, m in modules.items():
            if m.weight.grad is None:
                raise ValueError(f'calibration loss has no gradient for layer {n!r}')
            grads[n] = m.weight.grad.detach().clone()
    finally:
        for n, m in modules.items():
            m.weight.grad = saved[n]
    return grads


def _cluster_layer(weight: torch.Tensor, grad: torch.Tensor | None, lcfg: LayerConfig,
                   importance: Importance, seed: int, backend: str
                   ) -> tuple[MVQWeight, float, float, int, list[float]]:
    """Prunes and clusters one weight; returns the parametrization and its figures."""
    d, axis = lcfg.block_size, lcfg.vector_axis
    vectors = to_subvectors(weight.detach(), d, axis).float()
    if lcfg.prunes:
        g = to_subvectors(grad, d, axis).float() if grad is not None else None
        mask = nm_mask(importance(vectors, g), lcfg.n, lcfg.m)
    else:
        mask = torch.ones_like(vectors, dtype=torch.bool)
    k_mask = mask if lcfg.masked_clustering else None
    # prune_vq clusters the zero-filled vectors with plain k-means.
    k_input = vectors * mask if lcfg.method == 'prune_vq' else vectors
    result = masked_kmeans(k_input, k_mask, lcfg.num_codewords, iters=lcfg.kmeans_iters,
                           seed=seed, init=lcfg.kmeans_init, tol=lcfg.tol, backend=backend)
    q = MVQWeight(result.codebook, result.assignments, mask, tuple(weight.shape), axis,
                  n=lcfg.n if lcfg.prunes else lcfg.m, m=lcfg.m, method=lcfg.method,
                  codebook_bits=lcfg.codebook_bits)
    with torch.no_grad():
        w_hat = from_subvectors(result.codebook[result.assignments] * mask, weight.shape, axis)
        err = (weight.float() - w_hat).pow(2).sum().sqrt() / weight.float().pow(2).sum().sqrt()
        sse = float(((vectors - result.codebook[result.assignments]) * mask).pow(2).sum())
    return q, sse, float(err), result.iterations, result.objective


def compress(model: nn.Module, cfg: MVQConfig,
             calib: Callable[[nn.Module], torch.Tensor] | None = None, *,
             importance: str | Importance | None = None, backend: str = 'auto',
             progress: ProgressFn | None = None,
             first_conv: str | Sequence[str] | None = None) -> CompressionReport:
    """Compresses ``model`` in place with MVQ (or the ``vq``/``prune_vq`` baselines).

    Each planned layer is N:M pruned by importance, clustered with (masked) k-means and given
    an :class:`MVQWeight` parametrization so that its weight is
    ``mask * codebook[assignments]``. Clustering of all layers happens before any layer is
    changed: an error leaves the model as it was.

    Args:
        model: Module to compress (on any device; clustering runs on the weight's device).
        cfg: Settings.
        calib: ``calib(model) -> scalar loss`` on calibration data, needed by
            ``importance='taylor'``.
        importance: Overrides ``cfg.importance`` with a name or a callable
            ``(weight, grad) -> scores`` (in the sub-vector layout).
        backend: k-means search backend (``'auto'``, ``'torch'``, ``'faiss'``).
        progress: Optional callback ``progress(i, total, name)`` before each layer.
        first_conv: Name(s) of the input conv(s) to keep dense (see :func:`plan`).

    Returns:
        A :class:`CompressionReport`.
    """
    the_plan = plan(model, cfg, first_conv=first_conv)
    todo = the_plan.compressed
    wants_taylor = importance == 'taylor' or (
        importance is None and any(lp.config.importance == 'taylor' for lp in todo))
    if wants_taylor and calib is None:
        raise ValueError("importance='taylor' needs calib=callable(model) -> scalar loss")
    grads = _calibration_grads(model, [lp.name for lp in todo], calib) if wants_taylor else {}

    report = CompressionReport(the_plan)
    built: list[tuple[nn.Module, MVQWeight]] = []
    for i, lp in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), lp.name)
        module = model.get_submodule(lp.name)
        fn = get_importance(importance if importance is not None else lp.config.importance)
        start = time.perf_counter()
        q, sse, err, iters, objective = _cluster_layer(
            module.weight, grads.get(lp.name), lp.config, fn, cfg.seed + i, backend)
        seconds = time.perf_counter() - start
        logger.info('[%d/%d] %s %s: rel.err %.4f, %d iters, %.2fs', i + 1, len(todo), lp.name,
                    'x'.join(map(str, lp.weight_shape)), err, iters, seconds)
        q.layer_config = lp.config
        built.append((module, q))
        report.layers.append(LayerReport(lp.name, sse, err, iters, seconds, lp.bits, objective))
    for module, q in built:
        attach_mvq_weight(module, q)
    setattr(model, CONFIG_ATTR, cfg)
    if progress is not None:
        progress(len(todo), len(todo), '')
    return report


def attach_mvq_weight(module: nn.Module, q: MVQWeight) -> None:
    """Makes ``q`` the parametrization of ``module.weight``, in place.

    ``q`` is moved to the weight's device; the dense weight stays as the frozen
    ``parametrizations.weight.original`` (no gradient). Used by :func:`compress` and by
    :func:`mvq_plugin.load`.

    Args:
        module: A layer with a plain ``weight`` of shape ``q.weight_shape``.
        q: The MVQ weight.
    """
    q.to(module.weight.device)
    parametrize.register_parametrization(module, 'weight', q)
    module.parametrizations.weight.original.requires_grad_(False)


def quantized_layers(model: nn.Module) -> dict[str, MVQWeight]:
    """``{module_name: MVQWeight}`` of every compressed layer.

    Each value holds ``codebook`` (k x d Parameter), ``assignments`` (n,) and ``mask``
    (n x d bool) in the sub-vector layout of docs/design.md section 2.
    """
    out = {}
    for name, module in model.named_modules():
        if is_compressed(module):
            out[name] = next(p for p in module.parametrizations.weight
                             if isinstance(p, MVQWeight))
    return out


def to_dense(model: nn.Module) -> nn.Module:
    """Bakes every MVQ weight into a plain ``weight`` Parameter, in place.

    The resulting layers compute exactly what the compressed ones computed (including int8
    fake quantization if it was switched on).

    Returns:
        ``model``.
    """
    for name in quantized_layers(model):
        module = model.get_submodule(name)
        if list(module.parametrizations.keys()) != ['weight']:
            parametrize.remove_parametrizations(module, 'weight', leave_parametrized=True)
            module.weight.requires_grad_(True)
            continue
        # Undo the parametrization by hand: ``remove_parametrizations`` deletes the injected
        # ``weight`` property from the class, which ``copy.deepcopy`` shares between copies.
        with torch.no_grad():
            weight = module.weight.detach().clone()
        del module.parametrizations
        module.__class__ = module.__class__.__bases__[0]
        module.weight = nn.Parameter(weight)
    return model


def codebook_param_groups(model: nn.Module, weight_decay: float = 0.0,
                          codebook_weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: codewords (no weight decay by default) and the rest.

    Frozen tensors (the dense originals) are left out.

    Args:
        model: A compressed model.
        weight_decay: Weight decay of every other trainable parameter.
        codebook_weight_decay: Weight decay of the codewords.

    Returns:
        ``[{'params': codebooks, 'weight_decay': ...}, {'params': rest, 'weight_decay': ...}]``.
    """
    books = [q.codebook for q in quantized_layers(model).values()]
    ids = {id(p) for p in books}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [dict(params=books, weight_decay=codebook_weight_decay),
            dict(params=rest, weight_decay=weight_decay)]


def set_codebook_quant(model: nn.Module, enabled: bool = True) -> int:
    """Switches int8 codebook fake quantization (STE) on or off; returns layers changed."""
    layers = quantized_layers(model)
    for q in layers.values():
        q.quantize = enabled
    return len(layers)


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
