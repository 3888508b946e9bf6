"""MVQ's recipe vs plain VQ at equal bits and equal training budget, on the real Fashion-MNIST.

One run, side by side, every method with the same total fine-tuning budget (``--budget``
steps at batch 128: sparse phase + codebook phase for MVQ = codebook phase for ``vq``):

* a dense mmpretrain ResNet-18 at base width ``--width`` (16: a narrow model, where
  compression costs accuracy) trained to convergence (``--dense-iters``) and a **dense
  control** fine-tuned for the same budget: what extra training alone buys;
* per matched ratio (the MVQ 2:8 setting of ``common.POINTS``; 4:8 and ``vq`` take the
  ``(d, k)`` whose accounted bits lie within 2 %, or the row says why none does):
  ``vq`` and ``vq + KD``; ``prune_vq`` with sparse fine-tuning; and for 2:8 and 4:8 ``mvq``
  one-shot, ``+ sparse`` fine-tuning (half the budget), ``+ self-distillation`` and
  ``+ data-aware`` (activation importance and activation-weighted masked k-means);
* per row and seed: top-1 on the 10k test images after pruning, after sparse fine-tuning,
  right after clustering (int8 codebooks), after fine-tuning; accounted compression ratio;
  effective MACs (pruned weights skipped, one 28x28 image).

``--layout paper`` (the default) runs every setting in the paper's layout (sub-vectors of
output channels, LSQ codebook scale, the 0.1 %-assignment-change stopping rule) with the
paper's SR-STE sparse phase (``--sparse-method``), and adds the ``(in_channel)`` rows: the
same MVQ settings with sub-vectors along the input channel (the layout question).
``--layout legacy`` reproduces ``docs/results/mvq_recipe_legacy.md`` (input-channel
sub-vectors, max-abs scale, objective stopping rule, fixed-mask sparse phase). A Fig. 13-style
plot (top-1 against compression ratio) is written beside the report.

Everything runs in-process with :func:`mvq_plugin.core.recipe.run_recipe` (the plain-PyTorch
recipe ``MVQHook`` also runs). Finished runs are cached in the work dir (``--fresh`` reruns).

    python tools/bench/mvq_recipe.py [--width 16] [--dense-iters 12000] [--points 0 2 4]
        [--budget 400] [--layout paper] [--rows ROW ...]
        [--seeds 0 1 2] [--threads 2] [--work-dir work_dirs/bench_recipe] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import (  # same folder (tools/bench/common.py)
    BATCH,
    POINTS,
    Data,
    add_setting_args,
    build_model,
    command_line,
    dense_start,
    describe_machine,
    fmt_stat,
    forward,
    stat,
    write_json,
    write_report,
)
from matching import LAYOUTS, Setting, accounted_bits, closest_setting, effective_macs

from mvq_plugin import MVQConfig
from mvq_plugin.core.distill import DistillConfig
from mvq_plugin.core.recipe import MVQRecipe, finetune_dense, run_recipe

#: ``k`` candidates when matching bits: powers of two and the steps between them (index bits
#: are ``ceil(log2 k)``, so a k between powers trades codebook bits at equal index bits).
CODEWORDS = tuple(sorted({int(f * 2 ** i) for i in range(3, 14) for f in (1, 1.25, 1.5, 1.75)}))
TOLERANCE = 0.02

#: Row name -> (method, N:M key, sparse phase?, distill?, data-aware?).
ROWS = {
    'vq': ('vq', None, False, False, False),
    'vq + KD': ('vq', None, False, True, False),
    'prune_vq 2:8 + sparse': ('prune_vq', '2:8', True, False, False),
    'mvq 2:8 one-shot': ('mvq', '2:8', False, False, False),
    'mvq 2:8 + sparse': ('mvq', '2:8', True, False, False),
    'mvq 2:8 + sparse + KD': ('mvq', '2:8', True, True, False),
    'mvq 2:8 + sparse + KD + data-aware': ('mvq', '2:8', True, True, True),
    'mvq 4:8 one-shot': ('mvq', '4:8', False, False, False),
    'mvq 4:8 + sparse': ('mvq', '4:8', True, False, False),
    'mvq 4:8 + sparse + KD': ('mvq', '4:8', True, True, False),
    'mvq 4:8 + sparse + KD + data-aware': ('mvq', '4:8', True, True, True),
    'mvq 2:8 + sparse (in_channel)': ('mvq', '2:8', True, False, False),
    'mvq 4:8 + sparse (in_channel)': ('mvq', '4:8', True, False, False),
}
#: Rows whose sub-vectors run along the input channel whatever ``--layout`` says (run with
#: ``--layout paper`` only: in the legacy layout they would repeat the plain rows).
IN_CHANNEL_ROWS = ('mvq 2:8 + sparse (in_channel)', 'mvq 4:8 + sparse (in_channel)')
COLUMNS = ('pruned', 'sparse_finetuned', 'clustered', 'finetuned')


def matched_points(width: int, layout: str = 'paper') -> list[dict[str, Any]]:
    """Per point: the 2:8, 4:8 and vq settings with their bits (or why none matches)."""
    model = build_model(width)
    params = sum(p.numel() for p in model.parameters())
    fields = LAYOUTS[layout]
    out = []
    for s28 in POINTS:
        target = accounted_bits(model, s28, fields)
        point: dict[str, Any] = dict(settings={'2:8': s28}, bits={'2:8': target},
                                     missing={})
        for key, method, n, m in (('4:8', 'mvq', 4, 8), ('vq', 'vq', 1, 1)):
            try:
                s, b = closest_setting(model, target, method, n, m, codewords=CODEWORDS,
                                       prefer_block_size=s28.block_size, tolerance=TOLERANCE,
                                       fields=fields)
                point['settings'][key], point['bits'][key] = s, b
            except ValueError as err:
                point['missing'][key] = str(err)
        point['ratio'] = 32 * params / target
        point['macs'] = {k: effective_macs(model, s, torch.zeros(1, 1, 28, 28), forward,
                                           fields)
                         for k, s in point['settings'].items()}
        point['macs']['dense'] = effective_macs(model, None, torch.zeros(1, 1, 28, 28),
                                                forward)
        out.append(point)
    return out


def _setting_for(point: dict, row: str) -> Setting | None:
    method, nm, *_ = ROWS[row]
    base = point['settings'].get('vq' if method == 'vq' else nm)
    if base is None:
        return None
    return Setting(method, base.block_size, base.num_codewords, base.n, base.m)


def run_row(row: str | None, point: dict | None, seed: int, args: argparse.Namespace,
            dense_state: dict, cache: Path) -> dict[str, Any] | None:
    """One (row, point, seed) run, cached as JSON; ``row=None`` is the dense control."""
    if cache.is_file() and not args.fresh:
        return json.loads(cache.read_text())
    torch.manual_seed(seed)
    model, data = build_model(args.width), Data(seed)
    model.load_state_dict(dense_state)
    t0 = time.perf_counter()
    if row is None:
        recipe = MVQRecipe(iters=args.budget, lr=args.lr, log_every=100)
        res = finetune_dense(model, recipe, data.batches, evaluate=data.evaluate,
                             forward_fn=forward)
        record = dict(res.to_dict(), row='dense control', seed=seed)
    else:
        setting = _setting_for(point, row)
        if setting is None:
            return None
        _, _, sparse, kd, aware = ROWS[row]
        fields = dict(setting.mvq_fields(LAYOUTS[args.layout]), seed=seed,
                      kmeans_iters=args.kmeans_iters, codebook_bits=8)
        if row in IN_CHANNEL_ROWS:
            fields['vector_axis'] = 'in_channel'
        if aware:
            fields.update(importance='activation', kmeans_weights='activation')
        recipe = MVQRecipe(iters=args.budget,
                           sparse_iters=args.budget // 2 if sparse else 0, lr=args.lr,
                           distill=DistillConfig() if kd else None,
                           calib_batches=8 if aware else 0, log_every=100,
                           sparse_method=args.sparse_method)
        stages = ('pruned', 'sparse_finetuned', 'clustered', 'finetuned') if sparse else (
            'pruned', 'clustered', 'finetuned')
        res = run_recipe(model, MVQConfig(**fields), recipe, data.batches,
                         evaluate=data.evaluate, calib=data.calib(8) if aware else None,
                         forward_fn=forward, stages=stages)
        record = dict(res.to_dict(), row=row, seed=seed, setting=setting.label,
                      config=dict(vector_axis=fields['vector_axis'],
                                  codebook_scale=fields['codebook_scale'],
                                  kmeans_stop=fields['kmeans_stop'],
                                  sparse_method=args.sparse_method if sparse else None))
    record['wall_s'] = time.perf_counter() - t0
    write_json(cache, record)
    return record


def measure_kd_cost(width: int, dense_state: dict, point: dict, repeats: int = 2,
                    steps: int = 40, layout: str = 'paper') -> dict[str, float]:
    """Step time with and without self-distillation, side by side in this process.

    ``mvq 2:8 + sparse`` of ``point`` for ``steps`` steps (half sparse), alternating the two
    variants ``repeats`` times; the ratio is of the mean training seconds per step.
    """
    setting = Setting('mvq', *[getattr(point['settings']['2:8'], f)
                               for f in ('block_size', 'num_codewords', 'n', 'm')])
    per_step: dict[bool, list[float]] = {False: [], True: []}
    teacher = 0
    for _ in range(repeats):
        for kd in (False, True):
            model, data = build_model(width), Data(0)
            model.load_state_dict(dense_state)
            recipe = MVQRecipe(iters=steps, sparse_iters=steps // 2,
                               distill=DistillConfig() if kd else None, log_every=steps)
            res = run_recipe(model, MVQConfig(**setting.mvq_fields(LAYOUTS[layout]),
                                              kmeans_iters=2),
                             recipe, data.batches, forward_fn=forward, stages=())
            per_step[kd].append((res.seconds['sparse'] + res.seconds['codebook']) / steps)
            teacher = max(teacher, res.teacher_bytes)
    with_kd, without = statistics.fmean(per_step[True]), statistics.fmean(per_step[False])
    return dict(teacher_bytes=teacher, with_kd_s=with_kd, without_kd_s=without,
                ratio=with_kd / without, steps=steps, repeats=repeats)


def summarize(records: list[dict], points: dict[int, dict], dense_top1: float) -> dict[str, Any]:
    """Mean/min/max per (point, row, column) and the loss decomposition."""
    control = [r['top1']['finetuned'] for r in records if r['row'] == 'dense control']
    summary: dict[str, Any] = dict(dense_top1=dense_top1, dense_control=stat(control)
                                   if control else None, points=[])
    ctrl = statistics.fmean(control) if control else dense_top1
    for pi, point in points.items():
        rows = {}
        for row in ROWS:
            runs = [r for r in records if r.get('point') == pi and r['row'] == row]
            if not runs:
                continue
            cols = {c: stat([r['top1'][c] for r in runs]) for c in COLUMNS
                    if all(c in r['top1'] for r in runs)}
            fin = cols['finetuned']['mean']
            after_prune = cols['sparse_finetuned']['mean'] if ROWS[row][2] \
                else cols['pruned']['mean']
            clustered = cols['clustered']['mean']
            rows[row] = dict(
                columns=cols, setting=runs[0]['setting'],
                ratio=statistics.fmean(r['compression_ratio'] for r in runs),
                bits=runs[0]['bits'],
                macs=point['macs']['vq' if ROWS[row][0] == 'vq' else ROWS[row][1]],
                decomposition=dict(pruning=ctrl - after_prune,
                                   clustering=after_prune - clustered,
                                   recovered=fin - clustered, net=ctrl - fin),
                sec_per_run=statistics.fmean(r['wall_s'] for r in runs),
                teacher_bytes=runs[0]['teacher_bytes'])
        summary['points'].append(dict(ratio=point['ratio'], rows=rows,
                                      missing=point['missing'],
                                      settings={k: s.label for k, s in point['settings'].items()},
                                      bits=point['bits'], macs=point['macs']))
    return summary


def best(rows: dict[str, Any], prefix: str) -> tuple[str, float] | None:
    """The best row named ``prefix...`` (the ``(in_channel)`` rows apart: the layout question
    has its own sentence)."""
    cand = [(r, v['columns']['finetuned']['mean']) for r, v in rows.items()
            if r.startswith(prefix) and r not in IN_CHANNEL_ROWS]
    return max(cand, key=lambda t: t[1]) if cand else None


def reading(summary: dict[str, Any]) -> list[str]:
    """Sentences whose every figure comes from the runs."""
    ctrl = summary['dense_control']
    lines = [f'- Dense model {summary["dense_top1"]:.2f}%; the dense control after the same '
             f'budget {fmt_stat(ctrl)}%' + (
                 ' (it gains from the extra training, so the dense model was not converged: '
                 'gains of compressed rows over the dense model are partly training)'
                 if ctrl and ctrl['mean'] > summary['dense_top1'] + 0.1 else
                 ' (no gain from the extra budget: the dense model is converged)')
             + '.']
    for p in summary['points']:
        rows = p['rows']
        b_vq, b_mvq = best(rows, 'vq'), best(rows, 'mvq')
        if not b_vq or not b_mvq:
            continue
        gap = b_mvq[1] - b_vq[1]
        ref = ctrl['mean'] if ctrl else summary['dense_top1']
        lines.append(
            f'- {p["ratio"]:.1f}x: best MVQ row "{b_mvq[0]}" {b_mvq[1]:.2f}% vs best VQ row '
            f'"{b_vq[0]}" {b_vq[1]:.2f}%: MVQ {"wins" if gap > 0 else "loses"} by '
            f'{abs(gap):.2f} points; VQ is {ref - b_vq[1]:.2f} points below the dense '
            f'control, MVQ {ref - b_mvq[1]:.2f}.')
        for out_row, in_row in zip(('mvq 2:8 + sparse', 'mvq 4:8 + sparse'), IN_CHANNEL_ROWS):
            if out_row in rows and in_row in rows:
                o = rows[out_row]['columns']['finetuned']['mean']
                i = rows[in_row]['columns']['finetuned']['mean']
                lines.append(
                    f'  Layout ({out_row.split()[1]}): out_channel {o:.2f}% at '
                    f'{rows[out_row]["ratio"]:.1f}x vs in_channel {i:.2f}% at '
                    f'{rows[in_row]["ratio"]:.1f}x: '
                    + ('in_channel' if i > o else 'out_channel') + f' better by {abs(o - i):.2f}'
                    ' points.')
        one = rows.get('mvq 2:8 one-shot')
        full = rows.get('mvq 2:8 + sparse')
        if one and full:
            lines.append(f'  Sparse fine-tuning moves MVQ 2:8 from '
                         f'{one["columns"]["finetuned"]["mean"]:.2f}% (one-shot) to '
                         f'{full["columns"]["finetuned"]["mean"]:.2f}%; the decomposition '
                         f'blames pruning for {full["decomposition"]["pruning"]:.2f} points '
                         f'and clustering for {full["decomposition"]["clustering"]:.2f} '
                         f'(fine-tuning recovers {full["decomposition"]["recovered"]:.2f}).')
        for key, why in p['missing'].items():
            lines.append(f'  No {key} row at this ratio: {why}.')
    return lines


def markdown(meta: dict[str, Any], summary: dict[str, Any]) -> str:
    """The Markdown report."""
    out = ['# MVQ recipe vs VQ at equal bits and equal budget (Fashion-MNIST)', '',
           f'Command: `{meta["command"]}`  ', f'Machine: {meta["machine"]}  ',
           f'Runs: {meta["runs"]} ({meta["cached"]} reused from the work dir\'s cache), '
           f'{meta["run_s"] / 60:.0f} min of run wall time in all (each run\'s own time is in '
           f'the JSON); this invocation {meta["wall_s"] / 60:.1f} min.  ',
           f'Model: mmpretrain ResNet-18, base width {meta["width"]} '
           f'({meta["params"]:,} parameters), dense training {meta["dense_iters"]} steps '
           f'(batch {BATCH}); every row {meta["budget"]} fine-tuning steps in total (MVQ/'
           f'prune_vq "+ sparse": {meta["budget"] // 2} sparse + {meta["budget"] // 2} '
           f'codebook), SGD lr {meta["lr"]} momentum 0.9 cosine, int8 codebooks throughout; '
           f'KD: logits, T=1, weight 1 plus the label loss; data-aware: 8 calibration '
           f'batches; seeds {meta["seeds"]}. Top-1 on the 10k test images, mean [min, max] '
           'over seeds.  ',
           f'Layout: `{meta.get("layout", "legacy")}` ('
           + ('sub-vectors of output channels, LSQ int8 codebook scale, k-means stops when '
              'fewer than 0.1 % of assignments change; the "(in_channel)" rows take '
              'sub-vectors along the input channel, all else equal'
              if meta.get('layout') == 'paper' else
              'sub-vectors along the input channel, max-abs int8 codebook scale, k-means stops '
              'on the relative objective decrease')
           + f'); sparse phase: {meta.get("sparse_method", "fixed")}.', '']
    if meta.get('plot'):
        out += [f'![top-1 against compression ratio]({meta["plot"]})', '']
    out += ['## Reading', '', *reading(summary), '']
    for p in summary['points']:
        out += [f'## {p["ratio"]:.1f}x (MVQ 2:8 accounted bits {p["bits"]["2:8"]:,})', '',
                '| row | setting | ratio | MMACs | after pruning | after sparse FT | '
                'right after clustering | after fine-tuning |',
                '|---|---|---:|---:|---|---|---|---|']
        for row, v in p['rows'].items():
            c = v['columns']
            sparse = fmt_stat(c.get('sparse_finetuned')) if ROWS[row][2] else '-'
            out.append(f'| {row} | {v["setting"]} | {v["ratio"]:.1f}x | '
                       f'{v["macs"] / 1e6:.2f} | {fmt_stat(c.get("pruned"))} | {sparse} | '
                       f'{fmt_stat(c.get("clustered"))} | {fmt_stat(c.get("finetuned"))} |')
        out += ['', f'Dense: {p["macs"]["dense"] / 1e6:.2f} MMACs. ' + ' '.join(
            f'No {k} row: {why}.' for k, why in p['missing'].items()), '',
            'Loss against the dense control (points): pruning (after sparse FT, or one-shot), '
            'clustering, what fine-tuning recovers, net. Rows without a sparse phase measure '
            '"pruning" right after pruning, so for them (and for vq, which prunes nothing) it '
            'includes what the control gained from its extra training'
            + (f' ({summary["dense_control"]["mean"] - summary["dense_top1"]:+.2f} points)'
               if summary['dense_control'] else '') + ':', '',
            '| row | pruning | clustering | recovered | net |', '|---|---:|---:|---:|---:|']
        for row, v in p['rows'].items():
            d = v['decomposition']
            out.append(f'| {row} | {d["pruning"]:.2f} | {d["clustering"]:.2f} | '
                       f'{d["recovered"]:.2f} | {d["net"]:.2f} |')
        out.append('')
    cost = meta.get('kd_cost')
    if cost:
        out += ['## What self-distillation costs', '',
                f'Teacher memory: {cost["teacher_bytes"] / 2**20:.2f} MiB (one fp32 copy of '
                f'the dense model and its buffers). Training step (batch {BATCH}, sparse and '
                f'codebook phases): {cost["with_kd_s"] * 1e3:.1f} ms with KD vs '
                f'{cost["without_kd_s"] * 1e3:.1f} ms without, {cost["ratio"]:.2f}x '
                f'(measured side by side in this run, {cost["repeats"]} alternating repeats of '
                f'{cost["steps"]} steps each; torch threads as in the machine line).', '']
    return '\n'.join(out)


#: The series of :func:`plot_fig13`: ``{label: row}``.
FIG13_SERIES = {'MVQ 2:8 out_channel (+ sparse)': 'mvq 2:8 + sparse',
                'MVQ 2:8 in_channel (+ sparse)': 'mvq 2:8 + sparse (in_channel)',
                'MVQ 4:8 out_channel (+ sparse)': 'mvq 4:8 + sparse',
                'MVQ 4:8 in_channel (+ sparse)': 'mvq 4:8 + sparse (in_channel)',
                'VQ': 'vq'}


def plot_fig13(summary: dict[str, Any], path: Path, meta: dict[str, Any]) -> Path | None:
    """The paper's Fig. 13 in form: top-1 after fine-tuning against compression ratio, one
    line per :data:`FIG13_SERIES` (mean, min-max bars over seeds), the dense control dashed.

    Returns:
        ``path``, or ``None`` when no series has a point.
    """
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = 0
    for label, row in FIG13_SERIES.items():
        pts = sorted((p['rows'][row]['ratio'], p['rows'][row]['columns']['finetuned'])
                     for p in summary['points'] if row in p['rows'])
        if not pts:
            continue
        x = [r for r, _ in pts]
        y = [c['mean'] for _, c in pts]
        err = [[c['mean'] - c['min'] for _, c in pts], [c['max'] - c['mean'] for _, c in pts]]
        ax.errorbar(x, y, yerr=err, marker='o', capsize=3, label=label,
                    linestyle='--' if 'in_channel' in label else '-')
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    if summary['dense_control']:
        ax.axhline(summary['dense_control']['mean'], color='gray', linestyle=':',
                   label='dense control')
    ax.set_xlabel('compression ratio (accounted bits, x)')
    ax.set_ylabel('top-1 after fine-tuning (%)')
    ax.set_title(f'ResNet-18 width {meta["width"]}, Fashion-MNIST: top-1 vs compression '
                 f'({len(meta["seeds"])} seeds)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    add_setting_args(p)
    p.add_argument('--points', type=int, nargs='+', default=[0, 2, 4],
                   help='indices into common.POINTS')
    p.add_argument('--rows', nargs='+', default=None, choices=list(ROWS), metavar='ROW',
                   help='rows to run (default: all of the layout)')
    p.add_argument('--kd-cost-steps', type=int, default=40,
                   help='steps of the side-by-side distillation cost measurement')
    p.add_argument('--layout', default='paper', choices=sorted(LAYOUTS),
                   help="'paper': out_channel sub-vectors, LSQ scale (default); 'legacy': the "
                        'committed mvq_recipe_legacy report')
    p.add_argument('--sparse-method', default=None, choices=('srste', 'fixed'),
                   help="the sparse phase (default: 'srste' in the paper layout, 'fixed' in "
                        'the legacy one)')
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = [r for r in ROWS if args.layout == 'paper' or r not in IN_CHANNEL_ROWS]
    if args.sparse_method is None:
        args.sparse_method = 'srste' if args.layout == 'paper' else 'fixed'
    if args.layout == 'legacy' and set(args.rows) & set(IN_CHANNEL_ROWS):
        p.error(f'rows {list(IN_CHANNEL_ROWS)} need --layout paper (in the legacy layout every '
                'row is in_channel already)')
    return args


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    work = Path(args.work_dir)
    dense_state, dense_top1 = dense_start(args)
    points = matched_points(args.width, args.layout)
    tag = f'w{args.width}_d{args.dense_iters}_b{args.budget}_lr{args.lr}_k{args.kmeans_iters}'
    if args.layout != 'legacy':
        tag += f'_{args.layout}_{args.sparse_method}'
    records, ran = [], 0
    for seed in args.seeds:
        cache = work / tag / f'control_s{seed}.json'
        ran += not cache.is_file() or args.fresh
        records.append(run_row(None, None, seed, args, dense_state, cache))
        for pi in args.points:
            for ri, row in enumerate(ROWS):
                if row not in args.rows:
                    continue
                cache = work / tag / f'p{pi}_r{ri}_s{seed}.json'  # ROWS only grows at its end
                fresh = not cache.is_file() or args.fresh
                rec = run_row(row, points[pi], seed, args, dense_state, cache)
                if rec is None:
                    continue
                ran += fresh
                rec['point'] = pi
                records.append(rec)
                print(f'[seed {seed}] {points[pi]["ratio"]:.1f}x {row}: '
                      f'{json.dumps(rec["top1"])} ({rec["wall_s"]:.0f} s)', flush=True)
    summary = summarize(records, {i: points[i] for i in args.points}, dense_top1)
    model = build_model(args.width)
    meta = dict(command=command_line(__file__, argv),
                machine=describe_machine(), wall_s=time.perf_counter() - start, runs=len(records),
                run_s=sum(r['wall_s'] for r in records),
                cached=len(records) - ran, width=args.width, dense_iters=args.dense_iters,
                budget=args.budget, lr=args.lr, seeds=args.seeds,
                params=sum(p.numel() for p in model.parameters()),
                layout=args.layout, sparse_method=args.sparse_method,
                kd_cost=measure_kd_cost(args.width, dense_state, points[args.points[0]],
                                        steps=args.kd_cost_steps, layout=args.layout))
    name = 'mvq_recipe' + ('_legacy' if args.layout == 'legacy' else '')
    plot = plot_fig13(summary, Path(args.out) / f'{name}_fig13.png', meta)
    meta['plot'] = plot.name if plot else None
    md = write_report(Path(args.out) / name, dict(meta=meta, summary=summary,
                                                  runs=records), markdown(meta, summary))
    print(md.read_text())
    return summary


if __name__ == '__main__':
    main()
