"""Accuracy vs compression ratio on the real Fashion-MNIST: ``mvq`` vs ``vq`` vs ``prune_vq``.

1. A dense mmpretrain ResNet-18 (``configs/demo/resnet18_fashion-mnist_dense.py``) trained on
   the full 60k/10k set with ``tools/train.py``, or the demo's checkpoint reused;
2. for each matched point (an MVQ setting and the ``vq`` / ``prune_vq`` settings whose
   *accounted* bits, docs/design.md section 2, lie within ``--tolerance`` of it) and each seed, one
   ``tools/train.py`` run of ``configs/demo/resnet18_fashion-mnist_mvq.py`` with the method's
   settings: clustering from the dense checkpoint, int8 codebook fake-quant from iteration 0,
   the same fine-tuning budget (iterations, batch, learning-rate schedule, k-means
   iterations) for every method;
3. per run: test top-1 right after clustering ("no fine-tuning": the clustered model with
   int8 codebooks and the dense BN statistics, evaluated by the run's own val loop before the
   first update) and after fine-tuning, the compression ratio from the run's report, and the
   effective MACs (pruned weights skipped; one 1x28x28 image);
4. optionally (``--long-iters``) ``mvq`` and ``vq`` at one point with a longer budget, to
   see whether the gap between them depends on the fine-tuning length;
5. writes ``accuracy_vs_cr.md`` (tables and a reading whose every figure comes from the
   runs), ``accuracy_vs_cr.json`` and ``accuracy_vs_cr.png``.

Matching: ``prune_vq`` uses the MVQ setting itself (same d, k, N:M: identical bits). ``vq``
(no mask) takes the (d, k), d in {4, 8, 16} and k a power of two, whose total bits are
closest to MVQ's, ties going to MVQ's own d: the bits MVQ spends on mask codes buy ``vq`` a
larger codebook or shorter sub-vectors.

    python tools/bench/accuracy_vs_cr.py [--iters 100] [--seeds 0 1] [--kmeans-iters 10]
        [--points 4] [--long-iters 400] [--threads 1] [--work-dir work_dirs/bench_accuracy]
        [--out docs/results]

Finished runs are reused from the work dir when their settings and budget are unchanged
(``--fresh`` reruns them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from mmengine.hooks import Hook

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tools'))
from _launch import run_train  # noqa: E402  (tools/_launch.py)

from mvq_plugin.core.matching import (  # noqa: E402
    MatchedPoint,
    Setting,
    effective_macs,
    match_points,
)
from mvq_plugin.integrations.mm.scalars import last_scalar  # noqa: E402

DENSE_CFG = 'configs/demo/resnet18_fashion-mnist_dense.py'
MVQ_CFG = 'configs/demo/resnet18_fashion-mnist_mvq.py'
METHODS = ('mvq', 'vq', 'prune_vq')
EVALS_FILE = 'bench_evals.json'


#: MVQ settings of the matched points (2:8 and d=8 as in the paper; k sets the ratio).
MVQ_POINTS: tuple[Setting, ...] = (
    Setting('mvq', 8, 64, 2, 8),
    Setting('mvq', 8, 256, 2, 8),
    Setting('mvq', 8, 1024, 2, 8),
    Setting('mvq', 16, 256, 2, 8),
)
#: ``--points`` takes the first N of these (default all four).
DEFAULT_POINTS = 4
def build_dense_model(config: str = DENSE_CFG):
    """The (randomly initialised) mmpretrain ResNet-18 of ``config`` (only shapes matter)."""
    from mvq_plugin.integrations.mm.config_model import build_model_from_config
    return build_model_from_config(REPO / config)[0]


def macs(model, setting: Setting | None, input_shape=(1, 1, 28, 28)) -> int:
    """Effective MACs of the mmpretrain model (tensor-mode forward), pruned weights skipped."""
    import torch
    return effective_macs(model, setting, torch.zeros(input_shape),
                          forward_fn=lambda m, x: m(x, mode='tensor'))


class AccVsCrEvalHook(Hook):
    """Evaluates the clustered model before the first update and records every val result.

    Runs after ``MVQHook`` (which clusters and switches int8 codebooks on in
    ``before_train``), so the first record is the top-1 with no fine-tuning at all.

    Args:
        out_file: JSON file (in the work dir) receiving ``[{iteration, metrics}, ...]``.
    """

    priority = 'LOW'

    def __init__(self, out_file: str = EVALS_FILE) -> None:
        self.out_file = out_file
        self.records: list[dict[str, Any]] = []

    def before_train(self, runner) -> None:
        if runner.iter == 0 and runner.val_loop is not None:
            runner.logger.info('AccVsCrEvalHook: evaluating the clustered model before '
                               'fine-tuning')
            runner.val_loop.run()

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self.records.append(dict(iteration=runner.iter,
                                 metrics={k: float(v) for k, v in (metrics or {}).items()}))
        Path(runner.work_dir, self.out_file).write_text(json.dumps(self.records, indent=1))


def _run_config(setting: Setting, seed: int, iters: int, args: argparse.Namespace,
                dense_ckpt: Path, path: Path) -> None:
    """Writes the fine-tuning config of one run (the MVQ demo config, overridden)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO / MVQ_CFG))
    cfg.merge_from_dict({
        'custom_imports': dict(imports=['mvq_plugin', 'tools.bench.accuracy_vs_cr'],
                               allow_failed_imports=False),
        'custom_hooks': [dict(type='mvq_plugin.MVQHook', codebook_quant_start_iter=0,
                              artifact=None),
                         dict(type='AccVsCrEvalHook')],
        'load_from': str(dense_ckpt),
        'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
        'param_scheduler': [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=iters,
                                 eta_min=1e-4)],
        'optim_wrapper.optimizer.lr': args.lr,
        'default_hooks.checkpoint': None,
        'randomness.seed': seed,
    })
    cfg.model.mvq.update(setting.mvq_fields(), seed=seed, kmeans_iters=args.kmeans_iters)
    cfg.dump(str(path))


