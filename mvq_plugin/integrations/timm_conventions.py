"""What timm names and defines that MVQ follows: ``pretrained_cfg``'s first conv and
classifier, and ``CondConv2d`` (registered as a compressible layer type on import)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from timm.layers import CondConv2d
from torch import nn

from ..core.blocking import blocking_error
from ..core.config import LayerConfig
from ..core.plan import register_layer_type

__all__ = ['first_conv_names', 'classifier_names', 'pretrained_cfg_of']

logger = logging.getLogger('mvq_plugin')


def _condconv_check(module: CondConv2d, lcfg: LayerConfig) -> str | None:
    """Why a ``CondConv2d`` cannot be compressed with ``lcfg`` (``None``: it can).

    Its ``weight`` is ``(num_experts, O*C*kh*kw)``, every row one expert's conv weight
    flattened in ``(O, C, kh, kw)`` order. ``reshape(-1, d)`` of it cuts in-channel
    sub-vectors only for 1x1 kernels; for any kernel it cuts the ``spatial`` blocks.
    """
    o, c, kh, kw = module.weight_shape
    if module.groups > 1 and c == 1:
        return f'depthwise CondConv2d (groups={module.groups}, C_in/groups=1)'
    if lcfg.vector_axis == 'in_channel' and kh * kw != 1:
        return (f'CondConv2d with {kh}x{kw} kernels: its expert weights are stored flattened '
                f'as (O, C, kh, kw), so in_channel sub-vectors are not contiguous (1x1 '
                f"kernels compress; vector_axis='spatial' works for any kernel)")
    return blocking_error((o, c, kh, kw), lcfg.block_size, lcfg.vector_axis)


register_layer_type(CondConv2d, _condconv_check)


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def pretrained_cfg_of(model: nn.Module) -> Mapping[str, Any]:
    cfg = getattr(model, 'pretrained_cfg', None) or getattr(model, 'default_cfg', None)
    return cfg if isinstance(cfg, Mapping) else {}


def _existing(model: nn.Module, names: list[str]) -> list[str]:
    modules = dict(model.named_modules())
    return [n for n in names if n in modules]


def first_conv_names(model: nn.Module) -> list[str] | None:
    """The input conv(s) named by ``model.pretrained_cfg['first_conv']``.

    Returns:
        The names that exist in ``model``; ``None`` when the model has no such entry (the core
        then keeps the first ``nn.Conv2d`` in module order dense).
    """
    names = _names(pretrained_cfg_of(model).get('first_conv'))
    found = _existing(model, names)
    if names and not found:
        logger.warning('pretrained_cfg first_conv %s not found in the model; keeping the first '
                       'nn.Conv2d dense instead', names)
    return found or None


def classifier_names(model: nn.Module) -> list[str]:
    """The classifier layer(s) named by ``model.pretrained_cfg['classifier']`` that exist."""
    return _existing(model, _names(pretrained_cfg_of(model).get('classifier')))
