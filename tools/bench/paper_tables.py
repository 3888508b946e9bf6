#!/usr/bin/env python
"""The paper's Tables 1, 3 and 5 in form, on full-width ResNet-18 and real Fashion-MNIST.

Model: mmpretrain's ResNet-18 of the demo config at full width (base width 64, 11.2M
parameters), trained dense from random init (``--dense-iters``, resumable). Every compressed
row then gets the same fine-tuning budget (``--budget`` steps in all, split into a sparse phase
and a codebook phase where the row prunes; plain VQ spends its first half fine-tuning densely),
over ``--seeds``; a dense control gets the same budget.

* Table 1 (no fine-tuning, plain k-means k=512, d=8 along the output channel): only the
  important 25 % of each layer's weights (top-2-of-8 magnitude) replaced by their VQ values,
  versus only the other 75 %: SSE and top-1.
* Table 3 (ablation at ~22x): A dense W + plain k-means (k=1024, d=8) + dense reconstruction;
  B sparse W (2:8 fixed-mask phase) + plain k-means (k=1024, d=8) + dense reconstruction; C
  sparse W (4:16) + plain k-means (k=512, d=16) + sparse reconstruction; D MVQ (4:16, d=16,
  k=512, SR-STE). C and D in both layouts. Columns: total and mask SSE after clustering,
  effective MACs, compression ratio, top-1 after the budget.
* Table 5: SSE and top-1 of MVQ (D) against plain VQ (A), at ~22x.
* Also: SR-STE versus a fixed mask (D, same budget), out_channel versus in_channel (C, D).

Resumable: the dense model (checkpointed while it trains) and every finished row (one JSON per
row and seed in the work dir) are kept; a rerun continues. ``--out`` gets
``paper_tables.{json,md}`` (rows still missing are listed as such).

    python tools/bench/paper_tables.py --threads 2
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    Data,
    add_setting_args,
    build_model,
    command_line,
    dense_start,
    describe_machine,
    fmt_stat,
    forward,
    stat,
    write_report,
)

import mvq_plugin as mvq
from mvq_plugin.core import blocking, masked_kmeans, nm_mask
from mvq_plugin.core.recipe import MVQRecipe, finetune_dense, run_recipe

#: ``row: (MVQConfig fields, sparse method or None (no sparse phase), dense reconstruction)``.
ROWS: dict[str, tuple[dict[str, Any], str | None, bool]] = {
    'A: dense W, VQ k1024 d8, dense recon': (dict(preset='resnet_common_vq'), None, False),
    'B: sparse W, VQ k1024 d8, dense recon': (
        dict(preset='resnet_common_vq', method='prune_vq', n=2, m=8), 'fixed', True),
    'C: sparse W, VQ k512 d16, sparse recon': (dict(preset='resnet', method='prune_vq'),
                                               'fixed', False),
    'C in_channel': (dict(preset='resnet_in_channel', method='prune_vq'), 'fixed', False),
    'D: MVQ (SR-STE)': (dict(preset='resnet'), 'srste', False),
    'D: MVQ (fixed mask)': (dict(preset='resnet'), 'fixed', False),
    'D in_channel (SR-STE)': (dict(preset='resnet_in_channel'), 'srste', False),
}
DENSE_ROW = 'dense control (same budget)'
#: The paper's Table 3 / Table 5 rows (ResNet-18, ImageNet): total SSE, mask SSE, GFLOPs, top-1.
PAPER = {'A': (1153, 463, 1.81, 66.5), 'B': (518, 498, 1.81, 67.3), 'C': (1840, 1840, 0.54, 61.1),
         'D': (251, 251, 0.54, 68.8), 'FP': (None, None, 1.81, 69.7)}
PAPER_T1 = {'important 25 % replaced': (576, 5.8), 'unimportant 75 % replaced': (623, 37.46)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_setting_args(p, threads=2)
    p.set_defaults(width=64, dense_iters=3000, budget=400, work_dir='work_dirs/bench_paper',
                   out='work_dirs/bench_paper/results')
    p.add_argument('--rows', nargs='+', default=[DENSE_ROW, *ROWS], help='rows to run')
    p.add_argument('--table1', action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def _reference(q, original: torch.Tensor) -> torch.Tensor:
    """The weights the clustering approximated: the sparse weights where the row prunes."""
    keep = blocking.from_subvectors(q.mask, original.shape, q.vector_axis)
    return original * keep


def _sse(model: torch.nn.Module) -> dict[str, float]:
    """Total and mask SSE over the compressed layers, right after clustering."""
    total = masked = 0.0
    with torch.no_grad():
        for name, q in mvq.quantized_layers(model).items():
            module = model.get_submodule(name)
            original = module.parametrizations.weight.original
            ref = _reference(q, original)
            diff = blocking.to_subvectors(ref - module.weight, q.block_size, q.vector_axis)
            if q.prunes:
                keep = q.mask
            else:  # the positions a 25 %-density N:M mask of the reference keeps
                m = 8 if q.block_size % 16 else 16
                keep = nm_mask(blocking.to_subvectors(ref, q.block_size,
                                                      q.vector_axis).abs(), m // 4, m)
            total += float(diff.pow(2).sum())
            masked += float((diff * keep).pow(2).sum())
    return dict(total=total, mask=masked)


def _to_dense_reconstruction(model: torch.nn.Module) -> None:
    """Row B: the codewords clustered on zero-filled sparse weights, reconstructed densely (no
    mask is stored: the layer becomes plain VQ)."""
    with torch.no_grad():
        for q in mvq.quantized_layers(model).values():
            q.mask.fill_(True)
            q.method, q.n = 'vq', q.m


def run_row(row: str, seed: int, dense_state: dict, args: argparse.Namespace) -> dict:
    data = Data(seed)
    torch.manual_seed(seed)
    model = build_model(args.width)
    model.load_state_dict(dense_state)
    example = data.xt[:1]
    t0 = time.perf_counter()
    if row == DENSE_ROW:
        recipe = MVQRecipe(iters=args.budget, lr=args.lr, log_every=100)
        res = finetune_dense(model, recipe, data.batches, evaluate=data.evaluate,
                             forward_fn=forward)
        return dict(top1=res.top1['finetuned'], start=res.top1['dense'], ratio=1.0,
                    macs=mvq.compression_stats(model, example).macs_dense,
                    seconds=time.perf_counter() - t0)
    fields, sparse, dense_recon = ROWS[row]
    cfg = mvq.core.presets.config_from(dict(fields, seed=seed, kmeans_iters=args.kmeans_iters))
    sparse_iters = args.budget // 2 if sparse else 0
    recipe = MVQRecipe(iters=args.budget, sparse_iters=sparse_iters,
                       sparse_method=sparse or 'fixed', lr=args.lr, log_every=100)
    sse: dict[str, float] = {}

    def on_event(event) -> None:
        if event.name == 'clustered':
            if dense_recon:
                _to_dense_reconstruction(model)
            sse.update(_sse(model))

    res = run_recipe(model, cfg, recipe, data.batches, evaluate=data.evaluate,
                     forward_fn=forward, stages=('clustered', 'finetuned'), on_event=on_event)
    stats = mvq.compression_stats(model, example)
    return dict(top1=res.top1['finetuned'], clustered=res.top1['clustered'],
                sse_total=sse['total'], sse_mask=sse['mask'], ratio=stats.compression_ratio,
                bits=stats.bits, macs=stats.macs_effective, macs_dense=stats.macs_dense,
                events=res.events, seconds=time.perf_counter() - t0)


def table1(dense_state: dict, args: argparse.Namespace) -> dict:
    """Plain k-means (k=512, d=8, out_channel) of every compressible layer; only the important
    (top-2-of-8) or only the unimportant weights take their VQ values; no fine-tuning."""
    data = Data(0)
    cfg = mvq.MVQConfig(method='vq', block_size=8, num_codewords=512, vector_axis='out_channel',
                        kmeans_iters=args.kmeans_iters)
    base = build_model(args.width)
    base.load_state_dict(dense_state)
    out = {}
    for case in PAPER_T1:
        model = copy.deepcopy(base)
        sse = 0.0
        with torch.no_grad():
            for i, lp in enumerate(mvq.plan(model, cfg).compressed):
                w = model.get_submodule(lp.name).weight
                x = blocking.to_subvectors(w, 8, 'out_channel')
                res = masked_kmeans(x, None, 512, iters=args.kmeans_iters, seed=i)
                x_hat = res.codebook[res.assignments]
                important = nm_mask(x.abs(), 2, 8)
                replace = important if case.startswith('important') else ~important
                new = torch.where(replace, x_hat, x)
                sse += float((new - x).pow(2).sum())
                w.copy_(blocking.from_subvectors(new, w.shape, 'out_channel'))
        out[case] = dict(sse=sse, top1=data.evaluate(model))
        print(f'table 1: {case}: SSE {sse:.1f}, top-1 {out[case]["top1"]:.2f}', flush=True)
    return out


def markdown(result: dict) -> str:
    lines = ['# The paper\'s Tables 1, 3 and 5 in form: full-width ResNet-18, Fashion-MNIST', '',
             f'- machine: {result["machine"]}', f'- command: `{result["command"]}`',
             f'- dense: {result["dense_top1"]:.2f} % after {result["dense_iters"]} steps; every '
             f'row fine-tunes {result["budget"]} steps; seeds {result["seeds"]}; mean '
             '[min, max]', '- the paper\'s numbers (ResNet-18, ImageNet) are for shape only: '
             'different data, different model width in the classifier', '']
    if result.get('table1'):
        lines += ['## Table 1 (no fine-tuning; plain k-means k=512, d=8)', '',
                  '| case | SSE | top-1 | paper SSE | paper top-1 |', '|---|---:|---:|---:|---:|']
        for case, r in result['table1'].items():
            lines.append(f'| {case} | {r["sse"]:.1f} | {r["top1"]:.2f} | {PAPER_T1[case][0]} | '
                         f'{PAPER_T1[case][1]} |')
        lines.append('')
    lines += ['## Table 3 (ablation at ~22x) and Table 5', '',
              '| row | CR | total SSE | mask SSE | MMACs | top-1 after clustering | top-1 | '
              'paper (SSE total/mask, GFLOPs, top-1) |', '|---|---:|---:|---:|---:|---:|---:|---|']
    for row, runs in result['rows'].items():
        if not runs:
            lines.append(f'| {row} | not run yet | | | | | | |')
            continue
        key = row[0] if row[0] in PAPER and row[1] == ':' else None
        paper = PAPER.get(key) if key else None
        def pick(key: str) -> dict[str, float] | None:
            return stat([r[key] for r in runs]) if key in runs[0] else None

        lines.append(
            f'| {row} | {runs[0]["ratio"]:.1f}x | {fmt_stat(pick("sse_total"))} | '
            f'{fmt_stat(pick("sse_mask"))} | {runs[0]["macs"] / 1e6:.0f} | '
            f'{fmt_stat(pick("clustered"))} | {fmt_stat(pick("top1"))} | '
            f'{paper if paper else ""} |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = Path(args.work_dir)
    rows_dir = work / 'rows'
    rows_dir.mkdir(parents=True, exist_ok=True)
    dense_state, dense_top1 = dense_start(args)
    t1_path = rows_dir / 'table1.json'
    if args.table1 and not t1_path.is_file():
        t1_path.write_text(json.dumps(table1(dense_state, args), indent=1))
    result: dict[str, Any] = dict(machine=describe_machine(),
                                  command=command_line(__file__, sys.argv[1:] if argv is None
                                                       else argv),
                                  dense_top1=dense_top1, dense_iters=args.dense_iters,
                                  budget=args.budget, seeds=args.seeds, rows={},
                                  table1=json.loads(t1_path.read_text())
                                  if t1_path.is_file() else None)
    for row in args.rows:
        if row != DENSE_ROW and row not in ROWS:
            raise SystemExit(f'--rows: {row!r} is not a row; allowed: {[DENSE_ROW, *ROWS]}')
        runs = []
        for seed in args.seeds:
            path = rows_dir / f'{re.sub("[^a-z0-9]+", "_", row.lower()).strip("_")}_s{seed}.json'
            if not path.is_file():
                print(f'== {row}, seed {seed}', flush=True)
                path.write_text(json.dumps(run_row(row, seed, dense_state, args), indent=1))
            runs.append(json.loads(path.read_text()))
        result['rows'][row] = runs
        write_report(Path(args.out) / 'paper_tables', result, markdown(result))
    return result


if __name__ == '__main__':
    main()
