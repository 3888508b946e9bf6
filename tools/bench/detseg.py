"""Detection and segmentation that learn: the paper's Table 6 in form, on the hard canvas sets.

Two upstream models, narrowed only where the CPU budget demands it (each change is stated in
its config): Mask R-CNN with a ResNet-18 FPN backbone (``configs/demo/mask-rcnn_r18_fpn_
canvas-hard_*.py``) and DeepLab-V3 with a MobileNetV2 backbone (``configs/demo/deeplabv3_
mobilenet-v2-d8_canvas-hard_*.py``), on ``data/canvas_{coco,seg}_hard`` (real Fashion-MNIST
items placed freely with occlusion, 16-72 px, distractor shapes; ``tools/make_canvas_data.py
--hard``). Everything runs through the real ``tools/train.py``:

1. **dense**: trained from random init for the config's iterations, validated every 1000
   (the curve shows whether it plateaued); resumable from its last checkpoint.
2. per seed, from the dense checkpoint, each with the same fine-tuning budget (``--budget``):

   * ``dense control``: the dense model trained on for the budget (what extra training buys);
   * ``vq``: plain k-means in the paper's layout, (d, k) matched to MVQ's accounted bits, the
     whole budget as codebook fine-tuning, with the same distillation;
   * ``mvq``: the paper's recipe: fixed-mask (ASP) sparse training for half the budget, masked
     k-means, codebook fine-tuning with feature distillation (the detector's neck, the
     segmenter's backbone outputs), int8 LSQ codebooks.

Each row keeps its work dir (checkpoint, logs, ``mvq_report.json``, the hardware report of
the 64x64 EWS-CMS array against EWS) and a ``row.json``; a rerun skips finished rows, those
with a ``row.json`` and those already in the report under ``--out`` at the same budget (the
committed report carries them into a fresh checkout), so the benchmark can span several
sessions. The dense model is retrained only while rows that need its checkpoint remain.
Reports box/mask AP or mIoU, the accounted compression ratio, effective MACs and the hardware
estimate per row, beside the paper's Table 6 (for shape only: COCO and VOC, other models).

``--jobs 2`` trains two rows at once, the cores shared among them: mmcv's CPU RoIAlign and
NMS run on one core, so on 2 cores two Mask R-CNN rows at once finish sooner than one after
the other (each row's wall time is then under that load, and the report says so).

    python tools/bench/detseg.py [--cases mask_rcnn deeplabv3] [--seeds 0 1] [--budget 400]
        [--jobs 2] [--work-dir work_dirs/detseg] [--out DIR]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from common import REPO, describe_machine, train_mm, write_report  # same folder
from matching import Setting, accounted_bits, closest_setting  # same folder

from mvq_plugin.core.presets import PRESETS
from mvq_plugin.integrations.mm.scalars import read_scalars
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops, require_mmcv_ops

#: The paper's Table 6 (COCO / VOC; for shape only).
PAPER = {
    'mask_rcnn': dict(dense=dict(bbox=37.9, segm=34.6), mvq=dict(bbox=36.8, segm=33.8),
                      ratio=26, sparsity=75),
    'deeplabv3': dict(dense=dict(mIoU=72.9), mvq=dict(mIoU=66.5), ratio=19, sparsity=50),
}

CASES: dict[str, dict[str, Any]] = {
    'mask_rcnn': dict(
        dense='configs/demo/mask-rcnn_r18_fpn_canvas-hard_dense.py',
        mvq='configs/demo/mask-rcnn_r18_fpn_canvas-hard_mvq.py',
        preset='mask_rcnn', data='data/canvas_coco_hard',
        metrics={'bbox': 'coco/bbox_mAP', 'bbox_50': 'coco/bbox_mAP_50',
                 'segm': 'coco/segm_mAP'},
        headline='bbox', scheduler='param_scheduler.0.end'),
    'deeplabv3': dict(
        dense='configs/demo/deeplabv3_mobilenet-v2-d8_canvas-hard_dense.py',
        mvq='configs/demo/deeplabv3_mobilenet-v2-d8_canvas-hard_mvq.py',
        preset='deeplabv3', data='data/canvas_seg_hard',
        metrics={'mIoU': 'mIoU', 'aAcc': 'aAcc'},
        headline='mIoU', scheduler='param_scheduler.0.end'),
}
ROWS = ('dense control', 'vq', 'mvq')


def dense_iters(config: str) -> int:
    """The config's ``train_cfg.max_iters``."""
    from mmengine.config import Config
    return int(Config.fromfile(str(REPO / config)).train_cfg.max_iters)


