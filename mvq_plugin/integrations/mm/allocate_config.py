"""The allocation of an OpenMMLab config's model for a budget, outside a runner (what
``tools/allocate.py`` calls)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

from torch import nn

from ...allocation import Allocation
from ...allocation.budget import LIMIT_FIELDS
from ...core import MVQConfig
from ...core.presets import config_from
from .budget import allocate_for_budget
from .config_model import enter_config_scope, load_config
from .model import load_dense_weights

__all__ = ['allocate_from_config']


#: Budget fields that are limits (one given on the command line replaces the config's).
LIMIT_KEYS = tuple(f for names in LIMIT_FIELDS.values() for f in names)


def allocate_from_config(config: Any, *, checkpoint: str | None = None,
                         budget: Mapping[str, Any] | None = None,
                         options: dict | None = None) -> tuple[Allocation, nn.Module]:
    """The allocation of an OpenMMLab config's model for a budget (``tools/allocate.py``).

    Args:
        config: Config path or :class:`mmengine.config.Config`: an MVQ config (its ``mvq``
            settings, ``budget`` and ``calib_dataloader`` are used) or an upstream one (default
            MVQ settings, its ``train_dataloader``).
        checkpoint: Dense checkpoint (default: the config's ``model.init_checkpoint``).
        budget: Budget fields over the config's; any limit given replaces all of its limits.
        options: ``--cfg-options`` merged into the config.

    Returns:
        ``(allocation, upstream model)``.
    """
    from mmengine.registry import MODELS as MMENGINE_MODELS

    cfg = load_config(config, options)
    enter_config_scope(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    is_mvq = model_cfg.get('type') in ('mvq_plugin.MVQModel', 'MVQModel')
    upstream = copy.deepcopy(model_cfg['model']) if is_mvq else model_cfg
    if cfg.get('data_preprocessor') is not None and upstream.get('data_preprocessor') is None:
        upstream['data_preprocessor'] = cfg.data_preprocessor
    mvq_cfg = config_from(dict(model_cfg.get('mvq') or {})) if is_mvq else MVQConfig()
    values = dict(model_cfg.get('budget') or {}) if is_mvq else {}
    given = dict(budget or {})
    if any(k in given for k in LIMIT_KEYS):
        values = {k: v for k, v in values.items() if k not in LIMIT_KEYS}
    values.update(given)
    checkpoint = checkpoint or (model_cfg.get('init_checkpoint') if is_mvq else None)
    if not checkpoint:
        raise ValueError('allocation needs the dense weights: pass --checkpoint (or set '
                         'model.init_checkpoint in the config)')
    loader = (model_cfg.get('calib_dataloader') if is_mvq else None) or cfg.get(
        'train_dataloader')
    net = MMENGINE_MODELS.build(upstream)
    load_dense_weights(net, checkpoint, mvq_cfg, key='checkpoint')
    _, alloc = allocate_for_budget(net, mvq_cfg, values, calib_dataloader=loader,
                                   has_dense_weights=True)
    return alloc, net
