"""The registered model builder: an upstream OpenMMLab model with MVQ structure attached.

mmengine's ``Runner`` builds the optimizer and the DDP wrapper before any hook runs, so the
codebooks must be parameters of the model it builds. ``type='mvq_plugin.MVQModel'`` builds the
upstream model (``ImageClassifier``, ``MaskRCNN``, ``EncoderDecoder``, ...), runs its own
``init_weights`` on the upstream structure, and then
:func:`~mvq_plugin.core.staged.prepare` s it: every planned layer gets an MVQ weight in the
dense stage (it still computes the dense weight). :class:`~.hooks.MVQHook` clusters later,
once, on the dense weights that were actually loaded.

Dense weights come from either source, and the hook refuses to cluster without one:

* ``init_checkpoint`` (a builder argument): loaded into the upstream model after its
  initialisation and before the MVQ structure exists;
* ``load_from`` (the runner's usual key): the checkpoint's ``X.weight`` entries are mapped to
  ``X.parametrizations.weight.original`` by a load-state-dict pre-hook on each MVQ layer, so
  mmengine's non-strict loading cannot silently skip them.

``artifact`` loads a ``.mvq`` file instead (testing a compressed model never clusters).

The upstream ``init_cfg=dict(type='Pretrained')`` (``torchvision://``, ``open-mmlab://`` URLs
in upstream configs) is skipped, with one log line: MVQ always starts from dense weights of
one of the sources above, which would overwrite a download, and the download fails offline.
Because the model is initialised when it is built, the runner's own ``init_weights`` call
finds it initialised (mmengine logs "called more than once") and changes nothing. A dense
checkpoint's missing MVQ tensors (codebooks, assignments, masks) are expected, not reported.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any

from mmengine.logging import MMLogger
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict
from torch import nn

from ...core import MVQConfig, check_patterns, plan, prepare, quantized_layers
from ...core.allocation_plan import with_allocation
from ...core.plan import Plan
from ...core.presets import config_from
from .budget import allocate_for_budget, artifact_config
from .logs import route_logs_to_mmengine
from .registry import MODELS

__all__ = ['build_mvq_model', 'load_dense_weights', 'dense_loaded_layers', 'drop_pretrained_init']

logger = logging.getLogger('mvq_plugin')


def _state_dict_of(checkpoint: Any) -> dict:
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError('checkpoint holds no state dict')
    return {(k[7:] if k.startswith('module.') else k): v for k, v in state.items()}


def load_dense_weights(model: nn.Module, path: str, cfg: MVQConfig, *,
                       key: str = 'model.init_checkpoint') -> None:
    """Loads a dense checkpoint into an upstream model that has no MVQ structure yet.

    Every layer the plan compresses must find its weight in the checkpoint: clustering
    random weights is never what a user wants.

    Args:
        model: The upstream model.
        path: Checkpoint file (an mmengine checkpoint or a plain state dict).
        cfg: The MVQ settings (to know which layers need weights).
        key: Config key named in errors.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f'{key}={path!r}: dense checkpoint file not found')
    state = _state_dict_of(_load_checkpoint(path, map_location='cpu'))
    needed = [lp.name for lp in plan(model, cfg).compressed]
    missing = [n for n in needed if f'{n}.weight' not in state]
    if missing:
        raise ValueError(f'{key}={path!r} has no weight for {len(missing)} layer(s) MVQ '
                         f'compresses, e.g. {missing[:4]}')
    load_state_dict(model, state, strict=False, logger='current')
    logger.info('MVQ: dense weights loaded from %s=%s', key, path)


def _is_pretrained(init_cfg: Any) -> bool:
    kind = init_cfg.get('type') if isinstance(init_cfg, dict) else None
    return kind == 'Pretrained' or getattr(kind, '__name__', None) == 'PretrainedInit'


