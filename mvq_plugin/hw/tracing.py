"""A model's conv/linear layers as a :class:`~mvq_plugin.hw.workload.Workload`, traced in one
forward pass, with the compression of each layer taken from its MVQ parametrization (real d,
k, N:M, codewords used, index entropy) or from a plan of a not-yet-compressed model."""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np

from ..core.accounting import run_forward
from ..core.config import prunes
from .workload import LayerWorkload, Workload

__all__ = ['extract_workload']

logger = logging.getLogger('mvq_plugin')


def _entropy_bits(assignments) -> float:
    counts = np.bincount(np.asarray(assignments).reshape(-1))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _compression_from_model(model) -> dict[str, dict[str, Any]]:
    from mvq_plugin.core import Stage, quantized_layers
    out = {}
    for name, q in quantized_layers(model).items():
        if q.current_stage != Stage.CLUSTERED:
            continue  # prepared, not clustered yet: the plan describes it
        assignments = q.assignments.detach().cpu().numpy()
        mask = q.mask.detach().cpu()
        method = getattr(q, 'method', 'mvq')
        n, m = int(q.n), int(q.m)
        if not prunes(method, n, m):
            n = m
        out[name] = dict(compressed=True, block_size=int(q.block_size),
                         num_codewords=int(q.num_codewords), n=n, m=m, method=method,
                         nnz_weights=int(mask.sum()),
                         codewords_used=int(np.unique(assignments).size),
                         index_entropy_bits=_entropy_bits(assignments), source='compressed',
                         vector_axis=str(getattr(q, 'vector_axis', 'in_channel')))
    return out


def _compression_from_plan(plan) -> dict[str, dict[str, Any]]:
    records = plan.records() if hasattr(plan, 'records') else list(plan)
    out = {}
    for rec in records:
        if not rec.get('compressed'):
            continue
        method = rec.get('method') or 'mvq'
        n, m = int(rec['n']), int(rec['m'])
        if not prunes(method, n, m):
            n = m
        out[rec['name']] = dict(compressed=True, block_size=int(rec['block_size']),
                                num_codewords=int(rec['num_codewords']), n=n, m=m,
                                method=method, source='plan',
                                vector_axis=rec.get('vector_axis'))
    return out


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (1, 1)
    return int(v), int(v)


def _run_meta(model, inputs, forward_fn) -> None:
    """Forward on meta tensors: parameters and buffers swapped in, nothing computed."""
    import torch
    from torch.func import functional_call

    def to_meta(x):
        return torch.empty_like(x, device='meta') if isinstance(x, torch.Tensor) else x

    state = {k: to_meta(v) for k, v in model.named_parameters(remove_duplicate=False)}
    state.update({k: to_meta(v) for k, v in model.named_buffers(remove_duplicate=False)})
    meta_inputs = (tuple(to_meta(x) for x in inputs) if isinstance(inputs, (tuple, list))
                   else to_meta(inputs))
    if forward_fn is not None:
        class _Call(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x):
                return forward_fn(self.model, x)

        functional_call(_Call(), {f'model.{k}': v for k, v in state.items()},
                        (meta_inputs,), strict=False)
        return
    args = meta_inputs if isinstance(meta_inputs, tuple) else (meta_inputs,)
    functional_call(model, state, args, strict=False)


