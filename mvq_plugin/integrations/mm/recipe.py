"""The recipe's data-aware and distillation parts inside an mmengine run (for ``MVQHook``).

* :func:`calibration_inputs`: a few preprocessed ``(inputs, data_samples)`` batches from the
  run's train set;
* :func:`batch_forward`: the OpenMMLab ``mode='tensor'`` forward of such a batch (with its
  data samples, which two-stage detectors need), for the statistics and the teacher;
* :func:`install_distillation` / :func:`remove_distillation`: an instance-level ``forward``
  on the model that, in ``mode='loss'``, adds the distillation terms (``loss_kd``,
  ``loss_feat_<module>``) to the model's own losses, which mmengine sums and logs. The
  teacher lives in the wrapper, not in the model: it is never in a checkpoint or artifact.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ...core.calibration import NO_CALIBRATION
from ...core.distill import DistillConfig, Distiller, make_teacher

__all__ = ['calibration_inputs', 'batch_forward', 'install_distillation', 'remove_distillation',
           'default_logits_module', 'teacher_forward']


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
        raise ValueError(f'MVQHook calibration {NO_CALIBRATION}; calibration_batches={count}')
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


class _DistillForward:
    """``forward`` that adds the distillation terms to the losses of ``mode='loss'``."""

    def __init__(self, model: nn.Module, distiller: Distiller) -> None:
        self.inner = model.forward  # the class's bound forward
        self.distiller = distiller

    def __call__(self, inputs: Any, data_samples: Any = None, mode: str = 'tensor') -> Any:
        out = self.inner(inputs, data_samples, mode)
        if mode == 'loss':
            for key, value in self.distiller.losses((inputs, data_samples)).items():
                out['loss_' + key.replace('/', '_').replace('.', '_')] = value
        return out


def install_distillation(model: nn.Module, cfg: DistillConfig) -> Distiller:
    """Makes the model's current dense function its teacher and adds the terms to its loss.

    The teacher is built from the dense originals of the MVQ layers (still what the model
    computes before clustering; on a resumed run, the dense weights the run started from).

    Raises:
        ValueError: logit KD is asked for but the model has no logits module (set
            ``logits_module``, or ``logits_weight=0`` with features).
    """
    if cfg.logits_weight and cfg.logits_module is None:
        raise ValueError('distill: logit KD needs logits_module (the module whose output are '
                         "the logits, e.g. 'head.fc'); this model has no 'head.fc': set "
                         'logits_module or logits_weight=0 with features={module: weight}')
    distiller = Distiller(model, make_teacher(model, originals=True), cfg,
                          teacher_forward(cfg))
    model.forward = _DistillForward(model, distiller)
    return distiller


def remove_distillation(model: nn.Module, distiller: Distiller | None) -> None:
    """Undoes :func:`install_distillation` (hooks removed, the class's forward back)."""
    if isinstance(model.__dict__.get('forward'), _DistillForward):
        del model.forward
    if distiller is not None:
        distiller.close()
