"""Compressing any ``nn.Module`` with MVQ in one call, and undoing it.

``compress`` plans, prunes and clusters every planned layer and only then attaches the
:class:`~mvq_plugin.core.parametrize.MVQWeight` parametrizations, so a failure leaves the
model unchanged. ``to_dense`` bakes the effective weights back into plain layers;
``codebook_param_groups`` and ``set_codebook_quant`` serve the fine-tuning that follows.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .allocation_plan import with_allocation
from .calibration import NO_CALIBRATION, collect_input_stats
from .cluster import CompressionReport, ProgressFn, cluster_layers, make_job
from .config import CONFIG_ATTR, MVQConfig
from .importance import Importance
from .parametrize import (
    attach_mvq_weight,
    codebook_parameters,
    detach_mvq_weight,
    quantized_layers,
)
from .plan import plan

__all__ = ['compress', 'to_dense', 'codebook_param_groups', 'set_codebook_quant']


def _taylor_grads(model: nn.Module, names: list[str],
                  taylor_loss: Callable[[nn.Module], torch.Tensor]) -> dict[str, torch.Tensor]:
    """``dL/dW`` of the named layers from ``taylor_loss(model)``, leaving existing grads
    intact."""
    modules = {n: model.get_submodule(n) for n in names}
    saved = {n: m.weight.grad for n, m in modules.items()}
    for m in modules.values():
        m.weight.grad = None
    try:
        loss = taylor_loss(model)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError('taylor_loss(model) must return a scalar loss tensor, got '
                             f'{type(loss).__name__}')
        loss.backward()
        grads = {}
        for n, m in modules.items():
            if m.weight.grad is None:
                raise ValueError(f'taylor_loss has no gradient for layer {n!r}')
            grads[n] = m.weight.grad.detach().clone()
    finally:
        for n, m in modules.items():
            m.weight.grad = saved[n]
    return grads


def compress(model: nn.Module, cfg: MVQConfig, *, calib: Iterable[Any] | None = None,
             taylor_loss: Callable[[nn.Module], torch.Tensor] | None = None,
             importance: str | Importance | None = None, backend: str = 'auto',
             progress: ProgressFn | None = None,
             first_conv: str | Sequence[str] | None = None,
             forward_fn: Callable[[nn.Module, Any], Any] | None = None,
             allocation: Any = None) -> CompressionReport:
    """Compresses ``model`` in place with MVQ (or the ``vq``/``prune_vq`` baselines).

    Each planned layer is N:M pruned by importance, clustered with (masked) k-means and given
    an :class:`MVQWeight` parametrization so that its weight is
    ``mask * codebook[assignments]``. Clustering of all layers happens before any layer is
    changed: an error leaves the model as it was.

    Args:
        model: Module to compress (on any device; clustering runs on the weight's device).
        cfg: Settings.
        calib: A few calibration batches for the data-aware settings
            (``importance='activation'``, ``kmeans_weights='activation'``).
        taylor_loss: ``taylor_loss(model) -> scalar loss`` on calibration data, needed by
            ``importance='taylor'``.
        importance: Overrides ``cfg.importance`` with a name or a callable
            ``(weight, grad) -> scores`` (in the sub-vector layout).
        backend: k-means search backend (``'auto'``, ``'torch'``, ``'faiss'``).
        progress: Optional callback ``progress(i, total, name)`` before each layer.
        first_conv: Name(s) of the input conv(s) to keep dense (see :func:`plan`).
        forward_fn: ``forward_fn(model, batch)`` for ``calib`` (default ``model(batch)``).
        allocation: Per-layer settings chosen for a budget, applied over ``cfg``: the JSON
            file ``tools/allocate.py --out plan.json`` writes, its dict, or an
            :class:`~mvq_plugin.Allocation` (:func:`~.allocation_plan.with_allocation`).

    Returns:
        A :class:`CompressionReport`.
    """
    if allocation is not None:
        cfg = with_allocation(cfg, allocation)
    the_plan = plan(model, cfg, first_conv=first_conv)
    todo = the_plan.compressed
    wants_taylor = importance == 'taylor' or (
        importance is None and any(lp.config.importance == 'taylor' for lp in todo))
    if wants_taylor and taylor_loss is None:
        raise ValueError("importance='taylor' needs taylor_loss=callable(model) -> scalar loss")
    grads = _taylor_grads(model, [lp.name for lp in todo], taylor_loss) if wants_taylor else {}
    wants_stats = [lp.name for lp in todo if lp.config.needs_calibration
                   or (importance == 'activation' and lp.config.prunes)]
    if wants_stats and calib is None:
        raise ValueError(f'layers {wants_stats[:3]} use data-aware settings (importance='
                         f"'activation' or kmeans_weights='activation') and {NO_CALIBRATION}; "
                         'compress(calib=None)')
    stats = collect_input_stats(model, wants_stats, calib, forward_fn) if wants_stats else {}
    jobs = []
    for i, lp in enumerate(todo):
        module = model.get_submodule(lp.name)
        jobs.append(make_job(lp.name, module, module.weight, lp.config, cfg.seed + i,
                             importance=importance, grad=grads.get(lp.name),
                             input_sq=stats.get(lp.name)))
    weights, reports = cluster_layers(jobs, backend=backend, progress=progress)
    for lp, q in zip(todo, weights):
        attach_mvq_weight(model.get_submodule(lp.name), q)
    setattr(model, CONFIG_ATTR, cfg)
    return CompressionReport(the_plan, reports)


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
        with torch.no_grad():
            weight = module.weight.detach().clone()
        detach_mvq_weight(module, nn.Parameter(weight))
    return model


def codebook_param_groups(model: nn.Module, weight_decay: float = 0.0,
                          codebook_weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: codewords (no weight decay by default) and the rest.

    Frozen tensors (the dense originals) are left out.

    Args:
        model: A compressed model.
        weight_decay: Weight decay of every other trainable parameter.
        codebook_weight_decay: Weight decay of the codewords (and LSQ scales).

    Returns:
        ``[{'params': codebooks, 'weight_decay': ...}, {'params': rest, 'weight_decay': ...}]``.
    """
    books = [p for q in quantized_layers(model).values() for p in codebook_parameters(q)]
    ids = {id(p) for p in books}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [dict(params=books, weight_decay=codebook_weight_decay),
            dict(params=rest, weight_decay=weight_decay)]


def set_codebook_quant(model: nn.Module, enabled: bool = True) -> int:
    """Switches int8 codebook fake quantization (STE) on or off; returns layers changed."""
    layers = quantized_layers(model)
    for q in layers.values():
        q.codebook_quant = enabled
    return len(layers)


