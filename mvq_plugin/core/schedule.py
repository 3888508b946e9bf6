"""The MVQ schedule, written once: what happens at which training iteration.

Every front end (:func:`~mvq_plugin.core.recipe.run_recipe` in a plain PyTorch loop,
``MVQHook`` in mmengine, the timm fine-tuning loop) drives one :class:`MVQSchedule` and holds
no phase logic of its own. Like Torch-Pruning's pruner (``step()`` inside the user's loop) and
coremltools' prepare/step/finalize, the schedule is loop-agnostic::

    schedule = MVQSchedule(model, sparse_iters=200, codebook_quant_start=300,
                           calib=batches, distill=DistillConfig())   # model after prepare()
    schedule.start()                      # checks; teacher from the dense function
    for it in range(total):
        schedule.step(it)                 # the boundary actions due before iteration `it`
        loss = task_loss + sum(schedule.distill_losses(x, out).values())
        ...                               # the loop's own optimizer step
    schedule.finish()                     # int8 codebooks, BN re-estimation
    schedule.close()

The phases and their boundaries (docs/design.md section 2, item 10)::

    iteration 0 .. sparse_iters-1       SPARSE: N:M-pruned at the start; the kept dense weights
                                        train, codewords get no gradient ('fixed': the mask
                                        of the start; 'srste': SR-STE recomputes it every
                                        step and freezes it at the end)
    iteration sparse_iters              cluster (masked k-means on the sparse-trained weights);
                                        the dense originals freeze
    sparse_iters .. end                 CODEBOOK: codewords (and biases, BN) train
    iteration codebook_quant_start      int8 codebook fake-quantization on (STE)
    finish()                            int8 on (what the artifact stores); BN re-estimation

Each boundary is decided from the model's own state (the ``stage`` buffers) and the iteration,
so a resumed run, which restores the stages from its checkpoint, continues where it stopped and
never re-clusters. Every boundary is reported as a :class:`ScheduleEvent` to ``on_event``.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .calibration import NO_CALIBRATION, InputStats, collect_input_stats
from .cluster import CompressionReport, ProgressFn
from .compress import codebook_param_groups, set_codebook_quant
from .distill import DistillConfig, Distiller, make_teacher
from .finetune import recalibrate_bn
from .parametrize import MVQWeight, Stage, codebook_parameters, quantized_layers
from .srste import DEFAULT_LAMBDA, srste_mask
from .staged import cluster_prepared, pending_layers, prune_prepared

__all__ = ['MVQSchedule', 'Phase', 'ScheduleEvent', 'EVENTS', 'SPARSE_METHODS']

logger = logging.getLogger('mvq_plugin')

ForwardFn = Callable[[nn.Module, Any], Any]
#: ``broadcast(tensor, src_rank)`` in place, as ``torch.distributed.broadcast``.
BroadcastFn = Callable[[torch.Tensor, int], Any]

#: Sparse-phase training methods.
SPARSE_METHODS = ('fixed', 'srste')

#: The events a schedule reports, in the order they can happen.
EVENTS = ('pruned', 'sparse_end', 'clustered', 'codebook_quant', 'trained', 'bn_recalibrated')


class Phase(str, enum.Enum):
    """What trains now."""

    #: N:M-masked dense weights (before clustering).
    SPARSE = 'sparse'
    #: Codewords (after clustering).
    CODEBOOK = 'codebook'


@dataclass(frozen=True)
class ScheduleEvent:
    """A boundary the schedule crossed.

    Attributes:
        name: One of :data:`EVENTS`. ``'sparse_end'`` comes right before ``'clustered'`` (the
            sparse-trained model, still unclustered, can be looked at); ``'trained'`` marks
            the trained model with its codebooks as stored, before BN re-estimation.
        iteration: The training iteration it happened before (``finish()``: the number of
            iterations run).
        layers: The layers it touched (pruning, clustering).
    """

    name: str
    iteration: int
    layers: tuple[str, ...] = ()


def _check_int(name: str, value: Any, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f'MVQSchedule.{name}={value!r} must be '
                         f'{"None or " if none_ok else ""}an integer >= {low}')


class MVQSchedule:
    """Owns the MVQ phases of one prepared model.

    Args:
        model: A model after :func:`~mvq_plugin.core.staged.prepare` (fresh: layers in
            ``Stage.DENSE``; resumed: the stages its checkpoint restored). With
            ``sparse_iters > 0`` the dense originals must be trainable
            (``prepare(..., train_dense=True)``).
        sparse_iters: Iterations of N:M-sparse fine-tuning before clustering (0: cluster
            before the first iteration).
        sparse_method: ``'fixed'`` (the mask chosen at the start, ASP-style; the paper's
            choice for detection and segmentation) or ``'srste'`` (SR-STE, the paper's sparse
            training for classification; :mod:`~mvq_plugin.core.srste`).
        srste_lambda: SR-STE's sparse-refined decay ``lambda_w``.
        codebook_quant_start: Iteration from which codebooks are int8 fake-quantized during
            training (``None``: only from :meth:`finish` on).
        calib: Calibration batches (an iterable, read once, when first needed) for the
            data-aware settings and BN re-estimation.
        forward_fn: ``forward_fn(model, batch)`` for a calibration batch (and the teacher);
            default ``model(batch)``.
        distill: Self-distillation settings (``None``: none).
        teacher: The teacher (default: a frozen copy of the model's dense function, made in
            :meth:`start`).
        bn_recalib: Re-estimate BN statistics on ``calib`` in :meth:`finish`.
        seed: Base k-means seed (layer ``i`` uses ``seed + i``).
        backend: k-means search backend.
        rank: This process's rank (clustering is split across ranks: layer ``i`` of the
            pending ones on rank ``i % world_size``).
        world_size: Number of processes.
        broadcast: ``broadcast(tensor, src)`` for ``world_size > 1``.
        on_event: Called with every :class:`ScheduleEvent`.
        progress: Clustering progress callback ``progress(i, total, name)``.
    """

    def __init__(self, model: nn.Module, *, sparse_iters: int = 0,
                 sparse_method: str = 'fixed', srste_lambda: float = DEFAULT_LAMBDA,
                 codebook_quant_start: int | None = None, calib: Iterable[Any] | None = None,
                 forward_fn: ForwardFn | None = None,
                 distill: DistillConfig | dict | bool | None = None,
                 teacher: nn.Module | None = None, bn_recalib: bool = False, seed: int = 0,
                 backend: str = 'auto', rank: int = 0, world_size: int = 1,
                 broadcast: BroadcastFn | None = None,
                 on_event: Callable[[ScheduleEvent], None] | None = None,
                 progress: ProgressFn | None = None) -> None:
        _check_int('sparse_iters', sparse_iters, 0)
        _check_int('codebook_quant_start', codebook_quant_start, 0, none_ok=True)
        _check_int('world_size', world_size, 1)
        if sparse_method not in SPARSE_METHODS:
            raise ValueError(f'MVQSchedule.sparse_method={sparse_method!r}; allowed: '
                             f'{list(SPARSE_METHODS)}')
        if isinstance(srste_lambda, bool) or not isinstance(srste_lambda, (int, float)) \
                or not srste_lambda >= 0:
            raise ValueError(f'MVQSchedule.srste_lambda={srste_lambda!r} must be a number >= 0')
        if not 0 <= rank < world_size:
            raise ValueError(f'MVQSchedule.rank={rank!r} must be in [0, world_size={world_size})')
        if world_size > 1 and broadcast is None:
            raise ValueError('MVQSchedule: world_size > 1 needs broadcast(tensor, src)')
        layers = quantized_layers(model)
        if not layers:
            raise ValueError('MVQSchedule: the model has no MVQ layers; prepare() it first')
        self.distill = DistillConfig.from_value(distill)
        if teacher is not None and self.distill is None:
            raise ValueError('MVQSchedule: a teacher was given but distill is None')
        self.model = model
        self.sparse_iters = sparse_iters
        self.sparse_method, self.srste_lambda = sparse_method, float(srste_lambda)
        self.codebook_quant_start = codebook_quant_start
        self.bn_recalib = bool(bn_recalib)
        self.forward_fn = forward_fn
        self.seed, self.backend = seed, backend
        self.rank, self.world_size, self.broadcast = rank, world_size, broadcast
        self.on_event = on_event
        self.progress = progress
        self.events: list[ScheduleEvent] = []
        self.layer_errors: dict[str, float] = {}
        self.report: CompressionReport | None = None
        self.seconds: dict[str, float] = {}
        self.distiller: Distiller | None = None
        self._teacher = teacher
        self._calib_source = calib
        self._calib: list[Any] | None = None
        if self.bn_recalib and calib is None:
            raise ValueError(f'MVQSchedule: bn_recalib=True {NO_CALIBRATION}; calib=None')
        needs = [n for n in pending_layers(model) if self._config(n, layers[n]).needs_calibration]
        if needs and calib is None:
            raise ValueError(f'layers {needs[:3]} use data-aware settings (importance='
                             f"'activation' or kmeans_weights='activation') and "
                             f'{NO_CALIBRATION}; calib=None')
        dense = [n for n, q in layers.items() if q.current_stage != Stage.CLUSTERED]
        frozen = [n for n in dense if not self._original(n).requires_grad]
        if sparse_iters and frozen:
            raise ValueError(f'MVQSchedule: sparse_iters={sparse_iters} trains the dense '
                             f'weights, but layer(s) {frozen[:3]} have them frozen: prepare '
                             'the model with train_dense=True')

    # -- state ---------------------------------------------------------------------------
    @staticmethod
    def _config(name: str, q: MVQWeight):
        if q.layer_config is None:
            raise ValueError(f'layer {name!r} has no layer_config: it was not built by '
                             'prepare()')
        return q.layer_config

    def _original(self, name: str) -> nn.Parameter:
        return self.model.get_submodule(name).parametrizations.weight.original

    @property
    def phase(self) -> Phase:
        """:attr:`Phase.SPARSE` while any layer is unclustered, then :attr:`Phase.CODEBOOK`."""
        return Phase.SPARSE if pending_layers(self.model) else Phase.CODEBOOK

    @property
    def codebook_quant(self) -> bool:
        """Whether int8 codebook fake-quantization is on."""
        layers = quantized_layers(self.model).values()
        return bool(layers) and all(q.codebook_quant for q in layers)

    def param_groups(self, weight_decay: float = 0.0) -> list[dict]:
        """Optimizer groups of what trains in the current phase (empty groups left out).

        Sparse phase: every trainable parameter but the codewords (one group). Codebook phase:
        the codewords (no weight decay) and the rest (the frozen dense originals excluded).
        """
        if self.phase is Phase.SPARSE:
            books = {id(p) for q in quantized_layers(self.model).values()
                     for p in codebook_parameters(q)}
            params = [p for p in self.model.parameters()
                      if p.requires_grad and id(p) not in books]
            groups = [dict(params=params, weight_decay=weight_decay)]
        else:
            groups = codebook_param_groups(self.model, weight_decay=weight_decay)
        return [g for g in groups if g['params']]

    def calib_batches(self) -> list[Any]:
        """The calibration batches (read from ``calib`` once)."""
        if self._calib is None:
            if self._calib_source is None:
                raise ValueError(f'MVQSchedule {NO_CALIBRATION}; calib=None')
            self._calib = list(self._calib_source)
            if not self._calib:
                raise ValueError(f'MVQSchedule: calib gave no batches {NO_CALIBRATION}')
        return self._calib

    # -- the boundaries ------------------------------------------------------------------
    def _emit(self, name: str, iteration: int, layers: Iterable[str] = ()) -> None:
        event = ScheduleEvent(name, iteration, tuple(layers))
        self.events.append(event)
        logger.info('MVQ schedule: %s before iteration %d%s', name, iteration,
                    f' ({len(event.layers)} layers)' if event.layers else '')
        if self.on_event is not None:
            self.on_event(event)

    def _stats(self, names: list[str]) -> InputStats:
        if not names:
            return {}
        t0 = time.perf_counter()
        out = collect_input_stats(self.model, names, self.calib_batches(), self.forward_fn)
        self.seconds['calibrate'] = self.seconds.get('calibrate', 0.0) + \
            time.perf_counter() - t0
        return out

    def start(self) -> None:
        """Before the first iteration of a run (fresh or resumed): makes the teacher.

        The teacher is the model's dense function now (the dense originals of unclustered
        layers; a resumed run rebuilds it from the originals its checkpoint carries).
        """
        if self.distill is None or self.distiller is not None:
            return
        teacher = self._teacher if self._teacher is not None else \
            make_teacher(self.model, originals=True)
        self.distiller = Distiller(self.model, teacher, self.distill, self.forward_fn)

    def step(self, iteration: int) -> list[ScheduleEvent]:
        """Runs the boundary actions due before training iteration ``iteration``.

        Returns:
            The events that happened (usually none).
        """
        _check_int('step(iteration)', iteration, 0)
        first = len(self.events)
        layers = quantized_layers(self.model)
        dense = [n for n, q in layers.items() if q.current_stage == Stage.DENSE]
        if dense and iteration < self.sparse_iters:
            self._prune(dense, iteration)
        if self.sparse_method == 'srste' and iteration < self.sparse_iters:
            # (again after a resume: the switch is not part of a checkpoint, the stage is)
            for q in quantized_layers(self.model).values():
                if q.current_stage == Stage.PRUNED and q.prunes and q.srste_lambda is None:
                    q.srste_lambda = self.srste_lambda
        if pending_layers(self.model) and iteration >= self.sparse_iters:
            if dense:
                self._prune(dense, iteration)  # no sparse phase: prune and cluster at once
            self._emit('sparse_end', iteration)
            self._cluster(iteration)
        start = self.codebook_quant_start
        if start is not None and iteration >= start and not self.codebook_quant \
                and not pending_layers(self.model):
            set_codebook_quant(self.model, True)
            self._emit('codebook_quant', iteration)
        return self.events[first:]

    def _prune(self, names: list[str], iteration: int) -> None:
        layers = quantized_layers(self.model)
        reads = [n for n in names if self._config(n, layers[n]).mask_reads_stats]
        prune_prepared(self.model, names, input_stats=self._stats(reads))
        self._emit('pruned', iteration, names)

    def _cluster(self, iteration: int) -> None:
        model = self.model
        pending = pending_layers(model)
        layers = quantized_layers(model)
        mine = [n for i, n in enumerate(pending) if i % self.world_size == self.rank]
        reads = [n for n in mine if self._config(n, layers[n]).kmeans_reads_stats]
        stats = self._stats(reads)
        for name in pending:
            self._original(name).requires_grad_(False)
            q = layers[name]
            if q.srste_lambda is not None:  # SR-STE's mask freezes: top-N of the final weights
                q.mask.copy_(srste_mask(self._original(name), q.block_size, q.vector_axis,
                                        q.n, q.m))
                q.srste_lambda = None
        t0 = time.perf_counter()
        self.report = cluster_prepared(model, mine, seed=self.seed, backend=self.backend,
                                       progress=self.progress, input_stats=stats)
        self.seconds['cluster'] = time.perf_counter() - t0
        if self.world_size > 1:
            self._share(pending)
        self.layer_errors = {n: self._relative_error(n) for n in pending}
        self._emit('clustered', iteration, pending)

    def _relative_error(self, name: str) -> float:
        module = self.model.get_submodule(name)
        with torch.no_grad():
            w = module.parametrizations.weight.original
            return float((w - module.weight).norm() / w.norm().clamp_min(1e-12))

    def _share(self, names: list[str]) -> None:
        """Every layer broadcast from the rank that clustered it."""
        layers = quantized_layers(self.model)
        with torch.no_grad():
            for i, name in enumerate(names):
                q, src = layers[name], i % self.world_size
                for tensor in (q.codebook.data, q.assignments, q.stage):
                    self.broadcast(tensor, src)
                mask = q.mask.to(torch.uint8)
                self.broadcast(mask, src)
                q.mask.copy_(mask.bool())

    def distill_losses(self, inputs: Any, student_output: Any = None) -> dict[str, torch.Tensor]:
        """The distillation terms for the student's last forward on ``inputs`` (none
        without distillation)."""
        if self.distiller is None:
            return {}
        return self.distiller.losses(inputs, student_output)

    def finish(self, iteration: int | None = None) -> list[ScheduleEvent]:
        """After the last iteration: int8 codebooks on (what the artifact stores), then BN
        re-estimation when configured. The model is left in eval mode."""
        first = len(self.events)
        it = iteration if iteration is not None else max(
            [e.iteration for e in self.events], default=0)
        if pending_layers(self.model):
            raise RuntimeError(f'MVQSchedule.finish: {len(pending_layers(self.model))} layer(s) '
                               'are not clustered: the run ended before the sparse phase did')
        if not self.codebook_quant:
            set_codebook_quant(self.model, True)
            self._emit('codebook_quant', it)
        self._emit('trained', it)
        if self.bn_recalib:
            t0 = time.perf_counter()
            recalibrate_bn(self.model, self.calib_batches(), self.forward_fn)
            self.seconds['bn'] = time.perf_counter() - t0
            self._emit('bn_recalibrated', it)
        self.model.eval()
        return self.events[first:]

    def close(self) -> None:
        """Removes the distillation hooks (the teacher is dropped)."""
        if self.distiller is not None:
            self.distiller.close()
            self.distiller = None

    @property
    def teacher_bytes(self) -> int:
        """Memory the teacher adds (0 without distillation)."""
        return self.distiller.teacher_bytes if self.distiller is not None else 0
