"""Building the model of an OpenMMLab config outside a runner (plans, hardware reports)."""
from __future__ import annotations

import copy
import os

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from torch import nn

__all__ = ['load_config', 'build_model_from_config']


def load_config(config: str | os.PathLike | Config, options: dict | None = None) -> Config:
    """``Config.fromfile`` (or a copy of ``config``) with ``options`` merged over it."""
    cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(
        os.fspath(config))
    if options:
        cfg.merge_from_dict(options)
    return cfg


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
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg), cfg
