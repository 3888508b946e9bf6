"""The full MVQ recipe in a plain PyTorch loop: a budget and a driver of the one schedule.

``run_recipe`` takes a dense model through (docs/design.md section 2, item 10; the phases and
their boundaries are :class:`~mvq_plugin.core.schedule.MVQSchedule`'s, written once)::

    N:M prune -> sparse fine-tuning of the kept weights (sparse_iters)
      -> masked k-means on the sparse-trained weights
      -> codebook fine-tuning (iters - sparse_iters; int8 fake-quant for the last quant_iters)
      -> optional BN re-estimation

with optional self-distillation from the dense model (:mod:`~mvq_plugin.core.distill`) and
data-aware settings fed by calibration batches (:mod:`~mvq_plugin.core.calibration`).
``iters`` is the *total* fine-tuning budget, so methods compare at equal training:
``finetune_dense`` spends the same budget on the dense model (the control that shows what
extra training alone buys). ``MVQHook`` drives the same schedule inside mmengine and
:func:`mvq_plugin.integrations.timm_train.train` inside a timm loop.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .accounting import compression_stats
from .calibration import NO_CALIBRATION
from .cluster import CompressionReport
from .config import MVQConfig
from .distill import DistillConfig, Distiller, make_teacher
from .plan import Plan, plan
from .schedule import SPARSE_METHODS, MVQSchedule, ScheduleEvent
from .srste import DEFAULT_LAMBDA
from .staged import prepare

__all__ = ['MVQRecipe', 'RecipeResult', 'run_recipe', 'finetune_dense', 'STAGES']

logger = logging.getLogger('mvq_plugin')

#: Where :func:`run_recipe` evaluates, in order.
STAGES = ('dense', 'pruned', 'sparse_finetuned', 'clustered', 'finetuned', 'bn_recalibrated')

#: Learning-rate shapes over a phase.
LR_SCHEDULES = ('cosine', 'constant')

#: ``batches(step) -> (inputs, targets)``; the same step gives the same batch.
BatchFn = Callable[[int], tuple[Any, Any]]


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f'MVQRecipe.{name}={value!r} must be an integer >= {low}')


def _check_pos(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f'MVQRecipe.{name}={value!r} must be a number '
                         f'{">= 0" if allow_zero else "> 0"}')


@dataclass(frozen=True)
class MVQRecipe:
    """The schedule and its budget.

    Attributes:
        iters: Total fine-tuning steps (sparse phase + codebook phase).
        sparse_iters: Of which N:M-sparse fine-tuning of the kept dense weights (0: cluster
            right after pruning, "one-shot").
        quant_iters: The last steps of the codebook phase run with int8 codebook
            fake-quantization (``None``: the whole codebook phase).
        lr: Peak learning rate of the sparse phase (SGD with momentum).
        codebook_lr: Peak learning rate of the codebook phase (default ``lr``).
        momentum: SGD momentum.
        weight_decay: Weight decay of dense weights, BN and biases (codewords: none).
        distill: Self-distillation from the dense model (``None``: labels only).
        calib_batches: Calibration batches for the data-aware settings and BN re-estimation.
        bn_recalib: Re-estimate BN statistics on the calibration batches at the end.
        log_every: A log line every this many steps.
        lr_schedule: The learning rate over each phase: ``'cosine'`` (decay to 0) or
            ``'constant'``.
        sparse_method: ``'fixed'`` mask or ``'srste'`` in the sparse phase (see
            :class:`~mvq_plugin.core.schedule.MVQSchedule`).
        srste_lambda: SR-STE's sparse-refined decay.
    """

    iters: int
    sparse_iters: int = 0
    quant_iters: int | None = None
    lr: float = 0.01
    codebook_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    distill: DistillConfig | None = None
    calib_batches: int = 0
    bn_recalib: bool = False
    log_every: int = 50
    lr_schedule: str = 'cosine'
    sparse_method: str = 'fixed'
    srste_lambda: float = DEFAULT_LAMBDA

    def __post_init__(self) -> None:
        _check_int('iters', self.iters, 0)
        _check_int('sparse_iters', self.sparse_iters, 0)
        if self.sparse_iters > self.iters:
            raise ValueError(f'MVQRecipe.sparse_iters={self.sparse_iters} is longer than the '
                             f'whole run (iters={self.iters}): the sparse phase is part of '
                             'the total budget; allowed: 0 <= sparse_iters <= iters')
        if self.quant_iters is not None:
            _check_int('quant_iters', self.quant_iters, 0)
            if self.quant_iters > self.codebook_iters:
                raise ValueError(f'MVQRecipe.quant_iters={self.quant_iters} is longer than '
                                 f'the codebook phase (iters - sparse_iters = '
                                 f'{self.codebook_iters})')
        _check_pos('lr', self.lr)
        if self.codebook_lr is not None:
            _check_pos('codebook_lr', self.codebook_lr)
        _check_pos('momentum', self.momentum, allow_zero=True)
        _check_pos('weight_decay', self.weight_decay, allow_zero=True)
        _check_int('calib_batches', self.calib_batches, 0)
        _check_int('log_every', self.log_every, 1)
        if self.sparse_method not in SPARSE_METHODS:
            raise ValueError(f'MVQRecipe.sparse_method={self.sparse_method!r}; allowed: '
                             f'{list(SPARSE_METHODS)}')
        _check_pos('srste_lambda', self.srste_lambda, allow_zero=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f'MVQRecipe.lr_schedule={self.lr_schedule!r}; allowed: '
                             f'{list(LR_SCHEDULES)}')
        object.__setattr__(self, 'distill', DistillConfig.from_value(self.distill))
        if self.bn_recalib and not self.calib_batches:
            raise ValueError(f'MVQRecipe.bn_recalib=True {NO_CALIBRATION} '
                             '(calib_batches >= 1)')

    @property
    def codebook_iters(self) -> int:
        """Steps of the codebook phase."""
        return self.iters - self.sparse_iters

    @property
    def quant_start(self) -> int:
        """Codebook-phase step from which int8 fake-quantization is on."""
        q = self.codebook_iters if self.quant_iters is None else self.quant_iters
        return self.codebook_iters - q


@dataclass
class RecipeResult:
    """What :func:`run_recipe` measured.

    Attributes:
        top1: ``{stage: value of evaluate(model)}`` for the stages in :data:`STAGES` reached.
        losses: Training loss per step (both phases).
        seconds: Wall time per phase (``'calibrate'``, ``'sparse'``, ``'cluster'``,
            ``'codebook'``, ``'bn'``).
        report: The clustering report.
        plan: The applied plan.
        compression_ratio: Accounted compression ratio vs fp32.
        bits: Accounted bits.
        teacher_bytes: Memory the teacher adds (0 without distillation).
        events: ``(event, iteration)`` of every schedule boundary, in order.
    """

    top1: dict[str, float] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: CompressionReport | None = None
    plan: Plan | None = None
    compression_ratio: float = 1.0
    bits: int = 0
    teacher_bytes: int = 0
    events: list[tuple[str, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the loss curve and the report)."""
        return dict(top1=self.top1, seconds=self.seconds,
                    compression_ratio=self.compression_ratio, bits=self.bits,
                    teacher_bytes=self.teacher_bytes, events=self.events, final_loss=self.losses[-1]
                    if self.losses else None)