def _train(config: Path, work_dir: Path, options: Sequence[str] = (), threads: int = 0
           ) -> float:
    """``tools/train.py`` in a subprocess, output in ``train_stdout.log``; its wall time."""
    return run_train(config, work_dir, options, threads=threads,
                     log=work_dir / 'train_stdout.log')


def ensure_dense(ckpt: Path, iters: int) -> tuple[Path, float]:
    """Returns the dense checkpoint (training it with ``tools/train.py`` when missing)."""
    if not ckpt.is_file():
        print(f'training the dense model into {ckpt.parent}', flush=True)
        _train(REPO / DENSE_CFG, ckpt.parent, [
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}', f'param_scheduler.1.end={iters}'])
        if not ckpt.is_file():
            raise FileNotFoundError(f'dense training wrote no {ckpt}')
    else:
        print(f'reusing the dense checkpoint {ckpt}', flush=True)
    return ckpt, last_scalar(ckpt.parent, 'accuracy/top1')


def run_one(point: int, setting: Setting, seed: int, args: argparse.Namespace,
            dense_ckpt: Path, iters: int | None = None) -> dict[str, Any]:
    """One fine-tuning run (or its stored result when it already finished with these args).

    Args:
        point: Index of the matched point.
        setting: The method's settings.
        seed: k-means and data-order seed.
        args: Command-line options (budget, work dir).
        dense_ckpt: The dense checkpoint (``load_from``).
        iters: Fine-tuning iterations (default ``args.iters``).

    Returns:
        ``{point, method, label, seed, iters, top1_no_ft, top1, compression_ratio, bits,
        mean_rel_error, seconds, reused}``.
    """
    iters = iters or args.iters
    suffix = '' if iters == args.iters else f'_it{iters}'
    work = Path(args.work_dir) / f'p{point}_{setting.method}_s{seed}{suffix}'
    key = dict(setting=dataclasses.asdict(setting), seed=seed, iters=iters, lr=args.lr,
               kmeans_iters=args.kmeans_iters, dense=str(dense_ckpt))
    done = work / 'result.json'
    if done.is_file() and not args.fresh:
        stored = json.loads(done.read_text())
        if stored.get('key') == key:
            return dict(stored['result'], iters=iters, reused=True)
    work.mkdir(parents=True, exist_ok=True)
    for old in (work / EVALS_FILE, work / 'mvq_report.json', done):
        old.unlink(missing_ok=True)
    config = work / 'finetune_config.py'
    _run_config(setting, seed, iters, args, dense_ckpt, config)
    seconds = _train(config, work, threads=args.threads)
    evals = json.loads((work / EVALS_FILE).read_text())
    report = json.loads((work / 'mvq_report.json').read_text())
    by_iter = {r['iteration']: r['metrics']['accuracy/top1'] for r in evals}
    errors = report.get('layer_errors') or {}
    result = dict(point=point, method=setting.method, label=setting.label, seed=seed,
                  iters=iters, top1_no_ft=by_iter[0], top1=by_iter[iters],
                  compression_ratio=report['compression']['compression_ratio'],
                  bits=report['compression']['bits'],
                  mean_rel_error=sum(errors.values()) / max(len(errors), 1), seconds=seconds)
    done.write_text(json.dumps(dict(key=key, result=result), indent=1))
    return dict(result, reused=False)


def _mean_range(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.fmean(values), min(values), max(values)


def summarize(results: Sequence[dict[str, Any]], points: Sequence[MatchedPoint],
              mac_counts: dict[tuple[int, str], int], dense: dict[str, Any]
              ) -> list[dict[str, Any]]:
    """Aggregates the runs per (point, method): seed mean and range.

    Args:
        results: :func:`run_one` results.
        points: The matched points.
        mac_counts: ``{(point, method): effective MACs}``.
        dense: ``{'top1', 'macs'}`` of the dense model.

    Returns:
        One row per (point, method): points by decreasing MVQ ratio, methods in
        :data:`METHODS` order.
    """
    rows = []
    for i in sorted(range(len(points)), key=lambda j: -points[j].ratio('mvq')):
        pt = points[i]
        for method in METHODS:
            runs = [r for r in results if r['point'] == i and r['method'] == method]
            if not runs:
                continue
            top1, lo, hi = _mean_range([r['top1'] for r in runs])
            nft, nlo, nhi = _mean_range([r['top1_no_ft'] for r in runs])
            rows.append(dict(
                point=i, method=method, label=pt.settings[method].label,
                accounted_bits=pt.bits[method], compression_ratio=pt.ratio(method),
                reported_ratio=runs[0]['compression_ratio'],
                mismatch_vs_mvq=pt.mismatch(method), macs=mac_counts[(i, method)],
                macs_fraction=mac_counts[(i, method)] / dense['macs'],
                seeds=[r['seed'] for r in runs], top1=[r['top1'] for r in runs],
                top1_mean=top1, top1_min=lo, top1_max=hi,
                top1_no_ft=[r['top1_no_ft'] for r in runs], top1_no_ft_mean=nft,
                top1_no_ft_min=nlo, top1_no_ft_max=nhi,
                mean_rel_error=statistics.fmean(r['mean_rel_error'] for r in runs),
                seconds=sum(r['seconds'] for r in runs)))
    return rows


def mvq_vs_vq(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per point: MVQ minus ``vq`` top-1 (means, and per seed), after and without fine-tuning."""
    out = []
    for p in dict.fromkeys(r['point'] for r in rows):  # row order
        by = {r['method']: r for r in rows if r['point'] == p}
        if 'mvq' not in by or 'vq' not in by:
            continue
        a, b = by['mvq'], by['vq']
        seeds = [s for s in a['seeds'] if s in b['seeds']]
        per_seed = [a['top1'][a['seeds'].index(s)] - b['top1'][b['seeds'].index(s)]
                    for s in seeds]
        out.append(dict(point=p, mvq=a['label'], vq=b['label'],
                        mvq_ratio=a['compression_ratio'], vq_ratio=b['compression_ratio'],
                        delta_top1=a['top1_mean'] - b['top1_mean'], delta_per_seed=per_seed,
                        delta_no_ft=a['top1_no_ft_mean'] - b['top1_no_ft_mean'],
                        mvq_wins_all_seeds=bool(per_seed) and min(per_seed) > 0,
                        mvq_loses_all_seeds=bool(per_seed) and max(per_seed) < 0))
    return out


def _reading(deltas: Sequence[dict[str, Any]]) -> list[str]:
    """Plain-language verdict derived from the numbers (no hand-written results)."""
    lines = []
    for d in deltas:
        if d['mvq_wins_all_seeds']:
            verdict = 'MVQ beats vq on every seed'
        elif d['mvq_loses_all_seeds']:
            verdict = 'MVQ is below vq on every seed'
        else:
            verdict = 'the seeds disagree (difference within the seed spread)'
        lines.append(f'- {d["mvq_ratio"]:.1f}x ({d["mvq"]} vs {d["vq"]}): after fine-tuning '
                     f'{d["delta_top1"]:+.2f} points ({verdict}; per seed '
                     f'{", ".join(f"{x:+.2f}" for x in d["delta_per_seed"])}); '
                     f'no fine-tuning {d["delta_no_ft"]:+.2f} points.')
    return lines


def _top1_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown table of test top-1 per (point, method)."""
    out = ['| CR | method | setting | no FT | after FT | per seed (after FT) | '
           'mean rel. weight error |',
           '|---:|---|---|---:|---:|---|---:|']
    for r in rows:
        out.append(
            f'| {r["compression_ratio"]:.2f}x | {r["method"]} | {r["label"]} | '
            f'{r["top1_no_ft_mean"]:.2f} [{r["top1_no_ft_min"]:.2f}, {r["top1_no_ft_max"]:.2f}]'
            f' | **{r["top1_mean"]:.2f}** [{r["top1_min"]:.2f}, {r["top1_max"]:.2f}] | '
            f'{", ".join(f"{x:.2f}" for x in r["top1"])} | {r["mean_rel_error"]:.3f} |')
    return out


def reading(rows: Sequence[dict[str, Any]], deltas: Sequence[dict[str, Any]],
            long_deltas: Sequence[dict[str, Any]], iters: int, long_iters: int,
            dense_top1: float) -> list[str]:
    """The interpretation paragraph, every figure in it taken from the results.

    Args:
        rows: :func:`summarize` rows of the main budget.
        deltas: :func:`mvq_vs_vq` of ``rows``.
        long_deltas: :func:`mvq_vs_vq` of the longer-budget rows (may be empty).
        iters: Main fine-tuning budget.
        long_iters: Longer budget.
        dense_top1: Top-1 of the dense model.

    Returns:
        Markdown lines.
    """
    by = {(r['point'], r['method']): r for r in rows}
    pts = list(dict.fromkeys(r['point'] for r in rows))
    wins = [d for d in deltas if d['mvq_wins_all_seeds']]
    losses = [d for d in deltas if d['mvq_loses_all_seeds']]
    means = ', '.join(f'{d["mvq_ratio"]:.1f}x {d["delta_top1"]:+.2f}' for d in deltas)
    out = [f'- MVQ vs vq after {iters} iterations: MVQ ahead on every seed at {len(wins)} of '
           f'{len(deltas)} ratios, behind on every seed at {len(losses)}, mixed at the rest '
           f'(mean differences {means} points).']
    pv = [(p, by[(p, 'mvq')], by[(p, 'prune_vq')]) for p in pts
          if (p, 'mvq') in by and (p, 'prune_vq') in by]
    if pv:
        out.append(
            '- MVQ vs prune_vq (same bits, same N:M masks; only the k-means objective differs, '
            'so this isolates masked clustering): after fine-tuning '
            + ', '.join(f'{a["compression_ratio"]:.1f}x {a["top1_mean"] - b["top1_mean"]:+.2f}'
                        for _, a, b in pv)
            + ' points; no fine-tuning '
            + ', '.join(f'{a["top1_no_ft_mean"] - b["top1_no_ft_mean"]:+.2f}' for _, a, b in pv)
            + ' (same order); mean relative weight error (mvq vs prune_vq) '
            + ', '.join(f'{a["mean_rel_error"]:.3f} vs {b["mean_rel_error"]:.3f}'
                        for _, a, b in pv) + '.')
    mv = [(by[(p, 'mvq')], by[(p, 'vq')]) for p in pts if (p, 'mvq') in by and (p, 'vq') in by]
    if mv:
        behind = any(d['delta_top1'] < 0 for d in deltas)
        out.append(
            ('- Why vq leads at this budget: ' if behind else '- Starting points: vq ')
            + 'it prunes nothing, so right after clustering it is '
            'at ' + ', '.join(f'{b["top1_no_ft_mean"]:.1f}%' for _, b in mv)
            + ' while MVQ, which drops 75% of the weights in one shot (2:8, no sparse '
            'fine-tuning before clustering), starts at '
            + ', '.join(f'{a["top1_no_ft_mean"]:.1f}%' for a, _ in mv)
            + f' (same order as above); {iters} iterations ({iters * 128 / 60000:.2f} epochs) '
            'of codeword/BN fine-tuning recover most but not all of it. At equal bits MVQ also '
            'spends ceil(log2 C(8,2)) = 5 bits per 8 weights on the 2:8 mask codes, which vq '
            'spends on more codewords or shorter sub-vectors (matching table). What MVQ gets '
            f'for those bits is {mv[0][1]["macs"] / mv[0][0]["macs"]:.1f}x fewer effective MACs '
            f'({mv[0][0]["macs"] / 1e6:.1f} M vs {mv[0][1]["macs"] / 1e6:.1f} M), which vq '
            'cannot skip, and the sparse systolic array of the hardware model.')
    for d in long_deltas:
        short = next((x for x in deltas if x['point'] == d['point']), None)
        if short is not None:
            out.append(
                f'- Longer fine-tuning at {d["mvq_ratio"]:.1f}x: MVQ minus vq is '
                f'{short["delta_top1"]:+.2f} points after {iters} iterations and '
                f'{d["delta_top1"]:+.2f} after {long_iters} (per seed '
                f'{", ".join(f"{x:+.2f}" for x in d["delta_per_seed"])}).')
    worst = max(dense_top1 - r['top1_mean'] for r in rows)
    out.append(f'- Fashion-MNIST on an 11M-parameter ResNet-18 is an easy, over-parameterised '
               f'setting: after fine-tuning every method is within {worst:.2f} points of the '
               f'dense {dense_top1:.2f}%, so the differences here are small next to the '
               f'ImageNet gaps the paper reports, and two seeds give only a rough spread.')
    return out


def write_markdown(path: Path, meta: dict[str, Any], rows: Sequence[dict[str, Any]],
                   deltas: Sequence[dict[str, Any]],
                   long_rows: Sequence[dict[str, Any]] = (),
                   long_deltas: Sequence[dict[str, Any]] = ()) -> None:
    """Writes the Markdown report (command, budget, wall time, tables, verdict)."""
    dense = meta['dense']
    out = [
        '# Accuracy vs compression ratio: mvq vs vq vs prune_vq (Fashion-MNIST, ResNet-18)',
        '',
        '```',
        meta['command'],
        '```',
        '',
        f'- Model: mmpretrain ResNet-18 (1 input channel, 10 classes), dense checkpoint '
        f'`{meta["dense_checkpoint"]}`: {dense["top1"]:.2f}% top-1 on the 10k test set, '
        f'{dense["params"]:,} parameters, {dense["macs"] / 1e6:.1f} M MACs per 1x28x28 image.',
        f'- Fine-tuning budget, identical for every method and run: {meta["iters"]} iterations '
        f'at batch 128 ({meta["iters"] * 128 / 60000:.2f} epochs), SGD lr {meta["lr"]} '
        f'cosine to 1e-4, momentum 0.9, codewords without weight decay, int8 codebook '
        f'fake-quant from iteration 0, k-means {meta["kmeans_iters"]} iterations (k-means++ '
        f'init), seeds {meta["seeds"]} (the seed sets both the k-means and the data order).',
        '- "no FT": test top-1 right after clustering (int8 codebooks, BN statistics of the '
        'dense model), evaluated by the run\'s own val loop before the first update.',
        '- Ratios: `32 * params / accounted bits` (docs/design.md section 2: indices + mask '
        'codes + int8 codebooks with one fp32 scale + every uncompressed parameter at 32 bits; BN '
        'running statistics not counted). The first conv stays dense; a layer with fewer '
        'sub-vectors than k (the 512x10 classifier when k > 640) stays dense, at 32 bits.',
        '- Effective MACs: conv/linear MACs of one 1x28x28 image with pruned weights skipped '
        '(N/M of a pruned layer).',
        f'- Wall time: {meta["runs_s"] / 60:.1f} min summed over the {meta["num_runs"]} '
        f'fine-tuning runs (about {meta["runs_s"] / max(meta["num_runs"], 1):.0f} s each, '
        f'2 CPU cores shared with other jobs), about the wall time of a run from scratch; '
        f'this invocation took {meta["wall_s"] / 60:.1f} min ({meta["num_reused"]} runs '
        f'reused from the work dir).',
        '',
        '## Matching (accounted bits)',
        '',
        '| point | method | setting | accounted bits | CR | vs mvq bits | effective MACs |',
        '|---|---|---|---:|---:|---:|---:|',
    ]
    for r in rows:
        out.append(f'| {r["point"]} | {r["method"]} | {r["label"]} | {r["accounted_bits"]:,} '
                   f'| {r["compression_ratio"]:.2f}x | {r["mismatch_vs_mvq"]:+.2%} | '
                   f'{r["macs"] / 1e6:.2f} M ({r["macs_fraction"]:.0%}) |')
    out += ['', f'## Test top-1 (%) after {meta["iters"]} iterations, mean over seeds '
            '[min, max]', '', *_top1_table(rows)]
    out += ['', f'Dense: {dense["top1"]:.2f}%. Mean relative weight error: '
            '`||W - W_hat|| / ||W||` per layer right after clustering (pruning included), '
            'averaged over layers and seeds.', '', '## MVQ vs vq at each matched ratio', '']
    out += _reading(deltas)
    if long_rows:
        out += ['', f'## Longer fine-tuning: {meta["long_iters"]} iterations '
                f'({meta["long_iters"] * 128 / 60000:.2f} epochs), same schedule shape', '',
                *_top1_table(long_rows), '', *_reading(long_deltas)]
    if meta.get('notes'):
        out += ['', '## Reading', '', *meta['notes']]
    out += ['', '![accuracy vs compression ratio](accuracy_vs_cr.png)', '']
    path.write_text('\n'.join(out))


def plot(path: Path, rows: Sequence[dict[str, Any]], dense_top1: float) -> None:
    """Accuracy vs compression ratio: after fine-tuning (left) and no fine-tuning (right)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colors = {'mvq': 'tab:red', 'vq': 'tab:blue', 'prune_vq': 'tab:green'}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], 'top1', 'after codebook fine-tuning'),
                           (axes[1], 'top1_no_ft', 'no fine-tuning (right after clustering)')):
        for method in METHODS:
            rs = sorted((r for r in rows if r['method'] == method),
                        key=lambda r: r['compression_ratio'])
            if not rs:
                continue
            x = [r['compression_ratio'] for r in rs]
            y = [r[f'{key}_mean'] for r in rs]
            err = [[r[f'{key}_mean'] - r[f'{key}_min'] for r in rs],
                   [r[f'{key}_max'] - r[f'{key}_mean'] for r in rs]]
            ax.errorbar(x, y, yerr=err, marker='o', capsize=4, color=colors[method],
                        label=method, linestyle='-' if key == 'top1' else '--',
                        markerfacecolor=colors[method] if key == 'top1' else 'white')
        ax.axhline(dense_top1, color='gray', linestyle=':', label=f'dense {dense_top1:.2f}%')
        ax.set_xlabel('compression ratio (accounted bits, x vs fp32)')
        ax.set_ylabel('test top-1 (%)')
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle('ResNet-18 on Fashion-MNIST: mean over seeds, bars = min/max')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dense-ckpt', default='work_dirs/demo/dense_1200/iter_1200.pth',
                   help='dense checkpoint, trained with tools/train.py when missing')
    p.add_argument('--dense-iters', type=int, default=1200)
    p.add_argument('--iters', type=int, default=100, help='fine-tuning iterations (batch 128)')
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--kmeans-iters', type=int, default=10)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--threads', type=int, default=0,
                   help='OMP_NUM_THREADS of each run (0: inherited; 1 helps on a busy machine)')
    p.add_argument('--points', type=int, default=DEFAULT_POINTS, choices=range(1, 5),
                   help='matched points: the first N of mvq 2:8 d=8 k=64/256/1024, 2:8 d=16 k=256')
    p.add_argument('--tolerance', type=float, default=0.03)
    p.add_argument('--work-dir', default='work_dirs/bench_accuracy')
    p.add_argument('--out', default='docs/results')
    p.add_argument('--fresh', action='store_true', help='rerun runs whose results exist')
    p.add_argument('--long-iters', type=int, default=400,
                   help='also fine-tune mvq and vq this long at --long-point (0: skip)')
    p.add_argument('--long-point', type=int, default=1,
                   help='index of the matched point of the longer runs (1: 2:8 d=8 k=256)')
    p.add_argument('--match-only', action='store_true', help='print the matching and stop')
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the sweep and writes the Markdown, JSON and PNG files."""
    args = parse_args(argv)
    start = time.perf_counter()
    command = shlex.join(['python', 'tools/bench/accuracy_vs_cr.py',
                          *(sys.argv[1:] if argv is None else argv)])
    model = build_dense_model()
    points = match_points(model, MVQ_POINTS[:args.points], args.tolerance)
    dense_macs = macs(model, None)
    mac_counts = {(i, m): macs(model, pt.settings[m])
                  for i, pt in enumerate(points) for m in METHODS}
    for i, pt in enumerate(points):
        for m in METHODS:
            print(f'point {i} {m:9s} {pt.settings[m].label:24s} {pt.bits[m]:>12,} bits  '
                  f'{pt.ratio(m):6.2f}x  {pt.mismatch(m):+.2%} vs mvq  '
                  f'{mac_counts[(i, m)] / 1e6:.2f} M MACs', flush=True)
    if args.match_only:
        return dict(points=[pt.record() for pt in points])

    ckpt, dense_top1 = ensure_dense(Path(args.dense_ckpt), args.dense_iters)
    ckpt = ckpt.resolve()
    results = []
    # Seed-major order: a cut-short sweep still has every point and method for seed 0.
    for seed in args.seeds:
        for i, pt in enumerate(points):
            for method in METHODS:
                r = run_one(i, pt.settings[method], seed, args, ckpt)
                results.append(r)
                print(f'[{len(results)}/{len(points) * 3 * len(args.seeds)}] point {i} '
                      f'{r["label"]:24s} seed {seed}: {r["compression_ratio"]:.2f}x  top-1 no '
                      f'FT {r["top1_no_ft"]:.2f}  after FT {r["top1"]:.2f}  '
                      f'({r["seconds"]:.0f} s)', flush=True)
    long_results = []
    if args.long_iters and args.long_iters != args.iters:
        pt = points[args.long_point]
        for seed in args.seeds:
            for method in ('mvq', 'vq'):
                r = run_one(args.long_point, pt.settings[method], seed, args, ckpt,
                            iters=args.long_iters)
                long_results.append(r)
                print(f'[long {len(long_results)}/{2 * len(args.seeds)}] {r["label"]:24s} '
                      f'seed {seed}, {args.long_iters} iterations: top-1 after FT '
                      f'{r["top1"]:.2f} ({r["seconds"]:.0f} s)', flush=True)
    dense = dict(top1=dense_top1, macs=dense_macs,
                 params=sum(p.numel() for p in model.parameters()))
    rows = summarize(results, points, mac_counts, dense)
    deltas = mvq_vs_vq(rows)
    long_rows = summarize(long_results, points, mac_counts, dense)
    long_deltas = mvq_vs_vq(long_rows)
    every = results + long_results
    try:
        dense_rel = str(Path(args.dense_ckpt).resolve().relative_to(REPO))
    except ValueError:
        dense_rel = args.dense_ckpt
    meta = dict(command=command, iters=args.iters, long_iters=args.long_iters, lr=args.lr,
                kmeans_iters=args.kmeans_iters, seeds=args.seeds, tolerance=args.tolerance,
                dense=dense, dense_checkpoint=dense_rel, wall_s=time.perf_counter() - start,
                runs_s=sum(r['seconds'] for r in every), num_runs=len(every),
                num_reused=sum(r['reused'] for r in every),
                notes=reading(rows, deltas, long_deltas, args.iters, args.long_iters,
                              dense_top1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(meta=meta, matching=[pt.record() for pt in points], rows=rows,
                   mvq_vs_vq=deltas, long_rows=long_rows, long_mvq_vs_vq=long_deltas,
                   runs=every)
    (out / 'accuracy_vs_cr.json').write_text(json.dumps(summary, indent=1))
    write_markdown(out / 'accuracy_vs_cr.md', meta, rows, deltas, long_rows, long_deltas)
    plot(out / 'accuracy_vs_cr.png', rows, dense_top1)
    print('\n'.join(meta['notes']), flush=True)
    print(f'wrote {out / "accuracy_vs_cr.md"}, .json, .png '
          f'({meta["wall_s"] / 60:.1f} min)', flush=True)
    return summary


if __name__ == '__main__':
    main()