def vq_setting(case: dict[str, Any]) -> tuple[Setting, int, int]:
    """Plain VQ's (d, k) in the paper's layout with the closest accounted bits to the MVQ
    preset on the dense model: ``(setting, vq bits, mvq bits)``."""
    from mvq_plugin.integrations.mm.config_model import build_model_from_config
    model, _ = build_model_from_config(str(REPO / case['dense']))
    fields = dict(PRESETS[case['preset']])
    mvq = Setting('mvq', fields.pop('block_size'), fields.pop('num_codewords'),
                  fields.pop('n'), fields.pop('m'))
    fields.pop('method', None)
    target = accounted_bits(model, mvq, fields)
    setting, bits = closest_setting(model, target, 'vq', fields=fields, tolerance=0.05,
                                    prefer_block_size=mvq.block_size)
    return setting, bits, target


def _val(work: Path, keys: dict[str, str]) -> list[dict[str, float]]:
    """Every validation record of a run: ``[{'step', name: value}]``, ``step`` the training
    iteration it followed. mmengine's ``LoggerHook`` logs a validation at the epoch unless
    ``log_metric_by_epoch=False`` (mmseg's default, not mmdet's), and the epoch of an
    iteration-based loop is 0: the last training record's step stands in for it then."""
    out, trained = [], 0
    for record in read_scalars(work):
        if 'lr' in record:  # a training record
            trained = int(record['step'])
        elif any(k in record for k in keys.values()):
            # COCO AP comes in [0, 1], mmseg's metrics in %: everything in % here
            out.append(dict(step=max(int(record.get('step', 0)), trained),
                            **{name: float(record[k]) * (100 if k.startswith('coco/') else 1)
                               for name, k in keys.items() if k in record}))
    return out


def _hardware(work: Path) -> dict[str, Any] | None:
    """The hardware report of the run's last validation (``HardwareCostHook`` writes one per
    validation, ``hw/val_<iter>/``, beside ``planned`` and ``compressed``)."""
    files = sorted(work.glob('hw/val_*/hw_report.json'),
                   key=lambda f: int(f.parent.name.removeprefix('val_')))
    if not files:
        return None
    report = json.loads(files[-1].read_text())
    base = report.get('baseline') or {}
    return dict(arch=report.get('arch', {}).get('name'), cycles=report['totals']['cycles'],
                energy_uj=report['totals']['energy_uj'],
                baseline=base.get('arch', {}).get('name'),
                baseline_cycles=base.get('totals', {}).get('cycles'),
                baseline_energy_uj=base.get('totals', {}).get('energy_uj'),
                macs=report['totals'].get('macs'),
                baseline_macs=base.get('totals', {}).get('macs'))


def _train_seconds(work: Path) -> float:
    """Time spent in training iterations by every run in ``work`` (resumed ones included):
    each logged iteration time times the iterations since the previous log line."""
    total, last = 0.0, 0
    for record in read_scalars(work):
        if 'time' not in record or 'lr' not in record:
            continue  # validation records
        step = int(record['step'])
        total += float(record['time']) * (step - last if step > last else step)
        last = step
    return total


def _ensure_data(case: dict[str, Any]) -> None:
    """Writes the case's canvas set when it is not on disk (before anything trains on it)."""
    if not (REPO / case['data']).is_dir():
        subprocess.run([sys.executable, str(REPO / 'tools/make_canvas_data.py'), '--hard',
                        '--train', '3000', '--val', '300'], cwd=REPO, check=True)