def _optimizer(groups: list[dict], lr: float, recipe: MVQRecipe, steps: int):
    """SGD with momentum over ``groups`` and the recipe's per-phase learning-rate shape."""
    opt = torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum)
    if recipe.lr_schedule == 'constant':
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))))


def _train(model: nn.Module, batches: BatchFn, first_step: int, steps: int,
           groups: list[dict], lr: float, recipe: MVQRecipe, loss_fn: Callable,
           forward_fn: Callable | None, phase: str,
           schedule: MVQSchedule | None = None) -> list[float]:
    """``steps`` optimizer steps on batches ``first_step ..``; returns the losses.

    ``schedule.step(i)`` runs before iteration ``i`` (its boundary actions); its distillation
    terms join the task loss.
    """
    if steps == 0:
        return []
    opt, sched = _optimizer(groups, lr, recipe, steps)
    task_w = recipe.distill.task_weight if recipe.distill is not None else 1.0
    model.train()
    losses, start = [], time.perf_counter()
    for step in range(steps):
        if schedule is not None:
            schedule.step(first_step + step)
        x, y = batches(first_step + step)
        out = forward_fn(model, x) if forward_fn is not None else model(x)
        loss = task_w * loss_fn(out, y) if task_w else out.new_zeros(())
        if schedule is not None:
            for term in schedule.distill_losses(x, out).values():
                loss = loss + term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % recipe.log_every == 0 or step + 1 == steps:
            recent = losses[-recipe.log_every:]
            elapsed = time.perf_counter() - start
            logger.info('%s step %d/%d: loss %.4f (%.0f s, ETA %.0f s)', phase, step + 1,
                        steps, sum(recent) / len(recent), elapsed,
                        elapsed / (step + 1) * (steps - step - 1))
    return losses


