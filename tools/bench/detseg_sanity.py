"""Detection and segmentation sanity: dense, then MVQ, on the real-pixel canvas sets.

Mask R-CNN R50-FPN (mmdet) and DeepLabV3 R50-D8 (mmseg) are trained briefly from their own
init on ``data/canvas_coco`` / ``data/canvas_seg`` (Fashion-MNIST items pasted on 128x128
canvases, exact boxes and masks; ``tools/make_canvas_data.py``), then MVQ-compressed (2:8,
k=256, d=8, int8 codebooks; prediction layers dense) from that checkpoint and fine-tuned.
Reports bbox/segm mAP and mIoU before (dense) and after (MVQ), with the CPU budget.

    python tools/bench/detseg_sanity.py [--dense-iters 150] [--mvq-iters 60]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from common import REPO, train_mm, write_report  # same folder (tools/bench/common.py)

from mvq_plugin.integrations.mm.scalars import read_scalars
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops, require_mmcv_ops

CASES = {
    'mask_rcnn': ('configs/demo/mask-rcnn_r50_fpn_canvas_dense.py',
                  'configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py',
                  ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')),
    'deeplabv3': ('configs/demo/deeplabv3_r50-d8_canvas_dense.py',
                  'configs/demo/deeplabv3_r50-d8_canvas_mvq.py', ('mIoU', 'aAcc')),
}


def _metrics(work: Path, keys: tuple[str, ...]) -> dict[str, float]:
    last: dict[str, float] = {}
    for record in read_scalars(work):
        last.update({k: float(record[k]) for k in keys if k in record})
    return last


@exit_on_missing_ops
def main(argv=None) -> dict:
    require_mmcv_ops('tools/bench/detseg_sanity.py (Mask R-CNN, DeepLabV3)')
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dense-iters', type=int, default=150)
    p.add_argument('--mvq-iters', type=int, default=60)
    p.add_argument('--cases', nargs='+', default=list(CASES))
    p.add_argument('--work-dir', default='work_dirs/detseg_sanity')
    p.add_argument('--out', default='work_dirs/bench/detseg_sanity',
                   help='report stem (docs/results/detseg_sanity updates the committed one)')
    args = p.parse_args(argv)
    if not (REPO / 'data' / 'canvas_coco').is_dir() or not (REPO / 'data' / 'canvas_seg').is_dir():
        subprocess.run([sys.executable, str(REPO / 'tools' / 'make_canvas_data.py')], cwd=REPO,
                       check=True)
    work = Path(args.work_dir)
    results = {}
    for name in args.cases:
        dense_cfg, mvq_cfg, keys = CASES[name]
        d_iters, m_iters = args.dense_iters, args.mvq_iters
        t_dense = train_mm(dense_cfg, work / f'{name}_dense', [
            f'train_cfg.max_iters={d_iters}', f'train_cfg.val_interval={d_iters}',
            f'default_hooks.checkpoint.interval={d_iters}', f'param_scheduler.1.end={d_iters}'
            if name == 'mask_rcnn' else f'param_scheduler.0.end={d_iters}'])
        t_mvq = train_mm(mvq_cfg, work / f'{name}_mvq', [
            f'load_from={work / f"{name}_dense" / f"iter_{d_iters}.pth"}',
            f'train_cfg.max_iters={m_iters}', f'train_cfg.val_interval={m_iters}',
            f'default_hooks.checkpoint.interval={m_iters}', f'param_scheduler.0.end={m_iters}'])
        report = json.loads((work / f'{name}_mvq' / 'mvq_report.json').read_text())
        results[name] = dict(
            dense=_metrics(work / f'{name}_dense', keys), mvq=_metrics(work / f'{name}_mvq', keys),
            compression_ratio=report['compression']['compression_ratio'],
            artifact_bytes=report['artifact']['bytes'], dense_iters=d_iters, mvq_iters=m_iters,
            seconds=dict(dense=round(t_dense), mvq=round(t_mvq)))
        print(name, json.dumps(results[name]), flush=True)
    lines = ['# Detection and segmentation sanity (canvas sets, CPU)', '',
             f'`python tools/bench/detseg_sanity.py --cases {" ".join(args.cases)} '
             f'--dense-iters {args.dense_iters} --mvq-iters {args.mvq_iters} --out {args.out}`',
             '', 'Both models start from their own random init (no ImageNet backbone: nothing '
             'downloads), so the dense numbers are those of a barely trained model; the runs '
             'show the pipeline end to end, not accuracy. Wall times are on 2 CPU cores shared '
             'with other jobs.', '',
             '| model | metric | dense | MVQ (2:8, k=256, int8) | ratio '
             '| wall time (dense / MVQ) |',
             '|---|---|---:|---:|---:|---|']
    for name, r in results.items():
        for key in CASES[name][2]:
            lines.append(f'| {name} | {key} | {r["dense"].get(key, float("nan")):.3f} | '
                         f'{r["mvq"].get(key, float("nan")):.3f} | '
                         f'{r["compression_ratio"]:.1f}x | {r["seconds"]["dense"]} s / '
                         f'{r["seconds"]["mvq"]} s |')
    write_report(args.out, results, '\n'.join(lines) + '\n')
    return results


if __name__ == '__main__':
    main()
