"""``MVQHook``: drives the MVQ schedule inside an mmengine run, logs it, persists it.

The model arrives prepared by ``mvq_plugin.MVQModel`` (codebooks exist, every MVQ layer still
computes its dense weight). The phases and their boundaries (prune, sparse fine-tuning,
cluster, int8 switch, BN re-estimation) are :class:`~mvq_plugin.core.schedule.MVQSchedule`'s;
the hook, like mmengine's ``EMAHook``, only drives, observes and persists:

1. ``before_train`` (after ``load_from``/resume): checks that dense weights were loaded into
   every unclustered layer, builds the schedule (calibration batches: the first
   ``calib_batches`` train batches, read when a data-aware setting or BN re-estimation needs
   them; the teacher: the dense model, when ``distill`` is set, whose terms join the model's
   losses through a forward hook and which is never saved), then ``schedule.step``;
2. ``before_train_iter``: ``schedule.step(runner.iter)``; ``after_train_iter`` of the last
   iteration: ``schedule.finish`` (before the last validation and checkpoint see the model);
3. logs ``mvq/compression_ratio``, ``mvq/bits``, ``mvq/mean_rel_error`` and per-layer errors
   to the logger and the visualizer backends;
4. saves the quantization switch in checkpoints (everything else is model state: codebooks,
   assignments, masks, stages); a resumed or tested model is never re-clustered;
5. ``after_train``: writes the ``.mvq`` artifact and a JSON/Markdown report to the work dir.

Under DDP the clustering is split across ranks (layer ``i`` on rank ``i % world_size``, with
the seed a single process would use) and each layer is broadcast from the rank that
clustered it, so every rank holds identical state.
"""
from __future__ import annotations

import json
import os.path as osp
import time
from typing import Any

from mmengine.dist import broadcast, get_dist_info, is_main_process
from mmengine.hooks import Hook

from ...core import (
    MVQSchedule,
    ScheduleEvent,
    compression_stats,
    pending_layers,
    quantized_layers,
    set_codebook_quant,
)
from ...core.calibration import NO_CALIBRATION
from ...core.distill import DistillConfig
from ...core.schedule import SPARSE_METHODS
from ...core.search import BACKENDS
from ...core.srste import DEFAULT_LAMBDA
from .model import dense_loaded_layers
from .recipe import TrainCalibration, attach_distillation, batch_forward, resolve_distill
from .registry import HOOKS
from .tracing import unwrap

__all__ = ['MVQHook']


def _check_count(name: str, value: Any, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'MVQHook.{name}={value!r} must be '
                         f'{"None or " if none_ok else ""}an integer >= 0')