def _take(calib: Iterable[Any] | None, count: int) -> list[Any]:
    if not count:
        return []
    if calib is None:
        raise ValueError(f'MVQRecipe.calib_batches={count} {NO_CALIBRATION}; '
                         'run_recipe(calib=None)')
    out = []
    for batch in calib:
        out.append(batch)
        if len(out) == count:
            break
    if not out:
        raise ValueError(f'run_recipe: calib gave no batches {NO_CALIBRATION}')
    return out


#: Which schedule event marks which evaluation stage.
_STAGE_OF_EVENT = {'pruned': 'pruned', 'sparse_end': 'sparse_finetuned',
                   'clustered': 'clustered', 'trained': 'finetuned',
                   'bn_recalibrated': 'bn_recalibrated'}


def run_recipe(model: nn.Module, cfg: MVQConfig, recipe: MVQRecipe, batches: BatchFn, *,
               loss_fn: Callable = F.cross_entropy,
               evaluate: Callable[[nn.Module], float] | None = None,
               calib: Iterable[Any] | None = None, teacher: nn.Module | None = None,
               forward_fn: Callable[[nn.Module, Any], Any] | None = None,
               stages: Sequence[str] = STAGES, backend: str = 'auto',
               first_conv: str | Sequence[str] | None = None,
               on_event: Callable[[ScheduleEvent], None] | None = None) -> RecipeResult:
    """Compresses a dense ``model`` in place with the full MVQ schedule, in a plain loop.

    The phases and their boundaries are :class:`~mvq_plugin.core.schedule.MVQSchedule`'s;
    this function is its plain-PyTorch driver: one SGD optimizer per phase (what trains in
    the phase, the recipe's learning-rate shape over the phase's steps).

    Args:
        model: The dense (trained) model.
        cfg: MVQ settings (``vq`` layers are not pruned: their sparse phase is plain dense
            fine-tuning, so ``vq`` rows spend the same budget).
        recipe: Schedule and budget.
        batches: ``batches(step) -> (inputs, targets)``; the codebook phase continues the
            step count of the sparse phase (no batch is seen twice within ``iters``).
        loss_fn: ``loss_fn(output, targets)``.
        evaluate: ``evaluate(model) -> top-1`` (any figure); called at ``stages``.
        calib: Calibration batches (``recipe.calib_batches`` of them are taken).
        teacher: Teacher to distil from (default: a frozen copy of the dense ``model``).
        forward_fn: ``forward_fn(model, inputs)`` (default ``model(inputs)``).
        stages: Stages at which to evaluate.
        backend: k-means search backend.
        first_conv: Name(s) of the input conv(s) to keep dense.
        on_event: Called with each :class:`~mvq_plugin.core.schedule.ScheduleEvent` before
            the stage it marks is evaluated (e.g. to measure the clustering error).

    Returns:
        A :class:`RecipeResult`.
    """
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f'run_recipe: unknown stage(s) {unknown}; allowed: {list(STAGES)}')
    if teacher is not None and recipe.distill is None:
        raise ValueError('run_recipe: a teacher was given but MVQRecipe.distill is None')
    result = RecipeResult()

    def measure(stage: str) -> None:
        if evaluate is not None and stage in stages:
            result.top1[stage] = float(evaluate(model))
            logger.info('recipe: %s: %.2f', stage, result.top1[stage])

    def observe(event: ScheduleEvent) -> None:
        if on_event is not None:
            on_event(event)
        if event.name in _STAGE_OF_EVENT:
            measure(_STAGE_OF_EVENT[event.name])

    # Everything that can fail on the settings fails before the model changes.
    planned = plan(model, cfg, first_conv=first_conv).compressed
    needs = [lp.name for lp in planned if lp.config.needs_calibration]
    calib_list = _take(calib, recipe.calib_batches)
    if needs and not calib_list:
        raise ValueError(f'layers {needs[:3]} use data-aware settings (importance='
                         f"'activation' or kmeans_weights='activation') and "
                         f'{NO_CALIBRATION} (MVQRecipe.calib_batches >= 1 and calib)')
    measure('dense')
    result.plan = prepare(model, cfg, train_dense=recipe.sparse_iters > 0,
                          first_conv=first_conv)
    schedule = MVQSchedule(model, sparse_iters=recipe.sparse_iters,
                           sparse_method=recipe.sparse_method, srste_lambda=recipe.srste_lambda,
                           codebook_quant_start=recipe.sparse_iters + recipe.quant_start,
                           calib=calib_list or None, forward_fn=forward_fn,
                           distill=recipe.distill, teacher=teacher,
                           bn_recalib=recipe.bn_recalib, seed=cfg.seed, backend=backend,
                           on_event=observe)
    try:
        schedule.start()
        result.teacher_bytes = schedule.teacher_bytes
        schedule.step(0)  # prune (and, one-shot, cluster)
        t0 = time.perf_counter()
        result.losses += _train(model, batches, 0, recipe.sparse_iters,
                                schedule.param_groups(recipe.weight_decay), recipe.lr, recipe,
                                loss_fn, forward_fn, 'sparse fine-tuning', schedule)
        result.seconds['sparse'] = time.perf_counter() - t0
        schedule.step(recipe.sparse_iters)  # cluster
        t0 = time.perf_counter()
        result.losses += _train(model, batches, recipe.sparse_iters, recipe.codebook_iters,
                                schedule.param_groups(recipe.weight_decay),
                                recipe.codebook_lr or recipe.lr, recipe, loss_fn, forward_fn,
                                'codebook fine-tuning', schedule)
        result.seconds['codebook'] = time.perf_counter() - t0
        schedule.step(recipe.iters)
        schedule.finish(recipe.iters)
    finally:
        schedule.close()
    result.seconds.update(schedule.seconds)
    result.report = schedule.report
    result.events = [(e.name, e.iteration) for e in schedule.events]
    model.eval()
    final = compression_stats(model)
    result.compression_ratio, result.bits = final.compression_ratio, final.bits
    return result


