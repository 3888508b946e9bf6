"""Calibration statistics: the per-input-channel second moment each layer sees.

A linear map's output error from a weight error ``dW`` is ``dW x``; with the input channels
uncorrelated, its expected square is ``sum_c dW_oc^2 E[x_c^2]`` (docs/design.md section 2, item
11). So ``E[x_c^2]``, collected from a few batches with forward hooks, tells which weights
matter:

* ``importance='activation'`` keeps, in each N:M group, the weights with the largest
  ``|w| * sqrt(E[x_c^2])``;
* ``kmeans_weights='activation'`` clusters with the objective
  ``sum_i sum_t m_it h_it (w_it - c_t)^2``, ``h = E[x_c^2]`` of the weight's input channel.

For a conv, ``E[x_c^2]`` averages over batch and positions (padding ignored); a grouped conv's
weight ``[o, c]`` reads channel ``(o // (C_out / groups)) * C_in_per_group + c``.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from .blocking import to_subvectors

__all__ = ['InputStats', 'collect_input_stats', 'element_importance', 'subvector_importance',
           'run_batches', 'NO_CALIBRATION']

#: ``{layer name: (C_in,) mean of x_c^2}``.
InputStats = dict[str, torch.Tensor]

NO_CALIBRATION = ('needs calibration data: pass calib (a few input batches) so that '
                  'the per-input-channel statistics can be collected')


def run_batches(model: nn.Module, batches: Iterable,
                forward_fn: Callable[[nn.Module, object], object] | None = None) -> int:
    """Runs ``forward_fn(model, batch)`` (default ``model(batch)``) on every batch; returns
    how many there were."""
    seen = 0
    for batch in batches:
        forward_fn(model, batch) if forward_fn is not None else model(batch)
        seen += 1
    return seen


@torch.no_grad()
def collect_input_stats(model: nn.Module, names: Iterable[str], batches: Iterable,
                        forward_fn: Callable[[nn.Module, object], object] | None = None
                        ) -> InputStats:
    """Per-input-channel ``E[x_c^2]`` of the named layers over ``batches``.

    Args:
        model: The (dense or prepared) model; run in eval mode, restored afterwards.
        names: Conv/Linear module names to observe.
        batches: Model inputs (whatever ``forward_fn`` takes).
        forward_fn: ``forward_fn(model, batch)``; default ``model(batch)``.

    Returns:
        ``{name: (C_in,) float32}`` on the layer's device.

    Raises:
        ValueError: no batch was given, or a name is not a module of ``model``.
    """
    names = list(names)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = dict.fromkeys(names, 0)

    def hook_for(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            x = args[0].detach().float()
            if x.dim() >= 3 and not isinstance(module, nn.Linear):  # (N, C, *spatial)
                per = x.transpose(0, 1).reshape(x.shape[1], -1)
            else:  # (..., C)
                per = x.reshape(-1, x.shape[-1]).t()
            sq = (per * per).sum(1)
            sums[name] = sums[name] + sq if name in sums else sq
            counts[name] += per.shape[1]
        return hook

    handles = []
    try:
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise ValueError(f'collect_input_stats: {name!r} is not a module of the model'
                                 ) from None
            handles.append(module.register_forward_hook(hook_for(name)))
        was_training = model.training
        model.eval()
        try:
            seen = run_batches(model, batches, forward_fn)
        finally:
            model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError(f'collect_input_stats {NO_CALIBRATION}; got no batches')
    missing = [n for n in names if not counts[n]]
    if missing:
        raise ValueError(f'collect_input_stats: layers {missing[:3]} saw no input in the '
                         'calibration forward passes')
    return {n: sums[n] / counts[n] for n in names}


def element_importance(weight_shape: tuple[int, ...], input_sq: torch.Tensor,
                       groups: int = 1) -> torch.Tensor:
    """``h`` shaped like the weight: ``h[o, c, ...] = E[x^2]`` of the channel ``[o, c]`` reads.

    Args:
        weight_shape: ``(C_out, C_in/groups, kh, kw)`` or ``(C_out, C_in)``.
        input_sq: ``(C_in,)`` statistics of the layer's input.
        groups: The conv's groups.
    """
    c_out, c_per = weight_shape[0], weight_shape[1]
    if input_sq.numel() != c_per * groups:
        raise ValueError(f'input statistics have {input_sq.numel()} channels, the weight '
                         f'{tuple(weight_shape)} with groups={groups} reads {c_per * groups}')
    group_of = torch.arange(c_out, device=input_sq.device) // (c_out // groups)
    channel = group_of[:, None] * c_per + torch.arange(c_per, device=input_sq.device)
    h = input_sq[channel]  # (C_out, C_in/groups)
    return h.reshape(c_out, c_per, *([1] * (len(weight_shape) - 2))).expand(weight_shape)


def subvector_importance(module: nn.Module, input_sq: torch.Tensor, d: int,
                         axis: str) -> torch.Tensor:
    """:func:`element_importance` of a Conv/Linear module in its ``(n, d)`` sub-vector layout."""
    shape = tuple(module.parametrizations.weight.original.shape
                  if hasattr(module, 'parametrizations') else module.weight.shape)
    h = element_importance(shape, input_sq, getattr(module, 'groups', 1))
    return to_subvectors(h.contiguous(), d, axis).float()
