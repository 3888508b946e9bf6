"""Staged compression for training frameworks: structure first, clustering later.

Frameworks such as mmengine build the optimizer and the DDP wrapper before any hook runs, so
the codebooks must exist as parameters when the model is built, while the clustering must
run later, on the dense weights loaded from a checkpoint. The three steps:

1. :func:`prepare` attaches an :class:`~mvq_plugin.core.parametrize.MVQWeight` to every
   planned layer in ``Stage.DENSE``: the frozen dense weight passes through unchanged and
   the codebook, assignments and mask are placeholders of their final shapes.
2. :func:`prune_prepared` (optional) computes the N:M masks from the current dense weights
   (``Stage.PRUNED``: the layer computes ``original * mask``, for sparse fine-tuning).
3. :func:`cluster_prepared` clusters each layer's (masked) dense weight and writes codebook,
   assignments and mask *in place* (``Stage.CLUSTERED``), so optimizer state and DDP
   registrations stay valid.

The stage is a buffer, so checkpoints carry it: a resumed or tested model never re-clusters.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from .calibration import InputStats
from .cluster import CompressionReport, ProgressFn, cluster_layers, layer_mask, make_job
from .config import CONFIG_ATTR, MVQConfig
from .parametrize import (
    MVQWeight,
    Stage,
    attach_mvq_weight,
    detach_mvq_weight,
    quantized_layers,
)
from .plan import Plan, plan

__all__ = ['prepare', 'prune_prepared', 'cluster_prepared', 'pending_layers', 'layer_stages',
           'dense_view']

def prepare(model: nn.Module, cfg: MVQConfig, *, train_dense: bool = False,
            first_conv: str | Sequence[str] | None = None) -> Plan:
    """Attaches placeholder MVQ weights (``Stage.DENSE``) to every planned layer.

    The model computes exactly what it computed before; ``model.parameters()`` now include
    each layer's ``(k, d)`` codebook. ``cfg`` is recorded on the model (``CONFIG_ATTR``), so
    the artifact saved at the end carries the settings.

    Args:
        model: Module to prepare, in place.
        cfg: Settings.
        train_dense: Keep the dense originals trainable (for sparse fine-tuning before
            clustering); otherwise they are frozen.
        first_conv: Name(s) of the input conv(s) to keep dense (see
            :func:`~mvq_plugin.core.plan.plan`).

    Returns:
        The :class:`~mvq_plugin.core.plan.Plan` that was applied.
    """
    the_plan = plan(model, cfg, first_conv=first_conv)
    for lp in the_plan.compressed:
        module = model.get_submodule(lp.name)
        lcfg = lp.config
        d, count = lcfg.block_size, lp.num_subvectors
        weight = module.weight
        q = MVQWeight(torch.zeros(lcfg.num_codewords, d, device=weight.device),
                      torch.zeros(count, dtype=torch.long, device=weight.device),
                      torch.ones(count, d, dtype=torch.bool, device=weight.device),
                      lp.weight_shape, lcfg.vector_axis,
                      n=lcfg.n if lcfg.prunes else lcfg.m, m=lcfg.m, method=lcfg.method,
                      codebook_bits=lcfg.codebook_bits, stage=Stage.DENSE,
                      codebook_scale=lcfg.codebook_scale)
        q.layer_config = lcfg
        attach_mvq_weight(module, q)
        module.parametrizations.weight.original.requires_grad_(train_dense)
    setattr(model, CONFIG_ATTR, cfg)
    return the_plan


def layer_stages(model: nn.Module) -> dict[str, Stage]:
    """``{layer_name: stage}`` of every MVQ layer."""
    return {name: q.current_stage for name, q in quantized_layers(model).items()}


def pending_layers(model: nn.Module) -> list[str]:
    """Names of MVQ layers not clustered yet."""
    return [name for name, stage in layer_stages(model).items() if stage != Stage.CLUSTERED]


def _original(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_submodule(name).parametrizations.weight.original


def _config_of(name: str, q: MVQWeight):
    if q.layer_config is None:
        raise ValueError(f'layer {name!r} has no layer_config: it was not built by prepare()')
    return q.layer_config


def prune_prepared(model: nn.Module, names: Iterable[str] | None = None, *,
                   input_stats: InputStats | None = None) -> list[str]:
    """N:M-prunes the dense weights of prepared layers (``Stage.DENSE`` -> ``PRUNED``).

    Importances that need a gradient (``taylor``) are not supported here.

    Args:
        model: A model after :func:`prepare`.
        names: Layers to prune (default: every layer still in ``Stage.DENSE``).
        input_stats: Calibration statistics (:func:`~mvq_plugin.core.calibration.
            collect_input_stats`) for ``importance='activation'``.

    Returns:
        The names of the layers pruned.
    """
    layers = quantized_layers(model)
    names = [n for n, q in layers.items() if q.current_stage == Stage.DENSE] if names is None \
        else list(names)
    stats = input_stats or {}
    for name in names:
        q = layers[name]
        lcfg = _config_of(name, q)
        if lcfg.prunes:
            if lcfg.importance == 'taylor':
                raise ValueError(f"prune_prepared: layer {name!r} has importance='taylor', "
                                 "which needs gradients; use 'magnitude' or 'activation'")
            job = make_job(name, model.get_submodule(name), _original(model, name), lcfg, 0,
                           input_sq=stats.get(name) if lcfg.mask_reads_stats else None)
            q.mask.copy_(layer_mask(job))
        q.stage.fill_(Stage.PRUNED)
    return names


@torch.no_grad()
def cluster_prepared(model: nn.Module, names: Iterable[str] | None = None, *, seed: int = 0,
                     backend: str = 'auto', progress: ProgressFn | None = None,
                     input_stats: InputStats | None = None) -> CompressionReport:
    """Clusters prepared layers in place (-> ``Stage.CLUSTERED``).

    A layer in ``Stage.PRUNED`` keeps its mask; one in ``Stage.DENSE`` is pruned
    first. Layer ``i`` of the model's MVQ layers uses seed ``seed + i`` (the same seeds
    :func:`~mvq_plugin.core.compress.compress` uses), whichever subset is clustered, so
    layers may be split across processes and still match a single-process run.

    Args:
        model: A model after :func:`prepare`.
        names: Layers to cluster (default: every pending layer).
        seed: Base seed.
        backend: k-means search backend.
        progress: Optional ``progress(i, total, name)`` before each layer.
        input_stats: Calibration statistics for the data-aware settings.

    Returns:
        A :class:`~mvq_plugin.core.cluster.CompressionReport` (its plan is empty).
    """
    layers = quantized_layers(model)
    index = {n: i for i, n in enumerate(layers)}
    names = pending_layers(model) if names is None else list(names)
    stats = input_stats or {}
    jobs = []
    for name in names:
        q = layers[name]
        lcfg = _config_of(name, q)
        pruned = q.current_stage == Stage.PRUNED
        jobs.append(make_job(name, model.get_submodule(name), _original(model, name), lcfg,
                             seed + index[name],
                             importance=_keep_mask(q.mask) if pruned else None,
                             input_sq=stats.get(name)))
    weights, reports = cluster_layers(jobs, backend=backend, progress=progress)
    for name, built in zip(names, weights):
        layers[name].take_state(built)
    return CompressionReport(Plan(), reports)


def _keep_mask(mask: torch.Tensor):
    """An importance that reproduces an existing mask (kept positions score 1)."""
    def importance(vectors: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
        return mask.to(vectors.dtype)
    return importance


@contextlib.contextmanager
def dense_view(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily shows every MVQ layer as the plain layer it was built from.

    Inside, each layer's ``weight`` is its dense original (the same ``Parameter`` object) and
    the layer has its original class, so code written for the upstream structure (e.g.
    OpenMMLab ``init_weights`` rules that visit every submodule) runs unchanged. On exit the
    same :class:`MVQWeight` objects are attached again: codebooks, buffers and parameter
    identities (optimizer, DDP) are preserved.
    """
    saved = []
    for name, q in quantized_layers(model).items():
        module = model.get_submodule(name)
        try:
            detach_mvq_weight(module, module.parametrizations.weight.original)
        except ValueError as err:
            raise ValueError(f'dense_view: layer {name!r}: {err}') from None
        saved.append((module, q))
    try:
        yield model
    finally:
        for module, q in saved:
            parametrize.register_parametrization(module, 'weight', q)
