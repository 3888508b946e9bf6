"""Channel pruning with Torch-Pruning as a first stage before MVQ.

:func:`prune_channels` removes whole channels by importance (L2 magnitude of each coupled
group) with Torch-Pruning's dependency graph, so everything a channel touches shrinks together:
the next layer's input channels, BN statistics, residual additions (every conv writing into a
ResNet sum loses the same channels), grouped and depthwise convs, FPN laterals. The result is
a smaller dense model that MVQ then compresses. What was removed is a
:class:`ChannelPruning` record (JSON: the dependency graph's pruning history and the traced
input shape); :func:`apply_channel_pruning` replays it on a freshly built model, which is how
an artifact of a channel-pruned model finds its shapes again (:func:`mvq_plugin.load`).
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .accounting import count_macs
from .parametrize import quantized_layers

__all__ = ['ChannelPruning', 'prune_channels', 'apply_channel_pruning', 'CHANNELS_ATTR']

#: Attribute under which a channel-pruned model carries its :class:`ChannelPruning` record
#: (``mvq_plugin.save`` stores it in the artifact header).
CHANNELS_ATTR = 'mvq_channel_pruning'


@dataclass
class ChannelPruning:
    """What :func:`prune_channels` removed, and what the model cost before and after.

    Attributes:
        history: Torch-Pruning's ``pruning_history()``: ``[module name, out-channel pruning?,
            channel indices]`` per pruned group root, in order.
        input_shape: The input the dependency graph was traced with.
        ratio: The global channel ratio (``None`` when only per-stage ratios were given).
        stage_ratios: ``{module-name regex: ratio}``.
        params_before, params_after: Parameters of the model.
        macs_before, macs_after: Conv/linear MACs of one forward pass of ``input_shape``.
    """

    history: list[list[Any]]
    input_shape: list[int]
    ratio: float | None = None
    stage_ratios: dict[str, float] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (what the artifact header stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> 'ChannelPruning':
        """The record from its dict, every field type-checked (it comes from files)."""
        history = values.get('history')
        ok = isinstance(history, list) and all(
            isinstance(h, (list, tuple)) and len(h) == 3 and isinstance(h[0], str)
            and isinstance(h[1], bool) and isinstance(h[2], list)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in h[2])
            for h in history)
        shape = values.get('input_shape')
        if not ok or not isinstance(shape, list) or not all(
                isinstance(s, int) and s > 0 for s in shape):
            raise ValueError('channel-pruning record must hold history=[[module, bool, [int, '
                             '...]], ...] and input_shape=[int, ...]')
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _example(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    p = next(iter(model.parameters()))
    return torch.randn(tuple(input_shape), device=p.device, dtype=p.dtype)


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f'{name}={value!r} must be a fraction of channels in [0, 1)')


def prune_channels(model: nn.Module, input_shape: Sequence[int], ratio: float | None = 0.25, *,
                   stage_ratios: Mapping[str, float] | None = None,
                   ignored: Sequence[str] | None = None, global_pruning: bool = False,
                   round_to: int | None = None,
                   forward_fn: Callable[[nn.Module, Any], Any] | None = None
                   ) -> ChannelPruning:
    """Removes a fraction of channels from ``model`` in place (Torch-Pruning, L2 importance).

    Args:
        model: A dense model (MVQ layers must come after, not before).
        input_shape: ``(batch, C, H, W)`` traced to build the dependency graph.
        ratio: Fraction of channels removed from every prunable group (``None``: only the
            stages in ``stage_ratios``).
        stage_ratios: ``{regex on module names: ratio}``; every module the regex
            ``re.search``-es (e.g. ``'layer4'``) takes that ratio instead.
        ignored: Regexes of modules whose output channels stay (default: the last
            ``nn.Linear``, the classifier; the output channels of a model's last layer
            define its output and are never pruned).
        global_pruning: Rank channels across layers instead of per layer.
        round_to: Keep channel counts multiples of this (e.g. the MVQ ``d``, so that the next
            layer's ``C_in`` still splits into sub-vectors).
        forward_fn: ``forward_fn(model, inputs)`` for the trace (OpenMMLab:
            ``model(x, mode='tensor')``).

    Returns:
        The :class:`ChannelPruning` record, also set as ``model.mvq_channel_pruning``.
    """
    import torch_pruning as tp

    if quantized_layers(model):
        raise ValueError('prune_channels needs a dense model: prune channels first, then '
                         'compress with MVQ')
    if ratio is not None:
        _check_ratio('ratio', ratio)
    stage_ratios = dict(stage_ratios or {})
    for key, value in stage_ratios.items():
        _check_ratio(f'stage_ratios[{key!r}]', value)
    if ratio is None and not stage_ratios:
        raise ValueError('prune_channels needs ratio= or stage_ratios=')
    modules = dict(model.named_modules())
    if ignored is None:
        linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        ignored_mods = [modules[linears[-1]]] if linears else []
    else:
        ignored_mods = [m for n, m in modules.items() if n and any(re.search(p, n)
                                                                  for p in ignored)]
    ratio_dict: dict[nn.Module, float] = {}
    for pattern, value in stage_ratios.items():
        hits = [m for n, m in modules.items() if n and re.search(pattern, n)
                and isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
        if not hits:
            raise ValueError(f'stage_ratios pattern {pattern!r} matches no conv/linear module '
                             f'of {type(model).__name__}')
        ratio_dict.update({m: value for m in hits})
    example = _example(model, input_shape)
    macs_before = sum(count_macs(model, example, forward_fn).values())
    params_before = _params(model)
    pruner = tp.pruner.MetaPruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio if ratio is not None else 0.0,
        pruning_ratio_dict=ratio_dict or None, ignored_layers=ignored_mods,
        global_pruning=global_pruning, round_to=round_to,
        forward_fn=(lambda m, x: forward_fn(m, x)) if forward_fn else None)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        pruner.step()
    model.train(was_training)
    history = [[str(n), bool(o), [int(i) for i in idx]]
               for n, o, idx in pruner.DG.pruning_history()]
    record = ChannelPruning(history=history, input_shape=[int(s) for s in input_shape],
                            ratio=ratio, stage_ratios=stage_ratios,
                            params_before=params_before, params_after=_params(model),
                            macs_before=macs_before,
                            macs_after=sum(count_macs(model, _example(model, input_shape),
                                                      forward_fn).values()))
    setattr(model, CHANNELS_ATTR, record)
    return record


def apply_channel_pruning(model: nn.Module, record: ChannelPruning | Mapping[str, Any], *,
                          forward_fn: Callable[[nn.Module, Any], Any] | None = None) -> nn.Module:
    """Replays a :class:`ChannelPruning` on a freshly built (dense, unpruned) model, in place.

    The result has exactly the pruned model's structure; its weights are the fresh model's,
    sliced (load the trained ones afterwards). The replay is tried on a copy first, so a
    record that does not fit the model leaves it unchanged.

    Returns:
        ``model``.
    """
    import torch_pruning as tp

    if not isinstance(record, ChannelPruning):
        record = ChannelPruning.from_dict(record)
    if quantized_layers(model):
        raise ValueError('apply_channel_pruning needs the dense model as built, before MVQ')

    def replay(target: nn.Module) -> None:
        graph = tp.DependencyGraph().build_dependency(
            target, _example(target, record.input_shape),
            forward_fn=(lambda m, x: forward_fn(m, x)) if forward_fn else None)
        graph.load_pruning_history([list(h) for h in record.history])

    try:
        replay(copy.deepcopy(model))
    except Exception as err:  # noqa: BLE001 - any failure means the record does not fit
        raise ValueError(f'the channel-pruning record does not fit this '
                         f'{type(model).__name__}: {type(err).__name__}: {err}') from None
    replay(model)
    setattr(model, CHANNELS_ATTR, record)
    return model