@HOOKS.register_module()
class MVQHook(Hook):
    """Runs the MVQ schedule (pruning, clustering, codebook quantization) in an mmengine run.

    Args:
        sparse_finetune_iters: Iterations of N:M-sparse fine-tuning of the dense weights
            before clustering (needs ``model.sparse_finetune=True``); 0 clusters at once.
        codebook_quant_start_iter: Iteration from which codebooks are int8 fake-quantized
            (``None``: from the end of the last iteration on, so the last validation, the
            last checkpoint and the artifact all see the stored codebooks).
        seed: Base seed of the k-means (default: the MVQ config's ``seed``).
        backend: k-means search backend (``'auto'``, ``'torch'``, ``'faiss'``).
        allow_random_init: Cluster even when no dense weights were loaded (tests only).
        artifact: File name of the artifact written to the work dir after training
            (``None``: none).
        report: Base name of the JSON/Markdown report written to the work dir.
        distill: Self-distillation from the dense model (``None``: none; ``True`` or a dict
            of :class:`~mvq_plugin.core.distill.DistillConfig` fields; ``logits_module``
            defaults to ``'head.fc'`` where the model has one). The teacher is built in
            ``before_train`` and never saved.
        calib_batches: How many train batches feed the data-aware settings
            (``importance='activation'``, ``kmeans_weights='activation'``) and BN
            re-estimation.
        bn_recalib: Re-estimate BN statistics on the calibration batches after the last
            iteration.
        sparse_method: ``'fixed'`` (ASP-style, the paper's choice for detection and
            segmentation) or ``'srste'`` (the paper's for classification).
        srste_lambda: SR-STE's sparse-refined decay.
    """

    priority = 'ABOVE_NORMAL'  # cluster before other hooks look at the weights

    def __init__(self, sparse_finetune_iters: int = 0, codebook_quant_start_iter: int | None = None,
                 seed: int | None = None, backend: str = 'auto',
                 allow_random_init: bool = False, artifact: str | None = 'model.mvq',
                 report: str = 'mvq_report', distill: dict | bool | None = None,
                 calib_batches: int = 0, bn_recalib: bool = False,
                 sparse_method: str = 'fixed', srste_lambda: float = DEFAULT_LAMBDA) -> None:
        _check_count('sparse_finetune_iters', sparse_finetune_iters)
        _check_count('codebook_quant_start_iter', codebook_quant_start_iter, none_ok=True)
        _check_count('calib_batches', calib_batches)
        if backend not in BACKENDS:
            raise ValueError(f'MVQHook.backend={backend!r}; choose one of {list(BACKENDS)}')
        if sparse_method not in SPARSE_METHODS:
            raise ValueError(f'MVQHook.sparse_method={sparse_method!r}; allowed: '
                             f'{list(SPARSE_METHODS)}')
        if bn_recalib and not calib_batches:
            raise ValueError(f'MVQHook.bn_recalib=True {NO_CALIBRATION}: set '
                             'MVQHook.calib_batches >= 1')
        self.distill = DistillConfig.from_value(distill)
        self.calib_batches = calib_batches
        self.bn_recalib = bool(bn_recalib)
        self.sparse_finetune_iters = sparse_finetune_iters
        self.sparse_method, self.srste_lambda = sparse_method, srste_lambda
        self.codebook_quant_start_iter = codebook_quant_start_iter
        self.seed = seed
        self.backend = backend
        self.allow_random_init = allow_random_init
        self.artifact = artifact
        self.report_name = report
        self.layer_errors: dict[str, float] = {}
        self.schedule: MVQSchedule | None = None
        self._distill_handle = None

    @property
    def codebook_quant(self) -> bool:
        """Whether the schedule has switched int8 codebook fake-quantization on."""
        return self.schedule is not None and self.schedule.codebook_quant

    # -- checks ---------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = unwrap(runner.model)
        if not quantized_layers(model):
            raise RuntimeError('MVQHook: the model has no MVQ layers; build it with '
                               "model=dict(type='mvq_plugin.MVQModel', model=..., mvq=...)")
        load_from = runner.cfg.get('load_from')
        if load_from and not osp.isfile(load_from):
            raise FileNotFoundError(f'load_from={load_from!r}: checkpoint file not found')
        if load_from:
            runner.logger.info(f'MVQHook: dense weights come from load_from={load_from}')
        trainable = [model.get_submodule(name).parametrizations.weight.original.requires_grad
                     for name in quantized_layers(model)]
        max_iters = getattr(runner, 'max_iters', None)
        pending = pending_layers(model)
        if self.sparse_finetune_iters and pending and max_iters is not None \
                and self.sparse_finetune_iters >= max_iters:
            raise ValueError(f'MVQHook.sparse_finetune_iters={self.sparse_finetune_iters} is '
                             f'not shorter than the run (max_iters={max_iters}): the codebooks '
                             'would never train; allowed: 0 <= sparse_finetune_iters < max_iters')
        if self.sparse_finetune_iters and pending and not all(trainable):
            raise ValueError('MVQHook.sparse_finetune_iters > 0 needs the dense weights to be '
                             'trainable: set model.sparse_finetune=True')
        needs = [lp.name for lp in getattr(model, 'mvq_plan', None) or []
                 if lp.will_compress and lp.config.needs_calibration]
        if needs and pending and not self.calib_batches:
            raise ValueError(f'MVQHook: layers {needs[:3]} use data-aware settings (importance='
                             f"'activation' or kmeans_weights='activation') and "
                             f'{NO_CALIBRATION}: set MVQHook.calib_batches >= 1')
        wrapper = runner.cfg.get('model_wrapper_cfg') or {}
        unused_ok = wrapper.get('find_unused_parameters', runner.cfg.get(
            'find_unused_parameters', False))
        if self.sparse_finetune_iters and get_dist_info()[1] > 1 and not unused_ok:
            # The codewords get no gradient before clustering, the dense weights none after.
            raise ValueError('MVQHook.sparse_finetune_iters > 0 under DDP needs '
                             'find_unused_parameters=True (top-level config key or '
                             'model_wrapper_cfg.find_unused_parameters)')

    # -- driving the schedule --------------------------------------------------------------
    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        pending = pending_layers(model)
        if not pending:
            runner.logger.info('MVQHook: model already clustered (resumed or loaded); '
                               'not clustering again')
        unloaded = [n for n, ok in dense_loaded_layers(model).items() if not ok and n in pending]
        if unloaded and not self.allow_random_init:
            raise RuntimeError(
                f'MVQHook: no dense weights were loaded for {len(unloaded)} MVQ layer(s), e.g. '
                f'{unloaded[:3]}; set load_from to the dense checkpoint or '
                'model.init_checkpoint (clustering random weights is never useful)')
        rank, world = get_dist_info()
        distill = resolve_distill(model, self.distill)
        self.schedule = MVQSchedule(
            model, sparse_iters=self.sparse_finetune_iters, sparse_method=self.sparse_method,
            srste_lambda=self.srste_lambda,
            codebook_quant_start=self.codebook_quant_start_iter,
            calib=TrainCalibration(runner, model, self.calib_batches)
            if self.calib_batches else None,
            forward_fn=batch_forward, distill=distill, bn_recalib=self.bn_recalib,
            seed=self.seed if self.seed is not None else model.mvq_config.seed,
            backend=self.backend, rank=rank, world_size=world, broadcast=broadcast,
            on_event=lambda event: self._on_event(runner, event),
            progress=self._progress(runner))
        self.schedule.start()
        if self.schedule.distiller is not None:
            self._distill_handle = attach_distillation(model, self.schedule)
            runner.logger.info(f'MVQHook: self-distillation from the dense model ({distill}); '
                               'the teacher adds '
                               f'{self.schedule.teacher_bytes / 2**20:.1f} MiB')
        self.schedule.step(runner.iter)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        self.schedule.step(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Any = None) -> None:
        if runner.iter + 1 >= runner.max_iters and not pending_layers(unwrap(runner.model)):
            self.schedule.finish(runner.iter + 1)
            unwrap(runner.model).train()  # the loop's own mode until it ends

    def before_test(self, runner) -> None:
        pending = pending_layers(unwrap(runner.model))
        if pending:
            raise RuntimeError(
                f'MVQHook: {len(pending)} MVQ layer(s) are not clustered (e.g. {pending[:3]}): '
                'test a checkpoint written by an MVQ run or a .mvq artifact, not a dense one')

    def _on_event(self, runner, event: ScheduleEvent) -> None:
        if event.name == 'sparse_end':
            pending = pending_layers(unwrap(runner.model))
            rank, world = get_dist_info()
            mine = len(pending[rank::world])
            runner.logger.info(f'MVQHook: clustering {len(pending)} layers'
                               + (f' ({mine} on rank {rank} of {world})' if world > 1 else ''))
        elif event.name == 'pruned':
            runner.logger.info(f'MVQHook: N:M-pruned {len(event.layers)} layers before '
                               f'iteration {event.iteration}; sparse fine-tuning until '
                               f'iteration {self.sparse_finetune_iters}')
        elif event.name == 'codebook_quant':
            runner.logger.info(f'MVQHook: int8 codebook fake-quantization on from iteration '
                               f'{event.iteration}')
        elif event.name == 'clustered':
            self.layer_errors = dict(self.schedule.layer_errors)
            self._log(runner)
        elif event.name == 'bn_recalibrated':
            runner.logger.info('MVQHook: BN statistics re-estimated on '
                               f'{self.calib_batches} calibration batches')

    @staticmethod
    def _progress(runner):
        """Clustering progress with an ETA: k-means time grows with the sub-vector count (same
        k and iterations per layer), so the elapsed time per sub-vector predicts the rest."""
        state: dict[str, Any] = {}

        def progress(i: int, total: int, name: str) -> None:
            model = unwrap(runner.model)
            if i == 0 and name:
                state['start'] = time.perf_counter()
                state['sizes'] = []
            elapsed = time.perf_counter() - state.get('start', time.perf_counter())
            if not name:
                runner.logger.info(f'MVQHook: clustered {total} layers in {elapsed:.1f} s')
                return
            size = quantized_layers(model)[name].assignments.numel()
            done = sum(state['sizes'])
            state['sizes'].append(size)
            rate = f'{elapsed / done * 1e6:.0f} s per million sub-vectors' if done else '-'
            runner.logger.info(f'MVQHook: clustering [{i + 1}/{total}] {name} '
                               f'({size:,} sub-vectors; {elapsed:.0f} s elapsed, {rate})')
        return progress

    # -- observing ------------------------------------------------------------------------
    def _log(self, runner) -> None:
        stats = compression_stats(unwrap(runner.model))
        scalars = {'mvq/compression_ratio': stats.compression_ratio, 'mvq/bits': stats.bits,
                   'mvq/mean_rel_error': (sum(self.layer_errors.values())
                                          / max(len(self.layer_errors), 1))}
        for name, err in self.layer_errors.items():
            scalars[f'mvq/rel_error/{name}'] = err
        # Every figure goes to the visualizer backends now; the headline ones also join the
        # train log lines.
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        for key in ('mvq/compression_ratio', 'mvq/bits', 'mvq/mean_rel_error'):
            runner.message_hub.update_scalar(f'train/{key}', scalars[key])
        runner.logger.info(f'MVQHook: compression ratio {stats.compression_ratio:.2f}x, '
                           f'{stats.bits / 8 / 2**20:.3f} MiB, mean relative error '
                           f'{scalars["mvq/mean_rel_error"]:.4f}')

    # -- persisting -----------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['mvq'] = dict(codebook_quant=self.codebook_quant,
                                 layer_errors=self.layer_errors)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('mvq', {})
        self.layer_errors = dict(state.get('layer_errors', {}))
        if state.get('codebook_quant', state.get('quantize')):  # 'quantize': older runs
            # mmengine calls this before the state dict reaches the model: the switch is
            # set now and takes effect once the loaded (clustered) stage is in place.
            set_codebook_quant(unwrap(runner.model), True)

    def after_train(self, runner) -> None:
        if self._distill_handle is not None:
            self._distill_handle.remove()
            self._distill_handle = None
        if self.schedule is not None:
            self.schedule.close()
        if not is_main_process():
            return
        model = unwrap(runner.model)
        if pending_layers(model):
            runner.logger.warning('MVQHook: training ended before clustering; no artifact')
            return
        stats = compression_stats(model)
        record: dict[str, Any] = dict(iteration=runner.iter, compression=stats.to_dict(),
                                      plan=getattr(model, 'mvq_plan', None).records()
                                      if getattr(model, 'mvq_plan', None) else None,
                                      layer_errors=self.layer_errors,
                                      codebook_quant=self.codebook_quant,
                                      events=[(e.name, e.iteration) for e in
                                              (self.schedule.events if self.schedule else [])])
        if self.artifact:
            from ...io import save
            path = osp.join(runner.work_dir, self.artifact)
            info = save(model, path)
            record['artifact'] = dict(path=self.artifact, bytes=int(info.total_bytes),
                                      codebook_rounding=info.codebook_rounding)
            runner.logger.info(f'MVQHook: wrote {path} ({info.total_bytes:,d} bytes; accounted '
                               f'{stats.bits / 8:,.0f} bytes)')
        with open(osp.join(runner.work_dir, f'{self.report_name}.json'), 'w') as f:
            json.dump(record, f, indent=2, default=str)
        with open(osp.join(runner.work_dir, f'{self.report_name}.md'), 'w') as f:
            f.write(_markdown(record))


def _markdown(record: dict) -> str:
    comp = record['compression']
    lines = ['# MVQ report', '', f'- iteration: {record["iteration"]}',
             f'- compression ratio (vs fp32): {comp.get("compression_ratio", 0):.2f}x',
             f'- accounted bits: {comp.get("bits", 0):,d}']
    if 'artifact' in record:
        art = record['artifact']
        lines.append(f'- artifact: `{art["path"]}`, {art["bytes"]:,d} bytes')
        rounding = art.get('codebook_rounding') or {}
        lines.append('- the artifact stores exactly what the model computes' if not rounding
                     else f'- codebooks rounded on save in {len(rounding)} layer(s) trained '
                     f'without codebook quantization (largest error '
                     f'{max(rounding.values()):.3g}): the loaded model differs slightly')
    lines += ['', '| layer | relative error |', '|---|---:|']
    lines += [f'| {n} | {e:.4f} |' for n, e in record['layer_errors'].items()]
    return '\n'.join(lines) + '\n'
