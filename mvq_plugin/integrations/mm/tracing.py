"""OpenMMLab models as the hardware model sees them: unwrapping, tensor-mode forward, and the
workload of a config's model (``tools/hw_report.py --config``)."""
from __future__ import annotations

import os
from typing import Any, Callable

from mmengine.model import is_model_wrapper
from torch import nn

from ...core import MVQConfig, pending_layers, plan, quantized_layers
from ...hw import Workload, extract_workload
from .config_model import build_model_from_config

__all__ = ['unwrap', 'tensor_forward', 'config_workload']

ForwardFn = Callable[[nn.Module, Any], Any]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or other mmengine) wrapper, else the model itself."""
    return model.module if is_model_wrapper(model) else model


def tensor_forward(scope: str = 'mmengine', shape: tuple[int, ...] | None = None,
                   samples: Any = None) -> ForwardFn:
    """``forward_fn(model, x)`` in ``tensor`` mode (backbone, neck, heads; no post-processing).

    Two-stage detectors need data samples in tensor mode: ``samples`` if given, else, for the
    ``mmdet`` scope, samples describing an input of ``shape`` (no data is read).
    """
    if samples is None and scope == 'mmdet' and shape is not None:
        from mmdet.structures import DetDataSample
        h, w = shape[-2:]
        meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    batch_input_shape=(h, w), scale_factor=(1.0, 1.0))
        samples = [DetDataSample(metainfo=meta) for _ in range(shape[0])]
    if samples is None:
        return lambda model, x: model(x, mode='tensor')
    return lambda model, x: model(x, samples, mode='tensor')


def config_workload(config: str | os.PathLike, input_shape: tuple[int, ...], *,
                    checkpoint: str | None = None, plan_cfg: MVQConfig | None = None
                    ) -> Workload:
    """The hardware workload of an OpenMMLab config's model.

    Args:
        config: Config file (upstream or MVQ).
        input_shape: ``(N, C, H, W)`` traced.
        checkpoint: A ``.mvq`` artifact or an mmengine checkpoint of an MVQ run: the real
            compressed model is costed (codewords used, index entropy).
        plan_cfg: Settings an uncompressed (upstream) model is planned with; ``None`` costs
            it dense. An MVQ config that is not clustered yet uses its own plan.
    """
    from mmengine.runner.checkpoint import load_checkpoint

    from ...io import load
    model, cfg = build_model_from_config(config)
    scope = cfg.get('default_scope', 'mmengine')
    if checkpoint:
        if str(checkpoint).endswith('.mvq'):
            load(model, checkpoint)
        else:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    the_plan = None
    if pending_layers(model):
        the_plan = model.mvq_plan  # an MVQ config: its own settings, not yet clustered
    elif plan_cfg is not None and not quantized_layers(model):
        the_plan = plan(model, plan_cfg)
    shape = tuple(input_shape)
    return extract_workload(model, shape, plan=the_plan, forward_fn=tensor_forward(scope, shape),
                            name=os.path.splitext(os.path.basename(str(config)))[0])
