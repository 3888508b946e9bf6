"""Fine-tuning and evaluating a compressed model in plain PyTorch (no mmengine, no timm).

* :func:`set_trainable`: codebooks, BN affine parameters and biases train, the rest is frozen;
* :func:`recalibrate_bn`: re-estimates BN running statistics on unlabelled batches;
* :func:`kl_per_image` and :func:`distill`: logit distillation from a (dense) teacher;
* :func:`evaluate`: top-1 over labelled batches.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .calibration import run_batches
from .compress import codebook_param_groups
from .parametrize import quantized_layers

__all__ = ['set_trainable', 'recalibrate_bn', 'kl_per_image', 'distill', 'evaluate']

logger = logging.getLogger('mvq_plugin')

#: ``batches(step) -> (inputs, teacher_logits)``; the same step gives the same batch.
DistillSource = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def set_trainable(model: nn.Module) -> int:
    """Codebooks, BN affine parameters and biases trainable, everything else frozen.

    Returns:
        Number of trainable elements.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    for q in quantized_layers(model).values():
        q.codebook.requires_grad_(True)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.affine:
                module.weight.requires_grad_(True)
                module.bias.requires_grad_(True)
        elif getattr(module, 'bias', None) is not None and isinstance(module.bias, nn.Parameter):
            module.bias.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[Any],
                   forward_fn: Callable[[nn.Module, Any], Any] | None = None) -> int:
    """Re-estimates the BN running statistics of ``model`` on ``batches`` (no labels).

    ``forward_fn(model, batch)`` runs one batch (default ``model(batch)``).

    The running mean/variance are reset and replaced by the plain average over the batches
    (``momentum=None``); nothing else changes. The model is left in eval mode.

    Returns:
        The number of batches seen.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in bns:
        bn.train()
    seen = 0
    try:
        seen = run_batches(model, batches, forward_fn)
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if not seen:
        raise ValueError('recalibrate_bn: no calibration batches given')
    return seen


def kl_per_image(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` per row, in nats; shapes ``(N, C)``."""
    log_t = F.log_softmax(teacher.float(), dim=1)
    log_s = F.log_softmax(student.float(), dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1)


def distill(student: nn.Module, batches: DistillSource, steps: int, lr: float,
            log_every: int = 20) -> list[float]:
    """KL(teacher || student) fine-tune of the codebooks, BN affine parameters and biases.

    BN layers stay in eval mode (running statistics frozen: tiny batches would corrupt them).
    Adam with cosine decay; the codebook quantization switch is left as it is (on: the
    student trains as it is stored). Parameters are frozen again at the end.

    Args:
        student: A compressed model.
        batches: ``batches(step) -> (inputs, teacher logits)``.
        steps: Optimizer steps.
        lr: Peak learning rate.
        log_every: A progress log line every this many steps.

    Returns:
        The loss of every step.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f'distill: steps={steps} must be >= 1 and lr={lr} > 0')
    set_trainable(student)
    groups = [g for g in codebook_param_groups(student) if g['params']]
    opt = torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    student.eval()
    losses = []
    start = time.perf_counter()
    try:
        for step in range(steps):
            x, t = batches(step)
            loss = kl_per_image(t, student(x)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % log_every == 0 or step + 1 == steps:
                recent = losses[-log_every:]
                elapsed = time.perf_counter() - start
                logger.info('distill step %d/%d: KL %.4f (%.0f s, ETA %.0f s)', step + 1, steps,
                            sum(recent) / len(recent), elapsed,
                            elapsed / (step + 1) * (steps - step - 1))
    finally:
        for p in student.parameters():
            p.requires_grad_(False)
    return losses


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             forward_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None) -> float:
    """Top-1 accuracy (in %) of ``model`` in eval mode over ``(inputs, labels)`` batches.

    ``forward_fn(model, inputs)`` gives the logits (default ``model(inputs)``).
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in batches:
            logits = forward_fn(model, x) if forward_fn is not None else model(x)
            correct += int((logits.argmax(1) == y).sum())
            total += int(y.numel())
    finally:
        model.train(was_training)
    if not total:
        raise ValueError('evaluate: no labelled batches given')
    return 100.0 * correct / total