def finetune_dense(model: nn.Module, recipe: MVQRecipe, batches: BatchFn, *,
                   loss_fn: Callable = F.cross_entropy,
                   evaluate: Callable[[nn.Module], float] | None = None,
                   teacher: nn.Module | None = None,
                   forward_fn: Callable[[nn.Module, Any], Any] | None = None) -> RecipeResult:
    """The dense control: every weight fine-tuned for ``recipe.iters`` steps at ``recipe.lr``.

    Same optimizer, learning-rate shape, batches and distillation as :func:`run_recipe`,
    nothing compressed: the accuracy extra training alone buys.
    """
    if teacher is not None and recipe.distill is None:
        raise ValueError('finetune_dense: a teacher was given but MVQRecipe.distill is None')
    result = RecipeResult()
    if evaluate is not None:
        result.top1['dense'] = float(evaluate(model))
    distiller = None
    if recipe.distill is not None:
        distiller = Distiller(model, teacher if teacher is not None else make_teacher(model),
                              recipe.distill, forward_fn)
    t0 = time.perf_counter()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        result.losses = _train(model, batches, 0, recipe.iters,
                               [dict(params=params, weight_decay=recipe.weight_decay)],
                               recipe.lr, recipe, loss_fn, forward_fn, 'dense fine-tuning',
                               _DistillOnly(distiller))
    finally:
        if distiller is not None:
            distiller.close()
    result.seconds['dense'] = time.perf_counter() - t0
    model.eval()
    if evaluate is not None:
        result.top1['finetuned'] = float(evaluate(model))
    return result


class _DistillOnly:
    """The distillation part of a schedule for a model that is never compressed."""

    def __init__(self, distiller: Distiller | None) -> None:
        self.distiller = distiller

    def step(self, iteration: int) -> list:
        return []

    def distill_losses(self, inputs: Any, student_output: Any = None) -> dict:
        return {} if self.distiller is None else self.distiller.losses(inputs, student_output)