def earlier_cases(report: Path, budget: int) -> dict[str, dict[str, Any]]:
    """The case entries of an earlier report at the same ``budget`` (empty without one)."""
    if not report.is_file():
        return {}
    old = json.loads(report.read_text())
    return old.get('cases', {}) if old.get('budget') == budget else {}


def kept_rows(report: Path, budget: int) -> dict[str, dict[str, Any]]:
    """The rows of an earlier report at the same ``budget``: ``{case: {'dense': row,
    (row, seed): row}}`` (empty without one)."""
    return {name: {'dense': entry['dense'],
                   **{(r['row'], r['seed']): r for runs in entry.get('rows', {}).values()
                      for r in runs}}
            for name, entry in earlier_cases(report, budget).items()}


def run_dense(name: str, case: dict[str, Any], work: Path,
              kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains (or resumes) the dense model; its validation curve and final checkpoint.
    ``kept``: the dense row of an earlier report, used as it is when its iterations match."""
    iters = dense_iters(case['dense'])
    run = work / f'{name}_dense'
    done = run / 'row.json'
    if done.is_file():
        return json.loads(done.read_text())
    if kept is not None and kept.get('iters') == iters:
        return kept
    _ensure_data(case)
    train_mm(case['dense'], run, [], resume=True)
    curve = _val(run, case['metrics'])
    # the training time of every session it took (a resumed run's own wall time is not it)
    row = dict(iters=iters, checkpoint=str(run / f'iter_{iters}.pth'), curve=curve,
               final=curve[-1] if curve else {}, seconds=_train_seconds(run))
    done.write_text(json.dumps(row, indent=1))
    return row


def dense_control_config(name: str, run: Path, budget: int) -> Path:
    """A config for the dense control, written into its work dir: the dense config with the
    MVQ config's fine-tuning lr and schedule over ``budget`` iterations (the control trains as
    the compressed rows do; a list of schedulers cannot be replaced by ``--cfg-options``)."""
    case, mvq = CASES[name], mvq_config(name)
    schedulers = [dict(s, end=budget) for s in mvq.param_scheduler]
    run.mkdir(parents=True, exist_ok=True)
    path = run / 'dense_control.py'
    path.write_text(f"_base_ = [{str(REPO / case['dense'])!r}]\n"
                    f"optim_wrapper = dict(optimizer=dict(lr={mvq.optim_wrapper.optimizer.lr!r}))\n"
                    f"param_scheduler = {schedulers!r}\n")
    return path


_CONFIG_LOCK = threading.Lock()


@functools.cache
def mvq_config(case_name: str):
    """The case's MVQ config, read once (``Config.fromfile`` is not safe in two threads)."""
    from mmengine.config import Config
    with _CONFIG_LOCK:
        return Config.fromfile(str(REPO / CASES[case_name]['mvq']))


def case_eta_ratio(case_name: str) -> float:
    """The MVQ config's cosine floor over its peak lr."""
    mvq = mvq_config(case_name)
    return mvq.param_scheduler[0]['eta_min'] / mvq.optim_wrapper.optimizer.lr


def parse_lr(text: str) -> tuple[str, float]:
    """``ROW=LR`` of ``--lr``: a row of ``ROWS`` and a positive lr."""
    row, sep, value = text.rpartition('=')
    try:
        lr = float(value)
    except ValueError:
        lr = 0.0
    if not sep or row not in ROWS or not lr > 0:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected ROW=LR, ROW one of {list(ROWS)} and LR a positive number')
    return row, lr