def drop_pretrained_init(model: nn.Module) -> list[str]:
    """Removes every ``Pretrained`` entry from the ``init_cfg`` of ``model``'s submodules.

    Returns:
        ``'module: checkpoint'`` of each removed entry (the model itself by its class name).
    """
    dropped = []
    for name, module in model.named_modules():
        cfgs = getattr(module, 'init_cfg', None)
        if not cfgs:
            continue
        as_list = [cfgs] if isinstance(cfgs, dict) else list(cfgs)
        keep = [c for c in as_list if not _is_pretrained(c)]
        if len(keep) == len(as_list):
            continue
        dropped += [f'{name or type(model).__name__}: {c.get("checkpoint")}'
                    for c in as_list if _is_pretrained(c)]
        module.init_cfg = (keep[0] if isinstance(cfgs, dict) else keep) if keep else None
    return dropped


def _map_dense_weight(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook of an MVQ layer.

    ``X.weight`` of a dense checkpoint feeds the MVQ original; MVQ tensors of another shape
    (a checkpoint written with other d/k settings) are an error, not a skipped key.
    """
    src, dst = prefix + 'weight', prefix + 'parametrizations.weight.original'
    q = module.parametrizations.weight[0]
    if src in state_dict and dst not in state_dict:
        state_dict[dst] = state_dict.pop(src)
        q.dense_loaded = True
        # A dense checkpoint has no MVQ tensors; they keep their values (loaded onto
        # themselves) instead of being listed as missing keys.
        for name, value in q.state_dict().items():
            state_dict.setdefault(f'{prefix}parametrizations.weight.0.{name}', value)
    for name in ('codebook', 'assignments', 'mask'):
        key = f'{prefix}parametrizations.weight.0.{name}'
        if key in state_dict and tuple(state_dict[key].shape) != tuple(getattr(q, name).shape):
            raise ValueError(
                f'checkpoint tensor {key} has shape {tuple(state_dict[key].shape)} but the '
                f'config builds {tuple(getattr(q, name).shape)} (k={q.num_codewords}, '
                f'd={q.block_size}): use the MVQ settings the checkpoint was trained with')


def dense_loaded_layers(model: nn.Module) -> dict[str, bool]:
    """``{layer: whether dense weights were loaded into it}`` for every MVQ layer."""
    return {n: q.dense_loaded for n, q in quantized_layers(model).items()}


def _init_upstream(net: nn.Module) -> None:
    """The upstream initialisation rules on the upstream structure, ``Pretrained`` skipped."""
    dropped = drop_pretrained_init(net)
    if dropped:
        logger.info('MVQ: skipped the upstream Pretrained initialisation (%s): MVQ clusters '
                    'the dense weights of model.init_checkpoint or load_from',
                    '; '.join(dropped))
    if not hasattr(net, 'init_weights'):
        return
    # mmengine lists every parameter's initialisation at INFO; a runner's log file keeps that
    # list (written to its file handler directly), the terminal gets one line.
    current = MMLogger.get_current_instance()
    level = current.level
    current.setLevel(max(level, logging.WARNING))
    try:
        net.init_weights()
    finally:
        current.setLevel(level)
    logger.info('MVQ: %s initialised by its own init_weights before the MVQ structure is '
                'attached', type(net).__name__)


def _check_trainable(net: nn.Module, the_plan: Plan) -> None:
    """A sparse phase trains the dense weights of every compressed layer: refuses a model whose
    ``train()`` freezes some of them (an mmdet ResNet's ``frozen_stages``), at build time."""
    was_training = net.training
    net.train()  # upstream models freeze their frozen stages here, not only in __init__
    frozen = [lp.name for lp in the_plan.compressed if not net.get_submodule(
        lp.name).parametrizations.weight.original.requires_grad]
    net.train(was_training)
    if frozen:
        raise ValueError(
            f'MVQModel(sparse_finetune=True) trains the dense weights of every compressed '
            f'layer, but the model freezes {len(frozen)} of them ({frozen[:3]}): set the '
            'backbone\'s frozen_stages=-1 (e.g. --cfg-options model.model.backbone.'
            'frozen_stages=-1, or inherit a config that sets it, as configs/mmdet/mask-rcnn_'
            'r50_fpn_1x_coco_all-stages-trainable.py does), exclude those layers, or use '
            'sparse_finetune=False')


@MODELS.register_module(name='MVQModel')
def build_mvq_model(model: dict, mvq: dict | MVQConfig, init_checkpoint: str | None = None,
                    artifact: str | None = None, sparse_finetune: bool = False,
                    exclude: list[str] | None = None, overrides: dict | None = None,
                    data_preprocessor: dict | None = None, budget: dict | None = None,
                    calib_dataloader: dict | None = None,
                    allocation: str | dict | None = None) -> nn.Module:
    """Builds the upstream ``model`` and attaches MVQ structure to it.

    Args:
        model: The upstream model config (e.g. ``{{_base_.model}}``), built in the config's
            default scope.
        mvq: :class:`~mvq_plugin.core.MVQConfig` fields, optionally with ``preset=NAME`` (a
            named preset of :mod:`mvq_plugin.core.presets` the fields refine).
        init_checkpoint: Dense checkpoint loaded before the MVQ structure is attached.
        artifact: A ``.mvq`` artifact to load (compressed state, no clustering).
        sparse_finetune: Keep the dense weights trainable for a sparse fine-tuning phase
            before clustering (:class:`~.hooks.MVQHook`'s ``sparse_finetune_iters``).
        exclude: Extra ``exclude`` patterns appended to ``mvq``'s (a leaf config cannot edit
            a dict it takes from a base as ``{{_base_.mvq_cfg}}``).
        overrides: Extra per-layer ``overrides`` merged over ``mvq``'s.
        data_preprocessor: Passed on to the upstream model when its config has none (the
            runner hands the config's top-level ``data_preprocessor`` to the outer type).
        budget: Choose each layer's settings for this budget (``mvq_budget`` of a base
            config; see :mod:`.budget`): needs ``init_checkpoint`` and ``calib_dataloader``.
            With ``artifact``, the settings stored in the artifact are used instead.
        calib_dataloader: Dataloader config of the budget's calibration batches.
        allocation: Per-layer settings a budget chose earlier, applied over ``mvq``: the JSON
            file ``tools/allocate.py CONFIG ... --out plan.json`` writes (or its dict).

    Returns:
        The upstream model itself (same class, same data preprocessor), with ``mvq_plan``
        and ``mvq_config`` attributes.
    """
    route_logs_to_mmengine()
    values = config_from(mvq).to_dict()
    if exclude:
        values['exclude'] = list(values.get('exclude', ())) + list(exclude)
    if overrides:
        values['overrides'] = {**dict(values.get('overrides', {})), **dict(overrides)}
    cfg = MVQConfig.from_dict(values)
    if allocation is not None:
        if budget is not None:
            raise ValueError('MVQModel: give either budget= (allocate now) or allocation= (a '
                             f'plan file allocated earlier), not both; allocation={allocation!r}')
        cfg = with_allocation(cfg, allocation)
    model_cfg = copy.deepcopy(model)
    if data_preprocessor is not None and model_cfg.get('data_preprocessor') is None:
        model_cfg['data_preprocessor'] = data_preprocessor
    net = MMENGINE_MODELS.build(model_cfg)
    check_patterns(net, cfg)
    _init_upstream(net)
    if init_checkpoint is not None:
        load_dense_weights(net, init_checkpoint, cfg)
    allocation = None
    if budget is not None and artifact is not None:
        cfg = artifact_config(artifact)  # the settings the budget chose when it was trained
    elif budget is not None:
        cfg, allocation = allocate_for_budget(net, cfg, budget,
                                              calib_dataloader=calib_dataloader,
                                              has_dense_weights=init_checkpoint is not None)
    the_plan = prepare(net, cfg, train_dense=sparse_finetune)
    if sparse_finetune:
        _check_trainable(net, the_plan)
    for lp in the_plan.compressed:
        module = net.get_submodule(lp.name)
        module.register_load_state_dict_pre_hook(_map_dense_weight)
        module.parametrizations.weight[0].dense_loaded = init_checkpoint is not None
    net.mvq_plan = the_plan
    net.mvq_allocation = allocation
    logger.info('MVQ plan for %s: %d layers compressed, %d dense\n%s', type(net).__name__,
                len(the_plan.compressed), len(the_plan.skipped), the_plan)
    if artifact is not None:
        from ...io import load
        load(net, artifact)
    return net