def extract_workload(model, input_shape: Sequence[int] | None = None, *, plan=None,
                     example_inputs: Any = None,
                     forward_fn: Callable[[Any, Any], Any] | None = None,
                     name: str | None = None, trace: str = 'auto') -> Workload:
    """Trace a model's conv/linear layers with one forward pass.

    Args:
        model: Any ``nn.Module``; compressed layers (MVQ parametrizations) are detected.
        input_shape: ``(batch, C, H, W)`` of a zero input (ignored with ``example_inputs``).
        plan: A :class:`~mvq_plugin.core.Plan` (or its ``records()``) for a model not yet
            compressed: its compressed layers are costed with the planned d, k and N:M.
        example_inputs: A tensor or tuple of tensors to run instead of zeros.
        forward_fn: ``forward_fn(model, inputs)``; default ``model(inputs)`` (OpenMMLab models
            may need ``model(inputs, mode='tensor')``).
        name: Workload name (default: the model's class name).
        trace: ``'meta'`` runs the forward pass on meta tensors (shapes only, no arithmetic:
            ResNet-50 traces in a fraction of a second; parameters are swapped in with
            ``torch.func.functional_call``, the model is not copied); ``'real'`` runs it on the
            model's device; ``'auto'`` tries meta and falls back to real when an operator has
            no meta kernel (``NotImplementedError``/``RuntimeError``), logging the reason.

    Returns:
        The :class:`Workload`, layers in call order (a module called twice appears twice).
    """
    import torch
    from torch import nn

    if example_inputs is None:
        if input_shape is None:
            raise ValueError('extract_workload needs input_shape or example_inputs')
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f'input_shape={shape} must be (batch, C, ...) with sizes >= 1')
        param = next(iter(model.parameters()), None)
        kwargs = dict(device=param.device, dtype=param.dtype) if param is not None else {}
        example_inputs = torch.zeros(shape, **kwargs)
    comp = _compression_from_plan(plan) if plan is not None else {}
    comp.update(_compression_from_model(model))

    records: list[LayerWorkload] = []
    calls: dict[str, int] = {}

    def hook_for(mod_name: str):
        def hook(mod, inputs, output):
            x = inputs[0]
            calls[mod_name] = calls.get(mod_name, 0) + 1
            label = mod_name if calls[mod_name] == 1 else f'{mod_name}#{calls[mod_name]}'
            extra = comp.get(mod_name, {})
            if isinstance(mod, nn.Linear):
                tokens = int(np.prod(x.shape[:-1]))
                lay = LayerWorkload(label, 'linear', mod.in_features, mod.out_features, (1, 1),
                                    (1, 1), 1, (1, 1), (tokens, 1), batch=1, **extra)
            else:
                spatial = x.dim() - 2
                if spatial == 1:
                    ifmap, ofmap = (int(x.shape[-1]), 1), (int(output.shape[-1]), 1)
                    kernel = (int(mod.kernel_size[0]), 1)
                    stride, dil = (int(mod.stride[0]), 1), (int(mod.dilation[0]), 1)
                else:
                    ifmap = (int(x.shape[-2]), int(x.shape[-1]))
                    ofmap = (int(output.shape[-2]), int(output.shape[-1]))
                    kernel, stride = _pair(mod.kernel_size), _pair(mod.stride)
                    dil = _pair(mod.dilation)
                batch = int(x.shape[0]) if x.dim() == spatial + 2 else 1
                lay = LayerWorkload(label, 'conv', mod.in_channels, mod.out_channels, kernel,
                                    stride, int(mod.groups), ifmap, ofmap, batch=batch,
                                    dilation=dil, **extra)
            records.append(lay)
        return hook

    handles = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            handles.append(mod.register_forward_hook(hook_for(mod_name)))
        elif isinstance(mod, nn.modules.conv._ConvNd):
            logger.warning('hw: %s (%s) is not modelled (only Conv1d/Conv2d/Linear)', mod_name,
                           type(mod).__name__)
    if trace not in ('auto', 'meta', 'real'):
        raise ValueError(f"trace={trace!r} must be 'auto', 'meta' or 'real'")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if trace in ('auto', 'meta'):
                try:
                    _run_meta(model, example_inputs, forward_fn)
                except (NotImplementedError, RuntimeError) as err:
                    if trace == 'meta':
                        raise
                    logger.info('hw: meta trace failed (%s); tracing with real tensors', err)
                    records.clear()
                    calls.clear()
                    run_forward(model, example_inputs, forward_fn)
            else:
                run_forward(model, example_inputs, forward_fn)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = sorted(set(comp) - set(calls))
    if missing:
        logger.warning('hw: compressed/planned layers never called in forward: %s', missing)
    shape = tuple(example_inputs.shape) if hasattr(example_inputs, 'shape') else None
    return Workload(name or type(model).__name__, records, shape)


# SCALE-Sim topology files -----------------------------------------------------------------
