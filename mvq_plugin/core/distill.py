"""Self-distillation: the dense model before compression teaches the compressed one.

* :class:`DistillConfig`: which outputs to match and how much each term weighs;
* :func:`make_teacher`: a frozen, eval-mode dense copy of a model (MVQ layers baked to their
  dense originals), kept outside the student so it is never saved with it;
* :class:`Distiller`: forward hooks on teacher and student at the named modules; after a
  student forward, :meth:`Distiller.losses` runs the teacher on the same inputs and returns
  the distillation terms.

Terms (docs/design.md section 2, item 12): logit KD ``T^2 * KL(softmax(t/T) || softmax(s/T))``
over dim 1, averaged over the batch (and positions for dense predictions); feature mimicking
``mean((s - t)^2) / mean(t^2)`` per named module output (tensors or tuples/lists of tensors,
e.g. an FPN neck's levels), so that a weight of 1 means the same at any feature scale.

Cost: one extra forward pass without autograd per step, and one fp32 copy of the dense
weights (:attr:`Distiller.teacher_bytes`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .parametrize import detach_mvq_weight, quantized_layers

__all__ = ['DistillConfig', 'Distiller', 'make_teacher', 'kd_loss', 'feature_loss']

ForwardFn = Callable[[nn.Module, Any], Any]


@dataclass(frozen=True)
class DistillConfig:
    """What the student matches.

    Attributes:
        logits_weight: Weight of the logit KD term (0: none).
        temperature: KD temperature ``T > 0``.
        logits_module: Name of the module whose output are the logits (e.g. ``'head.fc'`` of
            an mmpretrain classifier); ``None``: the model's output.
        features: ``{module name: weight}`` of feature-mimicking terms.
        task_weight: Weight of the task loss the caller adds (labels); 0 trains on the
            teacher only.
    """

    logits_weight: float = 1.0
    temperature: float = 1.0
    logits_module: str | None = None
    features: dict[str, float] = field(default_factory=dict)
    task_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ('logits_weight', 'task_weight'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                    or not math.isfinite(value):
                raise ValueError(f'DistillConfig.{name}={value!r} must be a number >= 0')
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise ValueError(f'DistillConfig.temperature={t!r} must be a number > 0')
        if not isinstance(self.features, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and v >= 0
                for k, v in self.features.items()):
            raise ValueError(f'DistillConfig.features={self.features!r} must be a dict '
                             '{module name: weight >= 0}')
        if not self.logits_weight and not any(self.features.values()):
            raise ValueError('DistillConfig: logits_weight is 0 and no feature has a weight; '
                             'nothing would be distilled')

    @classmethod
    def from_value(cls, value: 'DistillConfig | dict | bool | None') -> 'DistillConfig | None':
        """``None``/``False``: none; ``True``: the defaults; a dict: its fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f for f in cls.__dataclass_fields__}
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f'unknown distill setting(s) {unknown}; allowed: '
                                 f'{sorted(known)}')
            return cls(**value)
        raise ValueError(f'distill={value!r} must be None, True or a dict of DistillConfig '
                         'fields')