def run_row(name: str, case: dict[str, Any], row: str, seed: int, dense: dict[str, Any],
            vq: Setting, args: argparse.Namespace,
            kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """One fine-tuning row from the dense checkpoint (kept in its own work dir); ``kept``:
    the row of an earlier report, used when the work dir has none."""
    lr = args.lr.get(row)  # None: the MVQ config's lr
    run = args.work_dir / (f'{name}_{row.replace(" ", "_")}_s{seed}' + (f'_lr{lr}' if lr else ''))
    done = run / 'row.json'
    if done.is_file():
        return json.loads(done.read_text())
    if kept is not None and kept.get('lr') == lr:
        return kept
    b = args.budget
    common = [f'load_from={dense["checkpoint"]}', f'randomness.seed={seed}',
              f'train_cfg.max_iters={b}', f'train_cfg.val_interval={b}',
              f'default_hooks.checkpoint.interval={b}']
    if lr:  # the cosine floor keeps the MVQ config's ratio to the peak
        common += [f'optim_wrapper.optimizer.lr={lr}',
                   f'param_scheduler.0.eta_min={lr * case_eta_ratio(name)}']
    if row == 'dense control':
        config = str(dense_control_config(name, run, b))
        options = common
    else:
        config = case['mvq']
        options = common + [f'{case["scheduler"]}={b}', f'model.mvq.seed={seed}']
        if row == 'mvq':
            # validated after the sparse phase too (before clustering): the decomposition
            options += [f'custom_hooks.0.sparse_finetune_iters={b // 2}',
                        f'train_cfg.val_interval={b // 2}']
        else:
            options += ['model.mvq.method=vq', 'model.mvq.n=1', 'model.mvq.m=1',
                        f'model.mvq.block_size={vq.block_size}',
                        f'model.mvq.num_codewords={vq.num_codewords}',
                        'model.sparse_finetune=False']
    _ensure_data(case)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    seconds = train_mm(config, run, options, threads=threads)
    curve = _val(run, case['metrics'])
    out = dict(row=row, seed=seed, jobs=args.jobs, final=curve[-1] if curve else {}, curve=curve,
               seconds=seconds, hardware=_hardware(run))
    if lr:
        out['lr'] = lr
    report = run / 'mvq_report.json'
    if report.is_file():
        data = json.loads(report.read_text())
        comp = data['compression']
        out.update(ratio=comp['compression_ratio'], bits=comp['bits'],
                   layers_ratio=comp['layers_ratio'],
                   artifact_bytes=data.get('artifact', {}).get('bytes'))
    done.write_text(json.dumps(out, indent=1))
    return out


def _mean(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    vals = [r['final'][key] for r in rows if key in r.get('final', {})]
    if not vals:
        return None
    return dict(mean=statistics.fmean(vals), min=min(vals), max=max(vals), n=len(vals))


def _fmt(s: dict[str, float] | None) -> str:
    return f'{s["mean"]:.1f} [{s["min"]:.1f}, {s["max"]:.1f}]' if s else '-'


def _at(runs: list[dict[str, Any]], step: int, key: str) -> list[float]:
    """``key`` at validation ``step`` of each run."""
    return [c[key] for r in runs for c in r.get('curve', []) if c['step'] == step and key in c]


def markdown(result: dict[str, Any]) -> str:
    budget = result['budget']
    lines = ['# Detection and segmentation on the hard canvas sets: the paper\'s Table 6 in form',
             '',
             f'- fine-tuning budget per row: {budget} iterations (MVQ: half fixed-mask sparse '
             f'training, half codebook); seeds {result["seeds"]}; mean [min, max]',
             '- CR: the accounted ratio of the whole model (every dense parameter at 32 bits); '
             'Eq. 7: the paper\'s ratio, over the compressed layers only',
             '- MMACs and the hardware estimate: one 224x224 input (the `_base_/hw` config\'s '
             '`input_shape`) on the 64x64 EWS-CMS array (the dense row: the EWS baseline of the '
             'same run); MMACs count pruned weights as skipped',
             '- the paper\'s column is COCO / VOC with R50-FPN / MobileNetV2 at full size: for '
             'shape only', '']
    for name, r in result['cases'].items():
        case, paper = CASES[name], PAPER[name]
        keys = list(case['metrics'])
        head = case['headline']
        d = r['dense']
        lines += [f'## {name}', '']
        lines += [f'Machine: {r.get("machine", result["machine"])}; command: '
                  f'`{r.get("command", result["command"])}`', '']
        lines += [f'Dense from random init: {d["iters"]} iterations, '
                  f'{d["seconds"] / 3600:.1f} h of training iterations; validation curve '
                  + ', '.join(f'{c["step"]}: {c.get(head, float("nan")):.1f}'
                              for c in d['curve']) + '.', '']
        if 'vq' in r:
            lines += [f'vq setting: {r["vq"]["label"]} ({r["vq"]["bits"]:,} bits vs MVQ '
                      f'{r["vq"]["mvq_bits"]:,}, {r["vq"]["bits"] / r["vq"]["mvq_bits"] - 1:+.1%})',
                      '']
        jobs = max((x.get('jobs', 1) for runs in r['rows'].values() for x in runs), default=1)
        if jobs > 1:
            lines += [f'Rows trained {jobs} at a time, the cores shared among them: the wall '
                      'time of a row is under that load.', '']
        any_hw = next((x['hardware'] for runs in r['rows'].values() for x in runs
                       if x.get('hardware')), None) or {}
        lines += ['| row | ' + ' | '.join(keys) + ' | CR | CR (Eq. 7) | MMACs | hw cycles | '
                  'hw energy (uJ) | wall per row | paper |',
                  '|---|' + '---:|' * (len(keys) + 6) + '---|']
        base_macs = any_hw.get('baseline_macs')
        cells = [f'{d["final"].get(k, float("nan")):.1f}' for k in keys] + [
            '1.0x', '-', f'{base_macs / 1e6:.0f}' if base_macs else '-',
            f'{any_hw["baseline_cycles"]:,.0f}' if any_hw.get('baseline_cycles') else '-',
            f'{any_hw["baseline_energy_uj"]:.1f}' if any_hw.get('baseline_energy_uj') else '-',
            '-', ', '.join(f'{k} {v}' for k, v in paper['dense'].items())]
        lines.append('| dense | ' + ' | '.join(cells) + ' |')
        for row in ROWS:
            runs = r['rows'].get(row, [])
            if not runs:
                lines.append(f'| {row} | ' + ' | '.join('not run yet' for _ in keys)
                             + ' |' * 8)
                continue
            hw = runs[0].get('hardware') or {}
            ratio, eq7 = runs[0].get('ratio'), runs[0].get('layers_ratio')
            cells = [_fmt(_mean(runs, k)) for k in keys] + [
                f'{ratio:.1f}x' if ratio else '1.0x', f'{eq7:.1f}x' if eq7 else '-',
                f'{hw["macs"] / 1e6:.0f}' if hw.get('macs') else '-',
                f'{hw["cycles"]:,.0f}' if hw.get('cycles') else '-',
                f'{hw["energy_uj"]:.1f}' if hw.get('energy_uj') else '-',
                f'{statistics.fmean(x["seconds"] for x in runs) / 60:.0f} min',
                ', '.join(f'{k} {v}' for k, v in paper['mvq'].items()) + f' at {paper["ratio"]}x'
                if row == 'mvq' else '']
            label = row + (f' (lr {runs[0]["lr"]:g})' if runs[0].get('lr') else '')
            lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
        mvq_runs = r['rows'].get('mvq', [])
        sparse = _at(mvq_runs, budget // 2, head)
        if mvq_runs and sparse and head in d['final']:
            control = _mean(r['rows'].get('dense control', []), head)
            final = _mean(mvq_runs, head)
            ref = control['mean'] if control else d['final'][head]
            after = statistics.fmean(sparse)
            lines += ['', f'MVQ\'s {head}, decomposed against the dense control ({ref:.1f}): '
                      f'after the fixed-mask sparse phase {after:.1f} (pruning costs '
                      f'{ref - after:.1f}); after clustering and codebook fine-tuning '
                      f'{final["mean"]:.1f} (clustering net of recovery '
                      f'{"costs" if after >= final["mean"] else "gains"} '
                      f'{abs(after - final["mean"]):.1f}).']
            vq_mean = _mean(r['rows'].get('vq', []), head)
            if vq_mean:
                diff = final['mean'] - vq_mean['mean']
                lines.append(f'MVQ {"beats" if diff >= 0 else "loses to"} vq by '
                             f'{abs(diff):.1f} points of {head}.')
        lines.append('')
    return '\n'.join(lines) + '\n'


@exit_on_missing_ops
def main(argv: list[str] | None = None) -> dict[str, Any]:
    require_mmcv_ops('tools/bench/detseg.py (Mask R-CNN, DeepLab-V3)')
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    p.add_argument('--rows', nargs='+', default=list(ROWS), choices=ROWS)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--budget', type=int, default=400, help='fine-tuning iterations per row')
    p.add_argument('--jobs', type=int, default=1,
                   help='rows trained at once, the cores shared among them (mmcv\'s CPU RoIAlign '
                        'and NMS use one core, so on 2 cores 2 rows at once finish sooner)')
    p.add_argument('--lr', type=parse_lr, nargs='+', default=[], metavar='ROW=LR',
                   help='a row\'s fine-tuning lr (default: the MVQ config\'s), e.g. vq=0.0005; '
                        'a kept row trained at another lr is trained again')
    p.add_argument('--dense-only', action='store_true', help='train the dense models only')
    p.add_argument('--work-dir', type=Path, default=Path('work_dirs/detseg'))
    p.add_argument('--out', default='work_dirs/detseg/results',
                   help='report folder (docs/results to update the committed one)')
    args = p.parse_args(argv)
    args.lr = dict(args.lr)
    if args.jobs < 1:
        p.error(f'--jobs {args.jobs}: at least 1')
    if args.budget < 2:
        p.error(f'--budget {args.budget}: at least 2 iterations (half sparse, half codebook)')
    start = time.perf_counter()
    result: dict[str, Any] = dict(machine=describe_machine(), budget=args.budget,
                                  seeds=args.seeds, command=' '.join(
                                      ['python', 'tools/bench/detseg.py',
                                       *(sys.argv[1:] if argv is None else argv)]),
                                  cases={})
    report = Path(args.out) / 'detseg.json'
    # the cases not run this time stay in the report as they were
    result['cases'].update({name: entry for name, entry in
                            earlier_cases(report, args.budget).items()
                            if name not in args.cases})
    earlier = kept_rows(report, args.budget)  # read once, before any row rewrites it
    for name in args.cases:
        case = CASES[name]
        kept = earlier.get(name, {})
        todo = [(row, seed) for seed in args.seeds for row in args.rows
                if (row, seed) not in kept or kept[row, seed].get('lr') != args.lr.get(row)]
        dense = run_dense(name, case, args.work_dir, kept.get('dense'))
        if todo and not args.dense_only and not Path(dense['checkpoint']).is_file():
            # an earlier session's dense row without its checkpoint: trained again
            print(f'{name}: {dense["checkpoint"]} is missing; training the dense model again',
                  flush=True)
            dense = run_dense(name, case, args.work_dir)
        entry: dict[str, Any] = dict(dense=dense, rows={}, command=result['command'],
                                     machine=result['machine'])
        result['cases'][name] = entry
        if args.dense_only:
            continue
        vq, vq_bits, mvq_bits = vq_setting(case)
        entry['vq'] = dict(label=vq.label, block_size=vq.block_size,
                           num_codewords=vq.num_codewords, bits=vq_bits, mvq_bits=mvq_bits)
        # the kept rows of the rows not run this time stay in the report
        done: dict[tuple[str, int], dict[str, Any]] = {
            (row, seed): kept[row, seed] for seed in args.seeds for row in ROWS
            if row not in args.rows and (row, seed) in kept}
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = {pool.submit(run_row, name, case, row, seed, dense, vq, args,
                                kept.get((row, seed))): (row, seed)
                    for seed in args.seeds for row in args.rows}
            for future in as_completed(runs):
                done[runs[future]] = future.result()
                entry['rows'] = {row: [done[row, s] for s in args.seeds if (row, s) in done]
                                 for row in ROWS
                                 if any((row, s) in done for s in args.seeds)}
                write_report(Path(args.out) / 'detseg', result, markdown(result))
    result['this_run_wall_s'] = time.perf_counter() - start  # kept rows: their own 'seconds'
    write_report(Path(args.out) / 'detseg', result, markdown(result))
    return result


if __name__ == '__main__':
    main()
