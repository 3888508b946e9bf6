"""timm adapter: MVQ on any timm model with one call.

::

    from mvq_plugin.integrations import timm as mvq_timm

    model = mvq_timm.create_model(
        'resnet50', mvq=dict(num_codewords=256, block_size=8, n=2, m=8),
        pretrained_file='resnet50_a1_in1k.safetensors', num_classes=1000,
        classifier=dict(num_codewords=1024, block_size=4))
    print(model.mvq_plan)                      # every layer: settings or why it stays dense
    mvq_plugin.save(model, 'resnet50.mvq')     # compact artifact
    model = mvq_timm.load_model('resnet50', 'resnet50.mvq', num_classes=1000)

What timm conventions are kept:

* Dense weights come from a local file through timm's own loader
  (``pretrained=True, pretrained_cfg_overlay=dict(file=...)``), so timm's checkpoint filters,
  classifier re-sizing (``num_classes``) and input-conv adaptation (``in_chans``) apply. Nothing
  is ever downloaded: without a file the model is built with ``pretrained=False``.
* The model stays the timm model it was (compression parametrizes ``weight`` in place), so
  ``model.pretrained_cfg``/``model.default_cfg`` and
  ``timm.data.resolve_data_config(model=model)`` keep working, and timm's layer subclasses
  (``StdConv2d``/``ScaledStdConv2d`` weight standardisation, ``Conv2dSame`` padding,
  ``MixedConv2d`` splits) run their own ``forward`` on the MVQ weight.
* The first conv kept dense is the one timm names in ``pretrained_cfg['first_conv']``, and
  ``pretrained_cfg['classifier']`` names the classifier that ``classifier=`` configures.
* ``CondConv2d`` (expert weights of shape ``(num_experts, O*C*kh*kw)``, not a conv weight) is
  compressed where its memory layout is the MVQ layout -- 1x1 kernels along the input channel,
  any kernel with ``vector_axis='spatial'`` -- and otherwise listed in the plan with the reason.

Attributes set on a compressed model (plain Python attributes, not in the state dict):

* ``model.mvq_config``: the resolved :class:`~mvq_plugin.core.config.MVQConfig` (including
  the classifier rule);
* ``model.mvq_plan``: the :class:`~mvq_plugin.core.plan.Plan` (``str()`` is a table with the
  reason for every dense layer);
* ``model.mvq_report``: the :class:`~mvq_plugin.core.cluster.CompressionReport` (per-layer
  clustering error and time; ``None`` for a model loaded from an artifact);
* ``model.mvq_allocation``: with ``budget=``, the :class:`~mvq_plugin.allocation.Allocation`
  that chose each layer's settings (``create_model('resnet18', budget=dict(bytes='2MiB'),
  calib=[x])``).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterable

import timm
import torch
from torch import nn

from ..allocation import Allocation, Budget, allocate
from ..core.cluster import ProgressFn
from ..core.compress import compress
from ..core.config import MVQConfig
from ..core.importance import Importance
from ..core.parametrize import codebook_parameters, quantized_layers
from ..core.plan import Plan
from ..core.plan import plan as core_plan
from ..core.presets import config_from
from ..core.recipe import MVQRecipe, RecipeResult
from ..core.recipe import run_recipe as core_run_recipe
from ..core.staged import prepare as core_prepare
from .timm_conventions import classifier_names, first_conv_names, pretrained_cfg_of

__all__ = ['create_model', 'create_dense_model', 'compress_model', 'allocate_config',
           'run_recipe', 'prepare_model', 'plan', 'load_model',
           'resolve_config', 'first_conv_names', 'classifier_names', 'param_groups']

logger = logging.getLogger('mvq_plugin')

_HUB_PREFIXES = ('hf-hub:', 'hf_hub:')


def resolve_config(model: nn.Module, mvq: MVQConfig | Mapping[str, Any] | None = None, *,
                   classifier: Mapping[str, Any] | bool | None = None) -> MVQConfig:
    """The :class:`MVQConfig` applied to ``model``, with the classifier rule folded in.

    Args:
        model: A timm model (``pretrained_cfg['classifier']`` names its classifier).
        mvq: An :class:`MVQConfig`, a dict of its fields, or ``None`` for the defaults.
        classifier: ``None``/``True``: the classifier follows the config like any layer;
            ``False``: it stays dense (an ``exclude`` pattern); a dict of layer fields (e.g.
            ``dict(num_codewords=2048, block_size=4)``): its own settings, as an ``overrides``
            rule that wins over every other rule.

    Returns:
        The validated config.
    """
    cfg = config_from(mvq)
    if classifier is None or classifier is True:
        return cfg
    names = classifier_names(model)
    if not names:
        logger.warning('classifier=%r given but the model names no classifier in '
                       'pretrained_cfg; ignored', classifier)
        return cfg
    patterns = [re.escape(n) for n in names]
    if classifier is False:
        return dataclasses.replace(cfg, exclude=[*cfg.exclude, *(f'^{p}$' for p in patterns)])
    if not isinstance(classifier, Mapping):
        raise ValueError(f'classifier={classifier!r} must be None, a bool or a dict of layer '
                         'fields such as dict(num_codewords=2048, block_size=4)')
    overrides = {k: v for k, v in cfg.overrides.items() if k not in patterns}
    overrides.update({p: dict(classifier) for p in patterns})
    return dataclasses.replace(cfg, overrides=overrides)


def plan(model: nn.Module, mvq: MVQConfig | Mapping[str, Any] | None = None, *,
         classifier: Mapping[str, Any] | bool | None = None) -> Plan:
    """What :func:`compress_model` would do to ``model``, without clustering.

    Args:
        model: A timm model (or any module).
        mvq: Settings (see :func:`resolve_config`).
        classifier: The classifier rule (see :func:`resolve_config`).

    Returns:
        The per-layer :class:`~mvq_plugin.core.plan.Plan`.
    """
    cfg = resolve_config(model, mvq, classifier=classifier)
    return core_plan(model, cfg, first_conv=first_conv_names(model))


def allocate_config(model: nn.Module, cfg: MVQConfig, budget: Any, *,
                    calib: Iterable[Any] | None,
                    choices: Any = None, sensitivity_cache: Any = None,
                    backend: str = 'auto') -> tuple[MVQConfig, Allocation]:
    """``cfg`` refined by :func:`mvq_plugin.allocate` for ``budget`` on a timm model.

    The first conv follows ``pretrained_cfg``; an energy/cycles budget without
    ``input_shape`` costs one image of ``pretrained_cfg['input_size']``.
    """
    budget = Budget.from_any(budget)
    if budget.wants_hw and budget.input_shape is None:
        size = pretrained_cfg_of(model).get('input_size')
        if not size:
            raise ValueError('an energy/cycles budget needs input_shape=(1, C, H, W): the '
                             'model has no pretrained_cfg input_size')
        budget = dataclasses.replace(budget, input_shape=(1, *map(int, size)))
    alloc = allocate(model, budget, choices=choices, calib=calib, base=cfg,
                     cache=sensitivity_cache, first_conv=first_conv_names(model),
                     backend=backend)
    logger.info('MVQ allocation for %s:\n%s', type(model).__name__, alloc)
    return alloc.config(), alloc


def compress_model(model: nn.Module, mvq: MVQConfig | Mapping[str, Any] | None = None, *,
                   classifier: Mapping[str, Any] | bool | None = None,
                   calib: Iterable[Any] | None = None,
                   taylor_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                   importance: str | Importance | None = None, backend: str = 'auto',
                   progress: ProgressFn | None = None, budget: Any = None,
                   choices: Any = None, sensitivity_cache: Any = None) -> nn.Module:
    """Compresses a model the user already has, in place.

    Plans (first conv from ``pretrained_cfg['first_conv']``, classifier rule from
    ``classifier``), prunes and clusters every planned layer, and attaches ``mvq_config``,
    ``mvq_plan`` and ``mvq_report`` to the model (see the module docstring). With a
    ``budget``, :func:`mvq_plugin.allocate` first chooses each layer's settings (measured on
    ``calib``) and the model also gets ``mvq_allocation``.

    Args:
        model: A timm model (or any module; without ``pretrained_cfg`` the core's defaults
            pick the first conv and no classifier rule applies).
        mvq: An :class:`MVQConfig`, a dict of its fields, or ``None`` for the defaults.
        classifier: The classifier rule (see :func:`resolve_config`).
        calib: A few input batches: the statistics of the data-aware settings
            (``importance='activation'``, ``kmeans_weights='activation'``) and, with a
            budget, the allocation's measurements.
        taylor_loss: ``taylor_loss(model) -> scalar loss`` on calibration data (Taylor
            importance).
        importance: Overrides the config's importance (a name or a callable).
        backend: k-means search backend (``'auto'``, ``'torch'``, ``'faiss'``).
        progress: Optional ``progress(i, total, layer_name)`` callback.
        budget: A :class:`~mvq_plugin.allocation.Budget` or its fields (e.g.
            ``dict(bytes='4MiB')``, ``dict(energy_ratio=0.5, hw='mvq_64x64')``).
        choices: The allocation's :class:`~mvq_plugin.allocation.ChoiceSpace` (or its fields).
        sensitivity_cache: A JSON path (or cache) that keeps the measurements for the next
            budget.

    Returns:
        ``model``, compressed.
    """
    cfg = resolve_config(model, mvq, classifier=classifier)
    if budget is not None:
        cfg, model.mvq_allocation = allocate_config(
            model, cfg, budget, calib=calib, choices=choices,
            sensitivity_cache=sensitivity_cache, backend=backend)
    elif choices is not None or sensitivity_cache is not None:
        raise ValueError('choices/sensitivity_cache are for a budget allocation: pass budget=')
    report = compress(model, cfg, calib=calib, taylor_loss=taylor_loss, importance=importance,
                      backend=backend, progress=progress, first_conv=first_conv_names(model))
    model.mvq_plan = report.plan
    model.mvq_report = report
    logger.info('MVQ: %d of %d layers compressed (%s); dense: %s', len(report.plan.compressed),
                len(report.plan), type(model).__name__,
                ', '.join(f'{lp.name} ({lp.reason})' for lp in report.plan.skipped) or 'none')
    return model


def run_recipe(model: nn.Module, mvq: MVQConfig | Mapping[str, Any] | None,
               recipe: MVQRecipe, batches: Callable[[int], tuple[Any, Any]], *,
               classifier: Mapping[str, Any] | bool | None = None, **kwargs: Any
               ) -> RecipeResult:
    """The full MVQ recipe (:func:`mvq_plugin.core.recipe.run_recipe`) on a timm model.

    The plan follows the timm rules of :func:`compress_model` (first conv, classifier rule);
    ``mvq_config``, ``mvq_plan`` and ``mvq_report`` are attached as there. ``kwargs`` go to the
    core recipe (``evaluate``, ``calib``, ``loss_fn``, ...).
    """
    cfg = resolve_config(model, mvq, classifier=classifier)
    result = core_run_recipe(model, cfg, recipe, batches, first_conv=first_conv_names(model),
                             **kwargs)
    model.mvq_plan = result.plan
    model.mvq_report = result.report
    return result


def prepare_model(model: nn.Module, mvq: MVQConfig | Mapping[str, Any] | None = None, *,
                  classifier: Mapping[str, Any] | bool | None = None,
                  train_dense: bool = False) -> Plan:
    """Attaches MVQ structure (codebooks, nothing clustered yet) for a training loop.

    The staged path (:func:`mvq_plugin.core.staged.prepare`) with the timm rules of
    :func:`compress_model`; an :class:`~mvq_plugin.core.schedule.MVQSchedule` then prunes and
    clusters inside the loop (:func:`mvq_plugin.integrations.timm_train.train`). Sets
    ``mvq_config`` and ``mvq_plan``; ``mvq_report`` stays ``None`` until clustering.

    Args:
        model: A timm model with its dense weights.
        mvq: Settings (see :func:`resolve_config`).
        classifier: The classifier rule (see :func:`resolve_config`).
        train_dense: Keep the dense weights trainable (a sparse phase before clustering).
    """
    cfg = resolve_config(model, mvq, classifier=classifier)
    the_plan = core_prepare(model, cfg, train_dense=train_dense,
                            first_conv=first_conv_names(model))
    model.mvq_plan = the_plan
    model.mvq_report = None
    return the_plan


def _check_offline(name: str) -> None:
    if name.startswith(_HUB_PREFIXES):
        raise ValueError(f'model name {name!r} refers to the Hugging Face hub and would '
                         'download; use the architecture name and pretrained_file=LOCAL_FILE')


def create_dense_model(name: str, pretrained_file: str | Path | None = None,
                       **timm_kwargs: Any) -> nn.Module:
    """``timm.create_model`` with dense weights from a local file only.

    Args:
        name: timm architecture name (e.g. ``'resnet50'`` or ``'resnet50.a1_in1k'``).
        pretrained_file: A local checkpoint (``.pth``/``.safetensors``/...) loaded by timm's
            own loader (``pretrained_cfg_overlay=dict(file=...)``), so its filter function,
            ``num_classes`` and ``in_chans`` adaptation apply. Timm drops the file's
            classifier when ``num_classes`` differs from ``pretrained_cfg['num_classes']``;
            for a checkpoint with N classes pass ``pretrained_cfg_overlay=dict(num_classes=N)``.
            ``None``: random init.
        **timm_kwargs: Passed to ``timm.create_model`` (``num_classes``, ``in_chans``,
            ``img_size``, ``drop_path_rate``...). ``pretrained=True`` needs a file.

    Returns:
        The dense timm model.

    Raises:
        ValueError: When the call would download (hub names, ``pretrained=True`` without a
            file).
        FileNotFoundError: When ``pretrained_file`` does not exist.
    """
    _check_offline(name)
    pretrained = timm_kwargs.pop('pretrained', None)
    if pretrained_file is None:
        if pretrained:
            raise ValueError('pretrained=True would download weights; pass '
                             'pretrained_file=LOCAL_FILE instead')
        return timm.create_model(name, pretrained=False, **timm_kwargs)
    if pretrained is False:
        raise ValueError('pretrained=False contradicts pretrained_file; drop one of them')
    path = Path(pretrained_file)
    if not path.is_file():
        raise FileNotFoundError(f'pretrained_file {str(path)!r} does not exist')
    overlay = dict(timm_kwargs.pop('pretrained_cfg_overlay', None) or {})
    overlay['file'] = str(path)
    # A file wins over url/hub in timm's resolution unless the source is the hub itself.
    if overlay.get('source') == 'hf-hub':
        raise ValueError("pretrained_cfg_overlay source='hf-hub' would download")
    logger.info('timm: %s with dense weights from %s', name, path)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay,
                             **timm_kwargs)


def create_model(name: str, mvq: MVQConfig | Mapping[str, Any] | None = None,
                 pretrained_file: str | Path | None = None, *,
                 calib: Iterable[Any] | None = None,
                 taylor_loss: Callable[[nn.Module], torch.Tensor] | None = None,
                 classifier: Mapping[str, Any] | bool | None = None,
                 importance: str | Importance | None = None, backend: str = 'auto',
                 progress: ProgressFn | None = None, budget: Any = None,
                 choices: Any = None, sensitivity_cache: Any = None,
                 **timm_kwargs: Any) -> nn.Module:
    """Creates a timm model and compresses it with MVQ: the one call.

    Args:
        name: timm architecture name.
        mvq: An :class:`MVQConfig`, a dict of its fields, or ``None`` for the defaults.
        pretrained_file: Local dense checkpoint (see :func:`create_dense_model`); the
            clustering runs on these weights. ``None``: random init.
        calib: Calibration batches (see :func:`compress_model`).
        taylor_loss: ``taylor_loss(model) -> scalar loss`` (Taylor importance).
        classifier: The classifier rule (see :func:`resolve_config`), e.g.
            ``dict(num_codewords=2048, block_size=4)``.
        importance: Overrides the config's importance.
        backend: k-means search backend.
        progress: Optional per-layer progress callback.
        budget: Per-layer settings chosen for this budget (see :func:`compress_model`).
        choices: The allocation's choice space.
        sensitivity_cache: Where the allocation keeps its measurements.
        **timm_kwargs: Passed to ``timm.create_model``.

    Returns:
        The compressed timm model with ``mvq_config``, ``mvq_plan`` and ``mvq_report`` (and
        ``mvq_allocation`` with a budget).
    """
    model = create_dense_model(name, pretrained_file, **timm_kwargs)
    return compress_model(model, mvq, classifier=classifier, calib=calib,
                          taylor_loss=taylor_loss, importance=importance, backend=backend,
                          progress=progress, budget=budget, choices=choices,
                          sensitivity_cache=sensitivity_cache)


def load_model(name: str, path: str | Path, *, strict: bool = True,
               **timm_kwargs: Any) -> nn.Module:
    """A fresh ``timm.create_model(name, **timm_kwargs)`` with an MVQ artifact loaded into it.

    No clustering runs: codebooks, assignments, masks and the dense rest come from the
    artifact (``mvq_plugin.load``).

    Args:
        name: timm architecture name the artifact was saved from.
        path: The ``.mvq`` artifact written by ``mvq_plugin.save``.
        strict: Passed to ``mvq_plugin.load``.
        **timm_kwargs: The ``timm.create_model`` arguments the saved model was built with
            (``num_classes``, ``in_chans``, ``img_size``...); ``pretrained`` is not allowed.

    Returns:
        The compressed model; ``mvq_config`` is the config stored in the artifact (``None``
        without one), ``mvq_plan`` and ``mvq_report`` are ``None`` (nothing was clustered).
    """
    import mvq_plugin  # the artifact API lives at the package top level

    _check_offline(name)
    if timm_kwargs.pop('pretrained', False):
        raise ValueError('load_model takes its weights from the artifact; drop pretrained')
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    mvq_plugin.load(model, path, strict=strict)
    if not hasattr(model, 'mvq_config'):
        model.mvq_config = None
    model.mvq_plan = None
    model.mvq_report = None
    return model


def param_groups(model: nn.Module, weight_decay: float = 0.0,
                 codebook_weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """timm-style optimizer parameter groups with the codewords in a group of their own.

    Every other trainable parameter is grouped by timm's ``param_groups_weight_decay`` (no
    decay for biases, norm and other 1-D parameters and the model's ``no_weight_decay()``
    names). Use as ``create_optimizer_v2(model, opt, lr=...,
    param_group_fn=lambda m: param_groups(m, weight_decay))``.

    Args:
        model: A compressed model.
        weight_decay: Weight decay of the decayed (non-codebook) parameters.
        codebook_weight_decay: Weight decay of the codewords (0 by default; docs/design.md
            section 2, item 6).

    Returns:
        ``[{'params': codebooks, 'weight_decay': codebook_weight_decay}, *timm_groups]``
        (empty groups left out).
    """
    from timm.optim import param_groups_weight_decay

    books = [p for q in quantized_layers(model).values() for p in codebook_parameters(q)
             if p.requires_grad]
    book_ids = {id(p) for p in books}
    no_decay = getattr(model, 'no_weight_decay', None)
    skip = set(no_decay()) if callable(no_decay) else set()
    groups = []
    if books:
        groups.append(dict(params=books, weight_decay=codebook_weight_decay))
    for group in param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip):
        params = [p for p in group['params'] if id(p) not in book_ids]
        if params:
            groups.append({**group, 'params': params})
    return groups

