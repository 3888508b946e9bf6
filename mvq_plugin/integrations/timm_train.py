"""Fine-tuning a timm model through the MVQ schedule, with timm's optimizer and scheduler.

The loop behind ``tools/train_timm.py``, as a library function: the phases are the one
:class:`~mvq_plugin.core.schedule.MVQSchedule`'s (this loop calls ``schedule.step`` before
every update and holds no phase logic); the optimizer and learning-rate scheduler are the
caller's, built over the whole run with ``timm.optim.create_optimizer_v2`` (codewords in a
group of their own, :func:`~mvq_plugin.integrations.timm.param_groups`) and
``timm.scheduler.create_scheduler_v2``. A parameter that gets no gradient in a phase (the
codewords before clustering, the dense originals after) is skipped by the optimizer::

    plan = mvq_timm.prepare_model(model, cfg, train_dense=sparse_iters > 0)
    schedule = MVQSchedule(model, sparse_iters=..., calib=..., distill=...)
    optimizer = create_optimizer_v2(model, 'sgd', lr=0.01,
                                    param_group_fn=lambda m: mvq_timm.param_groups(m, 1e-4))
    result = train(model, schedule, loader, optimizer, epochs=2, evaluate=val_fn)
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from ..core.schedule import MVQSchedule

__all__ = ['TrainResult', 'train', 'evaluate']

logger = logging.getLogger('mvq_plugin')


@dataclass
class TrainResult:
    """What :func:`train` measured.

    Attributes:
        losses: Training loss per update.
        epochs: Per epoch: updates, mean train loss, the codebook quantization switch and the
            validation figures (``evaluate``'s dict, when given).
        events: ``(event, iteration)`` of every schedule boundary, in order.
        seconds: Wall time of ``'train'`` (the loop, clustering included) and the schedule's
            own parts (``'cluster'``, ``'calibrate'``, ``'bn'``).
        clustered: ``evaluate`` right after clustering (``None`` without ``evaluate``).
    """

    losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    clustered: dict[str, float] | None = None


def train(model: nn.Module, schedule: MVQSchedule, loader: Iterable[tuple[Any, Any]],
          optimizer: torch.optim.Optimizer, *, epochs: int, steps_per_epoch: int | None = None,
          scheduler: Any = None, loss_fn: Callable = nn.functional.cross_entropy,
          clip_grad: float | None = None,
          evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
          device: torch.device | str | None = None, log_every: int = 10) -> TrainResult:
    """Runs ``epochs`` epochs of the schedule's fine-tuning, then ``schedule.finish()``.

    Args:
        model: The prepared model the schedule drives.
        schedule: Its :class:`~mvq_plugin.core.schedule.MVQSchedule` (not started yet).
        loader: ``(inputs, targets)`` batches; iterated once per epoch.
        optimizer: Over every trainable parameter of the run (both phases).
        epochs: Epochs to run.
        steps_per_epoch: At most this many updates per epoch (default: the whole loader).
        scheduler: A timm scheduler (``step_update(num_updates=)`` after each update,
            ``step(epoch)`` after each epoch) or ``None``.
        loss_fn: ``loss_fn(outputs, targets)``.
        clip_grad: Clip the gradient norm to this value.
        evaluate: ``evaluate(model) -> dict`` after clustering and after each epoch.
        device: Where batches go (default: where they are).
        log_every: A log line every this many updates.

    Returns:
        A :class:`TrainResult`; the model is left clustered, with its codebooks as stored.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f'train: epochs={epochs!r} must be an integer >= 1')
    result = TrainResult()
    t0 = time.perf_counter()
    schedule.start()
    task_w = schedule.distill.task_weight if schedule.distill is not None else 1.0
    step = 0
    try:
        for epoch in range(epochs):
            model.train()
            epoch_losses: list[float] = []
            for i, (x, y) in enumerate(loader):
                if steps_per_epoch is not None and i >= steps_per_epoch:
                    break
                if device is not None:
                    x, y = x.to(device), y.to(device)
                if any(e.name == 'clustered' for e in schedule.step(step)) and evaluate:
                    result.clustered = evaluate(model)
                    model.train()
                out = model(x)
                loss = task_w * loss_fn(out, y) if task_w else out.new_zeros(())
                for term in schedule.distill_losses(x, out).values():
                    loss = loss + term
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(f'loss is {value} at update {step}')
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad is not None:
                    nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                             clip_grad)
                optimizer.step()
                step += 1
                if scheduler is not None:
                    scheduler.step_update(num_updates=step)
                result.losses.append(value)
                epoch_losses.append(value)
                if step % log_every == 0:
                    logger.info('epoch %d update %d: loss %.4f lr %.3g', epoch, step, value,
                                optimizer.param_groups[0]['lr'])
            if not epoch_losses:
                raise ValueError(f'train: epoch {epoch} had no batch (empty loader)')
            if scheduler is not None:
                scheduler.step(epoch + 1)
            record: dict[str, Any] = dict(epoch=epoch, steps=len(epoch_losses),
                                          codebook_quant=schedule.codebook_quant,
                                          train_loss=sum(epoch_losses) / len(epoch_losses))
            if evaluate is not None:
                record['val'] = evaluate(model)
            result.epochs.append(record)
            logger.info('epoch %d: train loss %.4f%s', epoch, record['train_loss'],
                        f", val {record['val']}" if 'val' in record else '')
        schedule.step(step)  # a sparse phase that ends with the run still clusters
        schedule.finish(step)
    finally:
        schedule.close()
    result.events = [(e.name, e.iteration) for e in schedule.events]
    result.seconds = dict(schedule.seconds, train=time.perf_counter() - t0)
    return result


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[tuple[Any, Any]],
             device: torch.device | str | None = None) -> dict[str, float]:
    """Top-1 accuracy in % (as :func:`mvq_plugin.core.finetune.evaluate`), mean cross-entropy
    and the image count, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    try:
        for x, y in loader:
            if device is not None:
                x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction='sum'))
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
    if not total:
        raise ValueError('evaluate: no labelled batches given')
    return dict(top1=100.0 * correct / total, loss=loss_sum / total, images=total)
