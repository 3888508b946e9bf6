"""``MVQHook``: schedules MVQ's phases, logs its figures, persists its state.

The model arrives prepared by ``mvq_plugin.MVQModel`` (codebooks exist, every MVQ layer still
computes its dense weight). The hook then, like mmengine's ``EMAHook``, only schedules,
observes and persists:

1. ``before_train`` (after ``load_from``/resume): if layers are not clustered yet, checks that
   dense weights were loaded into every one of them, makes the dense model the teacher when
   ``distill`` is set (its terms join the model's losses; the teacher is never saved), then
   N:M-prunes (when a sparse fine-tuning phase is configured) or clusters right away, with
   calibration statistics from ``calibration_batches`` train batches where the data-aware
   settings read them (the recipe of docs/design.md section 2, items 10-12);
2. ``before_train_iter``: clusters when the sparse phase ends; switches int8 codebook
   fake-quantization on from ``codebook_quant_start_iter``;
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

import dataclasses
import json
import os.path as osp
import time
from typing import Any

import torch
from mmengine.dist import broadcast, get_dist_info, is_main_process
from mmengine.hooks import Hook

from ...core import (
    STAGE_DENSE,
    cluster_prepared,
    compression_stats,
    layer_stages,
    pending_layers,
    prune_prepared,
    quantized_layers,
    set_codebook_quant,
)
from ...core.calibration import NO_CALIBRATION, collect_input_stats
from ...core.distill import DistillConfig
from ...core.search import BACKENDS
from .model import DENSE_SOURCE_ATTR, dense_loaded_layers
from .recipe import (
    batch_forward,
    calibration_inputs,
    default_logits_module,
    install_distillation,
    remove_distillation,
)
from .registry import HOOKS
from .tracing import unwrap

__all__ = ['MVQHook']


@HOOKS.register_module()
class MVQHook(Hook):
    """Runs MVQ pruning, clustering and codebook quantization inside an mmengine run.

    Args:
        sparse_finetune_iters: Iterations of N:M-sparse fine-tuning of the dense weights
            before clustering (needs ``model.sparse_finetune=True``); 0 clusters at once.
        codebook_quant_start_iter: Iteration from which codebooks are int8 fake-quantized (``None``:
            never during training; the artifact still stores int8 when configured).
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
        calibration_batches: Train batches whose per-input-channel statistics feed the
            data-aware settings (``importance='activation'``, ``kmeans_weights='activation'``).
        quant_start_iter: Deprecated name of ``codebook_quant_start_iter``.
    """

    priority = 'ABOVE_NORMAL'  # cluster before other hooks look at the weights

    def __init__(self, sparse_finetune_iters: int = 0, codebook_quant_start_iter: int | None = None,
                 seed: int | None = None, backend: str = 'auto',
                 allow_random_init: bool = False, artifact: str | None = 'model.mvq',
                 report: str = 'mvq_report', distill: dict | bool | None = None,
                 calibration_batches: int = 0, quant_start_iter: int | None = None) -> None:
        if quant_start_iter is not None:  # the deprecated name
            if codebook_quant_start_iter is not None:
                raise ValueError('MVQHook: give codebook_quant_start_iter only (quant_start_iter '
                                 'is its deprecated name)')
            codebook_quant_start_iter = quant_start_iter
        if not isinstance(sparse_finetune_iters, int) or sparse_finetune_iters < 0:
            raise ValueError(f'MVQHook.sparse_finetune_iters={sparse_finetune_iters!r} must be '
                             'an integer >= 0')
        start = codebook_quant_start_iter
        if start is not None and (not isinstance(start, int) or start < 0):
            raise ValueError(f'MVQHook.codebook_quant_start_iter={start!r} must be None or an '
                             'integer >= 0')
        if backend not in BACKENDS:
            raise ValueError(f'MVQHook.backend={backend!r}; choose one of {list(BACKENDS)}')
        if isinstance(calibration_batches, bool) or not isinstance(calibration_batches, int) \
                or calibration_batches < 0:
            raise ValueError(f'MVQHook.calibration_batches={calibration_batches!r} must be an '
                             'integer >= 0')
        self.distill = DistillConfig.from_value(distill)
        self.calibration_batches = calibration_batches
        self.distiller = None
        self.sparse_finetune_iters = sparse_finetune_iters
        self.codebook_quant_start_iter = codebook_quant_start_iter
        self.seed = seed
        self.backend = backend
        self.allow_random_init = allow_random_init
        self.artifact = artifact
        self.report_name = report
        self.layer_errors: dict[str, float] = {}
        self.codebook_quant = False

    # -- checks ---------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = unwrap(runner.model)
        if not quantized_layers(model):
            raise RuntimeError('MVQHook: the model has no MVQ layers; build it with '
                               "model=dict(type='mvq_plugin.MVQModel', model=..., mvq=...)")
        load_from = runner.cfg.get('load_from')
        if load_from and not osp.isfile(load_from):
            raise FileNotFoundError(f'load_from={load_from!r}: checkpoint file not found')
        if load_from or runner.cfg.get('resume'):
            # before_run precedes the runner's weight initialisation: the upstream
            # Pretrained init (a download) would only be overwritten by this checkpoint.
            setattr(model, DENSE_SOURCE_ATTR, f'load_from={load_from}' if load_from
                    else 'resume')
        trainable = [model.get_submodule(name).parametrizations.weight.original.requires_grad
                     for name in quantized_layers(model)]
        max_iters = getattr(runner, 'max_iters', None)
        if self.sparse_finetune_iters and pending_layers(model) and max_iters is not None \
                and self.sparse_finetune_iters >= max_iters:
            raise ValueError(f'MVQHook.sparse_finetune_iters={self.sparse_finetune_iters} is '
                             f'not shorter than the run (max_iters={max_iters}): the codebooks '
                             'would never train; allowed: 0 <= sparse_finetune_iters < max_iters')
        if self.sparse_finetune_iters and pending_layers(model) and not all(trainable):
            raise ValueError('MVQHook.sparse_finetune_iters > 0 needs the dense weights to be '
                             'trainable: set model.sparse_finetune=True')
        needs = [lp.name for lp in getattr(model, 'mvq_plan', None) or []
                 if lp.will_compress and lp.config.needs_calibration]
        if needs and pending_layers(model) and not self.calibration_batches:
            raise ValueError(f'MVQHook: layers {needs[:3]} use data-aware settings (importance='
                             f"'activation' or kmeans_weights='activation') and "
                             f'{NO_CALIBRATION}: set MVQHook.calibration_batches >= 1')
        wrapper = runner.cfg.get('model_wrapper_cfg') or {}
        unused_ok = wrapper.get('find_unused_parameters', runner.cfg.get(
            'find_unused_parameters', False))
        if self.sparse_finetune_iters and get_dist_info()[1] > 1 and not unused_ok:
            # The codewords get no gradient before clustering, the dense weights none after.
            raise ValueError('MVQHook.sparse_finetune_iters > 0 under DDP needs '
                             'find_unused_parameters=True (top-level config key or '
                             'model_wrapper_cfg.find_unused_parameters)')

    # -- phases ---------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        pending = pending_layers(model)
        if not pending:
            runner.logger.info('MVQHook: model already clustered (resumed or loaded); '
                               'not clustering again')
            self._apply_quant(runner)
            self._start_distillation(runner)
            return
        unloaded = [n for n, ok in dense_loaded_layers(model).items() if not ok and n in pending]
        if unloaded and not self.allow_random_init:
            raise RuntimeError(
                f'MVQHook: no dense weights were loaded for {len(unloaded)} MVQ layer(s), e.g. '
                f'{unloaded[:3]}; set load_from to the dense checkpoint or '
                'model.init_checkpoint (clustering random weights is never useful)')
        self._start_distillation(runner)
        stages = layer_stages(model)
        if self.sparse_finetune_iters and runner.iter < self.sparse_finetune_iters:
            dense = [n for n in pending if stages[n] == STAGE_DENSE]
            prune_prepared(model, dense, input_stats=self._stats(runner, [
                n for n in dense if _reads_stats(model, n, pruning=True)]))
            runner.logger.info(f'MVQHook: N:M-pruned {len(dense)} layers; sparse fine-tuning '
                               f'until iteration {self.sparse_finetune_iters}')
        else:
            self._cluster(runner)
        self._apply_quant(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        model = unwrap(runner.model)
        if (self.sparse_finetune_iters and runner.iter >= self.sparse_finetune_iters
                and pending_layers(model)):
            self._cluster(runner)
        self._apply_quant(runner)

    def before_test(self, runner) -> None:
        pending = pending_layers(unwrap(runner.model))
        if pending:
            raise RuntimeError(
                f'MVQHook: {len(pending)} MVQ layer(s) are not clustered (e.g. {pending[:3]}): '
                'test a checkpoint written by an MVQ run or a .mvq artifact, not a dense one')

    def _apply_quant(self, runner) -> None:
        # Called every iteration: only a flag check once quantization is on (a resumed run
        # switched it on in after_load_checkpoint).
        if (self.codebook_quant or self.codebook_quant_start_iter is None
                or runner.iter < self.codebook_quant_start_iter):
            return
        set_codebook_quant(unwrap(runner.model), True)
        runner.logger.info(f'MVQHook: int8 codebook fake-quantization on from iteration '
                           f'{runner.iter}')
        self.codebook_quant = True

    def _cluster(self, runner) -> None:
        model = unwrap(runner.model)
        pending = pending_layers(model)
        rank, world = get_dist_info()
        mine = [n for i, n in enumerate(pending) if i % world == rank]
        seed = self.seed if self.seed is not None else model.mvq_config.seed
        runner.logger.info(f'MVQHook: clustering {len(pending)} layers'
                           + (f' ({len(mine)} on rank {rank} of {world})' if world > 1 else ''))

        # k-means time grows with the sub-vector count (same k and iterations per layer),
        # so the elapsed time per sub-vector so far predicts the rest.
        layers = quantized_layers(model)
        sizes = [layers[n].assignments.numel() for n in mine]
        total_size, start = sum(sizes), time.perf_counter()

        def progress(i: int, total: int, name: str) -> None:
            elapsed, done = time.perf_counter() - start, sum(sizes[:i])
            if not name:
                runner.logger.info(f'MVQHook: clustered {total} layers in {elapsed:.1f} s')
                return
            eta = f'ETA {elapsed * (total_size - done) / done:.0f} s' if done else 'ETA -'
            runner.logger.info(f'MVQHook: clustering [{i + 1}/{total}] {name} '
                               f'({sizes[i]:,} sub-vectors; {elapsed:.0f} s elapsed, {eta})')

        report = cluster_prepared(model, mine, seed=seed, backend=self.backend,
                                  progress=progress, input_stats=self._stats(runner, [
                                      n for n in mine if _reads_stats(model, n)]))
        errors = {r.name: r.relative_error for r in report.layers}
        if world > 1:
            errors = self._broadcast(model, pending, world)
        self.layer_errors = errors
        self._log(runner)

    def _stats(self, runner, names: list[str]) -> dict[str, torch.Tensor]:
        """Calibration statistics of the named layers (none: no forward pass)."""
        if not names:
            return {}
        model = unwrap(runner.model)
        inputs = calibration_inputs(runner, model, self.calibration_batches)
        runner.logger.info(f'MVQHook: calibration statistics of {len(names)} layers from '
                           f'{len(inputs)} train batches')
        return collect_input_stats(model, names, inputs, batch_forward)

    def _start_distillation(self, runner) -> None:
        if self.distill is None or self.distiller is not None:
            return
        model = unwrap(runner.model)
        cfg = self.distill
        if cfg.logits_module is None and cfg.logits_weight:
            cfg = dataclasses.replace(cfg, logits_module=default_logits_module(model))
        self.distiller = install_distillation(model, cfg)
        runner.logger.info(f'MVQHook: self-distillation from the dense model ({cfg}); the '
                           f'teacher adds {self.distiller.teacher_bytes / 2**20:.1f} MiB')

    @staticmethod
    def _broadcast(model: torch.nn.Module, names: list[str], world: int) -> dict[str, float]:
        layers = quantized_layers(model)
        errors = {}
        for i, name in enumerate(names):
            q, src = layers[name], i % world
            with torch.no_grad():
                for tensor in (q.codebook.data, q.assignments, q.stage):
                    broadcast(tensor, src)
                mask = q.mask.to(torch.uint8)
                broadcast(mask, src)
                q.mask.copy_(mask.bool())
                w = model.get_submodule(name).parametrizations.weight.original
                w_hat = model.get_submodule(name).weight
                errors[name] = float((w - w_hat).norm() / w.norm().clamp_min(1e-12))
        return errors

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
        checkpoint['mvq'] = dict(codebook_quant=self.codebook_quant, layer_errors=self.layer_errors)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('mvq', {})
        self.layer_errors = dict(state.get('layer_errors', {}))
        if state.get('codebook_quant', state.get('quantize')):  # 'quantize': older runs
            # mmengine calls this before the state dict reaches the model: the flag is set
            # now and takes effect once the loaded (clustered) stage is in place.
            self.codebook_quant = True
            set_codebook_quant(unwrap(runner.model), True)

    def after_train(self, runner) -> None:
        remove_distillation(unwrap(runner.model), self.distiller)
        self.distiller = None
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
                                      codebook_quant=self.codebook_quant)
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


def _reads_stats(model: torch.nn.Module, name: str, pruning: bool = False) -> bool:
    """Whether pruning (or clustering, which also prunes a layer still dense) of the layer
    reads calibration statistics."""
    q = quantized_layers(model)[name]
    lcfg = q.layer_config
    if pruning:
        return lcfg.mask_reads_stats
    return lcfg.kmeans_reads_stats or (lcfg.mask_reads_stats and int(q.stage) == STAGE_DENSE)


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
