"""Building the model of an OpenMMLab config outside a runner (plans, hardware reports)."""
from __future__ import annotations

import copy
import os

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from ..mmcv_ops import require_mmcv_ops_for

__all__ = ['load_config', 'enter_config_scope', 'build_model_from_config']


def load_config(config: str | os.PathLike | Config, options: dict | None = None) -> Config:
    """``Config.fromfile`` (or a copy of ``config``) with ``options`` merged over it."""
    cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(
        os.fspath(config))
    if options:
        cfg.merge_from_dict(options)
    return cfg


def enter_config_scope(cfg: Config) -> None:
    """Makes the config's ``default_scope`` mmengine's default, as the runner does; a
    detection/segmentation scope on an environment without mmcv's compiled ops raises
    :class:`~mvq_plugin.integrations.mmcv_ops.MMCVOpsMissing` first (one line saying what to
    run), before mmdet or mmseg is imported."""
    require_mmcv_ops_for(cfg)
    init_default_scope(cfg.get('default_scope', 'mmengine'))


def build_model_from_config(config: str | os.PathLike | Config,
                            options: dict | None = None) -> tuple[nn.Module, Config]:
    """The config's model, built in its default scope as the runner would build it.

    The runner passes the config's top-level ``data_preprocessor`` to the model; so does
    this. An MVQ config (``type='mvq_plugin.MVQModel'``) gives the prepared MVQ model with
    its ``mvq_plan``; an upstream config gives the plain upstream model.

    Returns:
        ``(model, cfg)``.
    """
    cfg = load_config(config, options)
    enter_config_scope(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg), cfg