@torch.no_grad()
def make_teacher(model: nn.Module, originals: bool = False) -> nn.Module:
    """A frozen eval-mode copy of ``model`` with plain (dense) layers.

    Args:
        model: A dense, prepared or compressed model.
        originals: MVQ layers take their dense originals (a prepared model before pruning
            computes exactly those); otherwise each keeps the weight it computes now.
    """
    teacher = copy.deepcopy(model)
    for name in quantized_layers(teacher):
        module = teacher.get_submodule(name)
        weight = (module.parametrizations.weight.original if originals
                  else module.weight).detach().clone()
        detach_mvq_weight(module, nn.Parameter(weight))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` over dim 1, averaged over the other dims."""
    if student.dim() > 2:  # (N, C, *positions) -> (N * positions, C)
        student = student.movedim(1, -1).reshape(-1, student.shape[1])
        teacher = teacher.movedim(1, -1).reshape(-1, teacher.shape[1])
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean()
    return kl * temperature ** 2


def feature_loss(student: Any, teacher: Any) -> torch.Tensor:
    """``mean((s - t)^2) / mean(t^2)``, averaged over the tensors of a (nested) output."""
    s_list, t_list = _tensors(student), _tensors(teacher)
    if not s_list or len(s_list) != len(t_list):
        raise ValueError(f'feature distillation: student output has {len(s_list)} tensors, '
                         f'teacher output {len(t_list)}')
    terms = [F.mse_loss(s.float(), t.float()) / t.float().pow(2).mean().clamp_min(1e-12)
             for s, t in zip(s_list, t_list)]
    return torch.stack(terms).mean()


class Distiller:
    """Distillation terms from a frozen teacher, observed with forward hooks.

    Args:
        student: The model being compressed and trained.
        teacher: Its frozen dense copy (:func:`make_teacher`).
        cfg: What to match.
        forward_fn: ``forward_fn(teacher, inputs)``; default ``teacher(inputs)``.

    Raises:
        ValueError: a named module exists in neither or only one of the models.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, cfg: DistillConfig,
                 forward_fn: ForwardFn | None = None) -> None:
        if teacher is None:
            raise ValueError('distillation needs a teacher: the dense model before '
                             'compression (make_teacher(model)); none was given')
        self.cfg = cfg
        self.teacher = teacher
        self.forward_fn = forward_fn
        names = list(cfg.features)
        if cfg.logits_module is not None and cfg.logits_weight:
            names.append(cfg.logits_module)
        self._student: dict[str, Any] = {}
        self._teacher: dict[str, Any] = {}
        self._handles = []
        for name in dict.fromkeys(names):
            for model, store, role in ((student, self._student, 'student'),
                                       (teacher, self._teacher, 'teacher')):
                try:
                    module = model.get_submodule(name)
                except AttributeError:
                    raise ValueError(f'distillation: module {name!r} is not in the {role} '
                                     f'model') from None
                self._handles.append(module.register_forward_hook(self._keeper(store, name)))

    @staticmethod
    def _keeper(store: dict, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            store[name] = output
        return hook

    @property
    def teacher_bytes(self) -> int:
        """Bytes of the teacher's parameters and buffers (the memory distillation adds)."""
        return sum(t.numel() * t.element_size()
                   for t in list(self.teacher.parameters()) + list(self.teacher.buffers()))

    def losses(self, inputs: Any, student_output: Any = None) -> dict[str, torch.Tensor]:
        """Runs the teacher on ``inputs``; returns ``{'kd': ..., 'feat/<name>': ...}``.

        Call right after the student's forward on the same ``inputs``. ``student_output``
        is needed when ``logits_module`` is ``None`` (the model's output are the logits).
        """
        with torch.no_grad():
            t_out = (self.forward_fn(self.teacher, inputs) if self.forward_fn is not None
                     else self.teacher(inputs))
        out: dict[str, torch.Tensor] = {}
        cfg = self.cfg
        if cfg.logits_weight:
            if cfg.logits_module is None:
                if student_output is None:
                    raise ValueError('Distiller.losses: logits_module is None, so pass the '
                                     "student's output (the logits)")
                s_logits, t_logits = student_output, t_out
            else:
                s_logits = self._student.pop(cfg.logits_module)
                t_logits = self._teacher.pop(cfg.logits_module)
            out['kd'] = cfg.logits_weight * kd_loss(s_logits, t_logits.detach(),
                                                    cfg.temperature)
        for name, weight in cfg.features.items():
            if weight:
                out[f'feat/{name}'] = weight * feature_loss(self._student.pop(name),
                                                            self._teacher.pop(name))
        self._student.clear()
        self._teacher.clear()
        return out

    def close(self) -> None:
        """Removes the hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
