"""Exporting a compressed model: a dense state dict, or ONNX with in-graph codebook lookups.

:func:`export_dense` writes what ``to_dense`` computes; :func:`export_onnx` keeps each
compressed weight as ``Gather(codebook, assignments) * mask`` and checks the graph with
onnxruntime. :func:`build_arch` builds the network an artifact is loaded into from a spec
(``timm:NAME``, ``torchvision:NAME`` or ``package.module:factory``), never downloading.
"""
from __future__ import annotations

import copy
import importlib
import warnings
from typing import Any

import torch
from torch import nn

from ..core import quantized_layers, to_dense

__all__ = ['build_arch', 'export_dense', 'export_onnx']


def build_arch(spec: str, kwargs: dict[str, Any] | None = None):
    """Builds a network from ``timm:NAME``, ``torchvision:NAME`` or ``module:factory``.

    Args:
        spec: The architecture spec.
        kwargs: Keyword arguments for the factory.

    Returns:
        The ``nn.Module`` (random init, nothing downloaded).
    """
    kwargs = dict(kwargs or {})
    source, sep, name = spec.partition(':')
    if not sep or not source or not name:
        raise ValueError(f'arch spec {spec!r} must be timm:NAME, torchvision:NAME or '
                         'package.module:factory')
    if source == 'timm':
        import timm
        kwargs.setdefault('pretrained', False)
        return timm.create_model(name, **kwargs)
    if source == 'torchvision':
        import torchvision
        kwargs.setdefault('weights', None)
        return torchvision.models.get_model(name, **kwargs)
    module = importlib.import_module(source)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f'arch spec {spec!r}: {source} has no callable {name!r}')
    return factory(**kwargs)


def export_dense(model: nn.Module, out: str, meta: dict[str, Any] | None = None) -> None:
    """Saves ``to_dense(model).state_dict()``, contiguous (wrapped with ``meta`` if given).

    The model itself is left compressed (a copy is baked).
    """
    state = {k: v.contiguous() for k, v in to_dense(copy.deepcopy(model)).state_dict().items()}
    obj = state if meta is None else {'state_dict': state, 'meta': meta}
    torch.save(obj, out)


def export_onnx(model: nn.Module, out: str, input_shape: tuple[int, ...], *, opset: int = 17,
                seed: int = 0) -> float:
    """Exports the compressed model to ONNX and checks it with onnxruntime.

    The parametrized model is exported (not ``to_dense``) with the TorchScript exporter
    (``dynamo=False``: the torch.export-based one needs ``onnxscript``, which the stack does
    not install) and without constant folding, so that each compressed weight stays
    ``Gather(codebook, assignments) * mask`` followed by reshape/transpose in the graph. The
    loaded codebooks already hold the stored int8/fp16 values exactly, so the fake
    quantization is switched off for the export (same numbers, no Round/Clip in the graph).

    Each layer's quantization switch is restored afterwards.

    Returns:
        ``max |onnxruntime - PyTorch|`` on a seeded random input.
    """
    import numpy as np
    import onnxruntime as ort

    model.eval()
    layers = quantized_layers(model)
    previous = {name: q.codebook_quant for name, q in layers.items()}
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=gen)
    with torch.no_grad():
        reference = model(x)
        if not isinstance(reference, torch.Tensor):
            raise ValueError(f'export_onnx needs a model whose forward returns one tensor; '
                             f'{type(model).__name__} returns {type(reference).__name__} '
                             '(export it dense with --to dense instead)')
        for q in layers.values():
            q.codebook_quant = False
        try:
            same = model(x)
            if not torch.equal(reference, same):
                raise RuntimeError('codebooks are not exactly representable in their storage '
                                   'precision; load the model from an artifact first')
            with warnings.catch_warnings():
                # The TorchScript exporter is chosen on purpose (the torch.export one needs
                # onnxscript, not in the stack); the layer stage read as a Python int is a
                # constant of a clustered model.
                warnings.filterwarnings('ignore', 'You are using the legacy TorchScript',
                                        DeprecationWarning)
                warnings.filterwarnings('ignore', 'Converting a tensor to a Python integer',
                                        torch.jit.TracerWarning)
                torch.onnx.export(model, (x,), out, input_names=['input'],
                                  output_names=['output'], opset_version=opset,
                                  do_constant_folding=False, dynamo=False)
        finally:
            for name, q in layers.items():
                q.codebook_quant = previous[name]
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    (result,) = session.run(None, {'input': x.numpy()})
    return float(np.abs(result - reference.numpy()).max())


