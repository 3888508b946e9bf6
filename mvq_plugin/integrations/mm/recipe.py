"""The schedule's data and distillation parts inside an mmengine run (for ``MVQHook``).

* :class:`TrainCalibration`: the first few preprocessed ``(inputs, data_samples)`` batches
  of the run's train set, read when the schedule first needs them;
* :func:`batch_forward`: the OpenMMLab ``mode='tensor'`` forward of such a batch (with its
  data samples, which two-stage detectors need), for the statistics and the teacher;
* :func:`resolve_distill`: the distillation settings with the model's logits module;
* :func:`attach_distillation`: a forward hook (public ``nn.Module`` API) on the model that, in
  ``mode='loss'``, adds the schedule's distillation terms (``loss_kd``,
  ``loss_feat_<module>``) to the model's own losses, which mmengine sums and logs. The
  teacher lives in the schedule, not in the model: it is never in a checkpoint or artifact.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.hooks import RemovableHandle

from ...core.calibration import NO_CALIBRATION
from ...core.distill import DistillConfig
from ...core.schedule import MVQSchedule

__all__ = ['TrainCalibration', 'calibration_inputs', 'batch_forward', 'attach_distillation',
           'resolve_distill', 'default_logits_module', 'teacher_forward']


def batch_forward(model: nn.Module, batch: tuple[Any, Any]) -> Any:
    """``model(inputs, data_samples, mode='tensor')``: backbone, neck and heads, no
    post-processing."""
    inputs, data_samples = batch
    return model(inputs, data_samples, mode='tensor')


@torch.no_grad()
def calibration_inputs(runner, model: nn.Module, count: int) -> list[tuple[Any, Any]]:
    """The first ``count`` batches of the train set, through the model's preprocessor.

    A separate in-process loader over the train loader's dataset (same batch size and
    collate function, dataset order) leaves the train loop's iterator and workers untouched.
    """
    if count < 1:
        raise ValueError(f'MVQHook calibration {NO_CALIBRATION}; calib_batches={count}')
    train = runner.train_dataloader
    loader = DataLoader(train.dataset, batch_size=train.batch_size, shuffle=False,
                        num_workers=0, collate_fn=train.collate_fn)
    out = []
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        out.append((data['inputs'], data.get('data_samples')))
        if len(out) == count:
            break
    if not out:
        raise ValueError(f'MVQHook calibration {NO_CALIBRATION}; the train loader is empty')
    return out


def default_logits_module(model: nn.Module) -> str | None:
    """``'head.fc'`` when the model has one (mmpretrain classifiers), else ``None``."""
    try:
        model.get_submodule('head.fc')
    except AttributeError:
        return None
    return 'head.fc'


def teacher_forward(cfg: DistillConfig):
    """The teacher's forward for ``(inputs, data_samples)``.

    Features under ``backbone``/``neck`` only need ``extract_feat`` (no heads, no proposals);
    otherwise the whole ``mode='tensor'`` forward runs (with the data samples, which two-stage
    detectors need).
    """
    names = list(cfg.features) + ([cfg.logits_module] if cfg.logits_weight else [])
    feats_only = all(n.split('.')[0] in ('backbone', 'neck') for n in names)

    def forward(teacher: nn.Module, batch: tuple[Any, Any]) -> Any:
        if feats_only and hasattr(teacher, 'extract_feat'):
            return teacher.extract_feat(batch[0])
        return batch_forward(teacher, batch)
    return forward


class TrainCalibration:
    """The first ``count`` train batches (:func:`calibration_inputs`), read when iterated."""

    def __init__(self, runner, model: nn.Module, count: int) -> None:
        self.runner, self.model, self.count = runner, model, count

    def __iter__(self):
        return iter(calibration_inputs(self.runner, self.model, self.count))


def resolve_distill(model: nn.Module, cfg: DistillConfig | None) -> DistillConfig | None:
    """``cfg`` with ``logits_module`` defaulted to the model's ``'head.fc'``.

    Raises:
        ValueError: logit KD is asked for but the model has no logits module (set
            ``logits_module``, or ``logits_weight=0`` with features).
    """
    if cfg is None:
        return None
    if cfg.logits_module is None and cfg.logits_weight:
        cfg = dataclasses.replace(cfg, logits_module=default_logits_module(model))
    if cfg.logits_weight and cfg.logits_module is None:
        raise ValueError('distill: logit KD needs logits_module (the module whose output are '
                         "the logits, e.g. 'head.fc'); this model has no 'head.fc': set "
                         'logits_module or logits_weight=0 with features={module: weight}')
    return cfg


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else default)


def attach_distillation(model: nn.Module, schedule: MVQSchedule) -> RemovableHandle:
    """Adds ``schedule``'s distillation terms to the losses of ``model(..., mode='loss')``.

    A forward hook, registered after the schedule made its teacher (a copy of the model made
    later would carry the hook). Remove it with the returned handle.
    """
    def add_terms(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if _argument(args, kwargs, 2, 'mode', 'tensor') != 'loss':
            return None
        batch = (_argument(args, kwargs, 0, 'inputs', None),
                 _argument(args, kwargs, 1, 'data_samples', None))
        for key, value in schedule.distill_losses(batch).items():
            output['loss_' + key.replace('/', '_').replace('.', '_')] = value
        return output

    return model.register_forward_hook(add_terms, with_kwargs=True)
