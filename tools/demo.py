"""The main job on the embedded default: MVQ through the OpenMMLab pipeline, end to end.

1. Trains mmpretrain's ResNet-18 densely on the real Fashion-MNIST with ``tools/train.py``
   (``configs/demo/resnet18_fashion-mnist_dense.py``, at half width by default so the whole
   demo fits 10 minutes on 2 AVX2 cores; ``--width 64`` is the standard ResNet-18), or reuses
   the checkpoint a previous run left;
2. fine-tunes it with the paper's MVQ (``configs/demo/resnet18_fashion-mnist_mvq.py``,
   ``load_from`` = the dense checkpoint): sub-vectors of d=16 output channels, 4:16 pruning,
   half the budget of SR-STE sparse training, masked k-means (k=256) with per-layer progress,
   codebook fine-tuning with int8 codebooks (LSQ scale), self-distillation from the dense
   model throughout, activation statistics from 8 batches
   (``--sparse-iters 0 --no-distill --no-data-aware`` is the one-shot flow), test;
3. the work dir then holds the ``.mvq`` artifact, the MVQ report, the hardware reports and
   plots; a short summary is printed and written to ``summary.json``.

    python tools/demo.py [--work-dir work_dirs/demo] [--width 32] [--dense-iters 800]
                         [--mvq-iters 250] [--sparse-iters 125] [--[no-]distill]
                         [--[no-]data-aware]

Every long phase logs its progress with an ETA: mmengine's iteration log lines (dense
training, fine-tuning) and one line per clustered layer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
from _launch import run_train  # noqa: E402  (tools/_launch.py)

from mvq_plugin.core.config import nm_pattern  # noqa: E402
from mvq_plugin.integrations.mm.scalars import last_scalar  # noqa: E402
from mvq_plugin.machine import describe_machine  # noqa: E402

DENSE_CFG = 'configs/demo/resnet18_fashion-mnist_dense.py'
MVQ_CFG = 'configs/demo/resnet18_fashion-mnist_mvq.py'
#: The MVQ recipe the demo runs by default (docs/results/mvq_recipe.md decides it).
RECIPE = dict(sparse_iters=125, distill=True, data_aware=True)


#: The dense config's warm-up (its LinearLR ends at this iteration).
DENSE_WARMUP = 50


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every value checked before anything runs (one line naming the value and the range)."""
    if args.width < 8 or args.width % 8:
        parser.error(f'--width {args.width}: must be a multiple of 8 (>= 8)')
    if args.dense_iters <= DENSE_WARMUP:
        parser.error(f'--dense-iters {args.dense_iters}: must be > {DENSE_WARMUP} (the dense '
                     'config warms the learning rate up for 50 iterations)')
    if args.mvq_iters < 1:
        parser.error(f'--mvq-iters {args.mvq_iters}: must be >= 1')
    if not 0 <= args.sparse_iters < args.mvq_iters:
        parser.error(f'--sparse-iters {args.sparse_iters}: must be in [0, --mvq-iters='
                     f'{args.mvq_iters}) (the codebooks need iterations of their own)')
    if args.k < 2 or args.d < 1 or args.d % args.nm[1]:
        parser.error(f'--k {args.k} / --d {args.d} / --nm {args.nm[0]}:{args.nm[1]}: k >= 2, '
                     'and M must divide d')


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--width', type=int, default=32,
                   help='ResNet-18 base width (64: the standard model, 4x the compute)')
    p.add_argument('--dense-iters', type=int, default=800,
                   help='dense training iterations (batch 128; 469 = one epoch)')
    p.add_argument('--mvq-iters', type=int, default=250,
                   help='MVQ fine-tuning iterations in all (sparse phase + codebook phase)')
    p.add_argument('--sparse-iters', type=int, default=RECIPE['sparse_iters'],
                   help='of --mvq-iters, N:M-sparse fine-tuning before clustering (0: one-shot)')
    p.add_argument('--distill', action=argparse.BooleanOptionalAction,
                   default=RECIPE['distill'], help='self-distillation from the dense model')
    p.add_argument('--data-aware', action=argparse.BooleanOptionalAction,
                   default=RECIPE['data_aware'],
                   help='activation importance and activation-weighted k-means (8 batches)')
    p.add_argument('--k', type=int, default=256)
    p.add_argument('--d', type=int, default=16, help='sub-vector length (output channels)')
    p.add_argument('--nm', type=nm_pattern, default='4:16')
    args = p.parse_args(argv)
    check_args(p, args)
    start = time.perf_counter()
    work = Path(args.work_dir).resolve()
    n, m = args.nm

    # On 2 cores, loading batches in the training process beats two competing workers.
    loaders = [f'{split}_dataloader.num_workers=0' for split in ('train', 'val', 'test')]
    arch = {'backbone.base_channels': args.width, 'backbone.stem_channels': args.width,
            'head.in_channels': 8 * args.width}

    def model_options(prefix: str) -> list[str]:  # the MVQ config wraps the model: model.model
        return [f'{prefix}.{k}={v}' for k, v in arch.items()] + loaders

    dense_dir = work / f'dense_w{args.width}_{args.dense_iters}'
    dense_ckpt = dense_dir / f'iter_{args.dense_iters}.pth'
    t_dense = 0.0
    if dense_ckpt.is_file():
        print(f'reusing the dense checkpoint {dense_ckpt}', flush=True)
    else:
        t_dense = run_train(DENSE_CFG, dense_dir, [
            *model_options('model'), f'train_cfg.max_iters={args.dense_iters}',
            f'train_cfg.val_interval={args.dense_iters}',
            f'default_hooks.checkpoint.interval={args.dense_iters}',
            f'param_scheduler.1.end={args.dense_iters}'])
    mvq_dir = work / 'mvq'
    recipe = [f'custom_hooks.0.sparse_finetune_iters={args.sparse_iters}',
              f'model.sparse_finetune={args.sparse_iters > 0}']
    if args.distill:
        recipe += ['custom_hooks.0.distill.logits_module=head.fc']
    if args.data_aware:
        recipe += ['model.mvq.importance=activation', 'model.mvq.kmeans_weights=activation',
                   'custom_hooks.0.calib_batches=8']
    t_mvq = run_train(MVQ_CFG, mvq_dir, [*recipe,
        *model_options('model.model'),
        f'load_from={dense_ckpt}', f'train_cfg.max_iters={args.mvq_iters}',
        f'train_cfg.val_interval={args.mvq_iters}',
        f'default_hooks.checkpoint.interval={args.mvq_iters}',
        f'param_scheduler.0.end={args.mvq_iters}', f'model.mvq.num_codewords={args.k}',
        f'model.mvq.block_size={args.d}', f'model.mvq.n={n}', f'model.mvq.m={m}'])

    report = json.loads((mvq_dir / 'mvq_report.json').read_text())
    comp = report['compression']
    hw = json.loads((mvq_dir / 'hw' / f'val_{args.mvq_iters}' / 'hw_report.json').read_text())
    gains = hw['gains']
    summary = dict(
        command=' '.join(['python', 'tools/demo.py', *(sys.argv[1:] if argv is None else argv)]),
        machine=describe_machine(),
        dense_top1=last_scalar(dense_dir, 'accuracy/top1'),
        mvq_top1=last_scalar(mvq_dir, 'accuracy/top1'),
        compression_ratio=comp['compression_ratio'], accounted_bytes=comp['bits'] / 8,
        dense_bytes_fp32=4 * comp['params_total'], artifact=os.path.relpath(mvq_dir / 'model.mvq'),
        artifact_bytes=report['artifact']['bytes'], hw_cycles=hw['totals']['cycles'],
        hw_energy_uj=hw['totals']['energy_uj'], ews_cycles=hw['baseline']['totals']['cycles'],
        ews_energy_uj=hw['baseline']['totals']['energy_uj'],
        energy_efficiency=gains['total']['energy_efficiency'],
        energy_efficiency_sparsity_only=gains['sparsity_only']['energy_efficiency'],
        energy_efficiency_vq_only=gains['vq_only']['energy_efficiency'],
        speedup=gains['total']['speedup'], width=args.width, dense_iters=args.dense_iters,
        mvq_iters=args.mvq_iters, sparse_iters=args.sparse_iters, distill=args.distill,
        data_aware=args.data_aware,
        seconds=dict(dense=t_dense, mvq=t_mvq, total=time.perf_counter() - start))
    (work / 'summary.json').write_text(json.dumps(summary, indent=2))
    lines = [
        '', f'=== MVQ demo: mmpretrain ResNet-18 (width {args.width}) on Fashion-MNIST '
        '(real 60k/10k) ===',
        f'dense top-1          : {summary["dense_top1"]:.2f}%  ({args.dense_iters} iterations '
        'at batch 128)',
        f'MVQ top-1            : {summary["mvq_top1"]:.2f}%  (N:M={n}:{m}, k={args.k}, '
        f'd={args.d} output channels, int8 codebooks, {args.mvq_iters} fine-tuning '
        f'iterations: {args.sparse_iters} sparse '
        f'+ {args.mvq_iters - args.sparse_iters} codebook'
        + (', self-distillation' if args.distill else '')
        + (', data-aware' if args.data_aware else '') + ')',
        f'compression ratio    : {summary["compression_ratio"]:.1f}x  '
        f'({summary["dense_bytes_fp32"]:,} B fp32 -> {summary["accounted_bytes"]:,.0f} B '
        'accounted)',
        f'artifact             : {summary["artifact_bytes"]:,} B  {summary["artifact"]}',
        f'accelerator (1x28x28): {summary["hw_cycles"]:,.0f} cycles, '
        f'{summary["hw_energy_uj"]:.2f} uJ vs EWS {summary["ews_cycles"]:,.0f} cycles, '
        f'{summary["ews_energy_uj"]:.2f} uJ',
        f'energy efficiency    : {summary["energy_efficiency"]:.2f}x vs EWS (sparsity only '
        f'{summary["energy_efficiency_sparsity_only"]:.2f}x, VQ only '
        f'{summary["energy_efficiency_vq_only"]:.2f}x); speed {summary["speedup"]:.2f}x',
        f'time                 : dense {t_dense:.0f} s, MVQ {t_mvq:.0f} s, demo in all '
        f'{summary["seconds"]["total"]:.0f} s' + ('  (dense checkpoint reused)' if not t_dense
                                                  else ''),
        f'work dir             : {os.path.relpath(work)}  (reports: mvq/mvq_report.md, '
        'mvq/hw/)',
    ]
    print('\n'.join(lines), flush=True)
    return summary


if __name__ == '__main__':
    main()
