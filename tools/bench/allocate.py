"""Budget allocation vs uniform MVQ at equal accounted bits, on the recipe bench's Fashion-MNIST.

One run, side by side, every row with the same fine-tuning recipe and budget (``--budget``
steps at batch 128: half N:M-sparse fine-tuning, half codebook fine-tuning, logit
self-distillation from the dense model, int8 codebooks):

* per size point (the uniform MVQ 2:8 setting of ``common.POINTS[i]``): **uniform** (that
  setting on every layer) vs **allocated** (:func:`mvq_plugin.allocate` with
  ``Budget(bits=<uniform's accounted bits>)``: per layer dense, 2:8, 4:8 or vq, d in {8, 16},
  k from 4 to 256; sensitivities measured on 2 calibration batches);
* **energy budget**: the allocation at the energy the first point's uniform model takes on the
  64x64 MVQ array (one 28x28 image), realised energy reported against the target;
* **channel-pruned + MVQ**: Torch-Pruning removes ``--channel-ratio`` of the channels (L2
  magnitude, dependency graph), then the allocation at the first point's bits, vs MVQ alone
  at those bits (distilled from the same unpruned dense model);
* every row: top-1 on the 10k test images (mean [min, max] over seeds), accounted bits and
  ratio, energy (uJ) and cycles on the 64x64 MVQ array, effective MACs;
* ``--resnet50``: the time :func:`mvq_plugin.allocate` takes on torchvision's ResNet-50
  (sensitivity measurement included) with one 224x224 calibration batch of ImageNet photos.

    python tools/bench/allocate.py [--points 2 4] [--seeds 0 1 2] [--threads 2] [--resnet50]

The dense model is the recipe bench's (same work dir and file name, trained if missing).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from common import (  # same folder (tools/bench/common.py)
    POINTS,
    Data,
    add_setting_args,
    build_model,
    command_line,
    dense_start,
    describe_machine,
    fmt_stat,
    forward,
    resnet50,
    stat,
    write_json,
    write_report,
)
from imagenet_photos import eval_batch, list_photos, load_rgb
from matching import (
    LEGACY_LAYOUT,  # same folder
    accounted_bits,
)

from mvq_plugin import MVQConfig, allocate
from mvq_plugin.allocation import Budget, ChoiceSpace, SensitivityCache, realised_costs
from mvq_plugin.core.accounting import compression_stats, count_macs
from mvq_plugin.core.channels import prune_channels
from mvq_plugin.core.distill import DistillConfig
from mvq_plugin.core.recipe import MVQRecipe, run_recipe

HW = 'mvq_64x64'
INPUT = (1, 1, 28, 28)
#: Accounted bits of the unpruned dense model (set in main): every ratio is against it.
DENSE_BITS: list[float] = []
CHOICES = dict(nm=('2:8', '4:8', 'none'), block_size=(8, 16),
               num_codewords=(4, 8, 16, 32, 64, 128, 256), codebook_bits=(8,), dense=True)


def base_config(args: argparse.Namespace, seed: int = 0, **fields: Any) -> MVQConfig:
    return MVQConfig(**{**LEGACY_LAYOUT, **fields}, seed=seed, kmeans_iters=args.kmeans_iters,
                     codebook_bits=8)


def costs_of(model: torch.nn.Module) -> dict[str, float]:
    """Realised bits, energy, cycles (64x64 MVQ array) and effective MACs of a model."""
    out = realised_costs(model, ('bits', 'energy_pj', 'cycles'), hw=HW, input_shape=INPUT,
                         forward_fn=forward)
    stats = compression_stats(model, torch.zeros(INPUT))
    out.update(ratio=stats.compression_ratio, macs=stats.macs_effective)
    if DENSE_BITS:  # against the unpruned dense model (a channel-pruned one has fewer params)
        out['ratio'] = DENSE_BITS[0] / out['bits']
    return out


def run(label: str, model: torch.nn.Module, cfg: MVQConfig, seed: int, args, teacher,
        cache: Path) -> dict[str, Any]:
    """One recipe run of ``model`` (compressed in place), cached as JSON."""
    if cache.is_file() and not args.fresh:
        return json.loads(cache.read_text())
    torch.manual_seed(seed)
    data = Data(seed)
    recipe = MVQRecipe(iters=args.budget, sparse_iters=args.budget // 2, lr=args.lr,
                       distill=DistillConfig(), log_every=100)
    t0 = time.perf_counter()
    res = run_recipe(model, cfg, recipe, data.batches, evaluate=data.evaluate, teacher=teacher,
                     forward_fn=forward, stages=('clustered', 'finetuned'))
    record = dict(row=label, seed=seed, top1=res.to_dict()['top1'], **costs_of(model),
                  wall_s=time.perf_counter() - t0)
    write_json(cache, record)
    print(f'[seed {seed}] {label}: top-1 {record["top1"]["finetuned"]:.2f} '
          f'({record["ratio"]:.1f}x, {record["energy_pj"] * 1e-6:.3f} uJ, '
          f'{record["wall_s"]:.0f} s)', flush=True)
    return record


def allocation_record(alloc) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for c in alloc.choices.values():
        key = 'dense' if c.dense else (f'{c.n}:{c.m}' if c.prunes else 'vq')
        counts[key] = counts.get(key, 0) + 1
    return dict(limits=alloc.limits, predicted=alloc.predicted, distortion=alloc.distortion,
                info=alloc.info, kinds=counts, layers=alloc.records())


def time_resnet50(args) -> dict[str, Any]:
    """Seconds :func:`allocate` takes on torchvision's ResNet-50 (random weights: no ImageNet
    ResNet-50 file is available offline; the work does not depend on the values)."""
    model = resnet50().eval()
    batch = eval_batch(load_rgb(p.path) for p in list_photos()[:args.r50_images])
    space = dict(nm=('2:8', '4:8', 'none'), block_size=(8, 16), num_codewords=(64, 256))
    cache = SensitivityCache()
    t0 = time.perf_counter()
    alloc = allocate(model, dict(bytes='2.5MiB'), calib=[batch], choices=space, cache=cache,
                     base=MVQConfig(kmeans_iters=args.kmeans_iters, **LEGACY_LAYOUT))
    first = time.perf_counter() - t0
    t1 = time.perf_counter()
    allocate(model, dict(bytes='4MiB'), calib=[batch], choices=space, cache=cache,
             base=MVQConfig(kmeans_iters=args.kmeans_iters, **LEGACY_LAYOUT))
    return dict(seconds=first, layers=len(alloc.choices), measured=alloc.info['measured'],
                measure_s=alloc.info['seconds'], images=args.r50_images,
                choices_per_layer=max(len(v) for v in alloc.sensitivity.values()),
                second_budget_s=time.perf_counter() - t1, kmeans_iters=args.kmeans_iters)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    add_setting_args(p, threads=2)
    p.add_argument('--points', type=int, nargs='+', default=[2, 4],
                   help='indices into common.POINTS (the uniform 2:8 settings)')
    p.add_argument('--calib-batches', type=int, default=2)
    p.add_argument('--channel-ratio', type=float, default=0.25)
    p.add_argument('--resnet50', action='store_true', help='also time allocate on ResNet-50')
    p.add_argument('--r50-images', type=int, default=8)
    return p.parse_args(argv)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    start = time.perf_counter()
    work = Path(args.work_dir)
    dense_state, dense_top1 = dense_start(args)

    def dense_model() -> torch.nn.Module:
        model = build_model(args.width)
        model.load_state_dict(dense_state)
        return model.eval()

    teacher = dense_model()
    calib = Data(0).calib(args.calib_batches)
    cache = SensitivityCache(work / f'alloc_sensitivity_w{args.width}_{args.dense_iters}.json')
    tag = (f'alloc_w{args.width}_d{args.dense_iters}_b{args.budget}_lr{args.lr}'
           f'_k{args.kmeans_iters}')
    dense_costs = costs_of(dense_model())
    DENSE_BITS.append(dense_costs['bits'])
    points, records = [], []
    for pi in args.points:
        setting = POINTS[pi]
        target = accounted_bits(dense_model(), setting)
        t0 = time.perf_counter()
        alloc = allocate(dense_model(), Budget(bits=target), calib=calib, choices=CHOICES,
                         base=base_config(args), forward_fn=forward, cache=cache)
        point = dict(index=pi, uniform=setting.label, target_bits=target,
                     allocate_s=time.perf_counter() - t0, allocation=allocation_record(alloc))
        print(f'point {pi} ({setting.label}, {target:,} bits): allocated {alloc.info}\n{alloc}',
              flush=True)
        for seed in args.seeds:
            rows = [('uniform', base_config(args, seed, **setting.mvq_fields())),
                    ('allocated', alloc.config(base_config(args, seed)))]
            for label, cfg in rows:
                rec = run(f'{label} @ {setting.label}', dense_model(), cfg, seed, args,
                          teacher, work / tag / f'p{pi}_{label}_s{seed}.json')
                records.append(dict(rec, point=pi, kind=label))
        points.append(point)

    # Energy budget: the first point's uniform energy as the target.
    first = POINTS[args.points[0]]
    uniform_energy = statistics.fmean(r['energy_pj'] for r in records
                                      if r['point'] == args.points[0] and r['kind'] == 'uniform')
    e_alloc = allocate(dense_model(), Budget(energy_pj=uniform_energy, hw=HW, input_shape=INPUT),
                       calib=calib, choices=CHOICES, base=base_config(args), forward_fn=forward,
                       cache=cache)
    energy = dict(target_pj=uniform_energy, allocation=allocation_record(e_alloc))
    for seed in args.seeds:
        rec = run(f'energy-allocated @ {uniform_energy * 1e-6:.3f} uJ', dense_model(),
                  e_alloc.config(base_config(args, seed)), seed, args, teacher,
                  work / tag / f'energy_s{seed}.json')
        records.append(dict(rec, point='energy', kind='energy-allocated'))

    # Channel pruning first, then the allocation at the first point's bits.
    pruned = dense_model()
    cp = prune_channels(pruned, INPUT, args.channel_ratio, round_to=8, forward_fn=forward)
    pruned_state = copy.deepcopy(pruned)
    target = accounted_bits(dense_model(), first)
    cp_cache = SensitivityCache(work / f'alloc_sensitivity_cp{args.channel_ratio}_w{args.width}'
                                f'_{args.dense_iters}.json')
    cp_alloc = allocate(copy.deepcopy(pruned_state), Budget(bits=target), calib=calib,
                        choices=CHOICES, base=base_config(args), forward_fn=forward,
                        cache=cp_cache)
    channel = dict(ratio=args.channel_ratio, record={k: v for k, v in cp.to_dict().items()
                                                     if k != 'history'},
                   pruned_top1=Data(0).evaluate(pruned), target_bits=target,
                   allocation=allocation_record(cp_alloc))
    for seed in args.seeds:
        rec = run(f'channel-pruned {args.channel_ratio} + allocated @ {first.label}',
                  copy.deepcopy(pruned_state), cp_alloc.config(base_config(args, seed)), seed,
                  args, teacher, work / tag / f'cp{args.channel_ratio}_s{seed}.json')
        records.append(dict(rec, point='channel', kind='channel-pruned + allocated'))

    meta = dict(command=command_line(__file__, argv),
                machine=describe_machine(), wall_s=time.perf_counter() - start,
                width=args.width, dense_iters=args.dense_iters, dense_top1=dense_top1,
                budget=args.budget, lr=args.lr, seeds=args.seeds, hw=HW, input=list(INPUT),
                choices=ChoiceSpace(**CHOICES).to_dict(), dense_costs=dense_costs,
                calib_images=128 * args.calib_batches,
                dense_macs=sum(count_macs(teacher, torch.zeros(INPUT), forward).values()))
    if args.resnet50:
        meta['resnet50'] = time_resnet50(args)
        print(f'ResNet-50 allocation: {meta["resnet50"]}', flush=True)
    summary = summarize(records)
    result = dict(meta=meta, summary=summary, points=points, energy=energy, channel=channel,
                  runs=records)
    md = write_report(Path(args.out) / 'allocate', result, markdown(result))
    print(md.read_text())
    return result


def summarize(records: list[dict]) -> dict[str, Any]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r['row'], []).append(r)
    return {row: dict(top1=stat([r['top1']['finetuned'] for r in rs]),
                      clustered=stat([r['top1']['clustered'] for r in rs]),
                      bits=statistics.fmean(r['bits'] for r in rs),
                      ratio=statistics.fmean(r['ratio'] for r in rs),
                      energy_uj=statistics.fmean(r['energy_pj'] for r in rs) * 1e-6,
                      cycles=statistics.fmean(r['cycles'] for r in rs),
                      macs=statistics.fmean(r['macs'] for r in rs), point=rs[0]['point'],
                      kind=rs[0]['kind'], seeds=len(rs))
            for row, rs in groups.items()}


def reading(summary: dict[str, Any]) -> list[str]:
    """Sentences whose every figure comes from the summary, whichever way they fall."""
    lines = []
    by = {(s['point'], s['kind']): s for s in summary.values()}
    for point in sorted({s['point'] for s in summary.values() if isinstance(s['point'], int)}):
        uni, alloc = by.get((point, 'uniform')), by.get((point, 'allocated'))
        if not uni or not alloc:
            continue
        gap = alloc['top1']['mean'] - uni['top1']['mean']
        lines.append(
            f'- {uni["ratio"]:.1f}x (bits {alloc["bits"] / uni["bits"]:.4f} of uniform): '
            f'allocated {"beats" if gap > 0 else "loses to"} uniform by {abs(gap):.2f} points '
            f'after fine-tuning ({alloc["clustered"]["mean"] - uni["clustered"]["mean"]:+.2f} '
            f'right after clustering), but at equal bits it costs '
            f'{alloc["energy_uj"] / uni["energy_uj"]:.2f}x the energy, '
            f'{alloc["cycles"] / uni["cycles"]:.2f}x the cycles and '
            f'{alloc["macs"] / uni["macs"]:.2f}x the MACs: a size budget buys accuracy with '
            'unpruned (vq, 4:8) layers, which the sparse array runs slower.')
    first = min(p for p in (s['point'] for s in summary.values()) if isinstance(p, int))
    uni, alloc = by.get((first, 'uniform')), by.get((first, 'allocated'))
    energy, cp = by.get(('energy', 'energy-allocated')), by.get(
        ('channel', 'channel-pruned + allocated'))
    if uni and energy:
        lines.append(f'- At the uniform model\'s energy ({uni["energy_uj"]:.3f} uJ) the '
                     f'energy-budget allocation reaches {energy["top1"]["mean"]:.2f}% vs '
                     f'{uni["top1"]["mean"]:.2f}% at {energy["energy_uj"]:.3f} uJ, spending '
                     f'{energy["bits"] / uni["bits"]:.2f}x the bits.')
    if alloc and cp:
        helps = cp['top1']['mean'] > alloc['top1']['mean']
        lines.append(f'- Channel pruning first {"helps" if helps else "does not help"} '
                     f'accuracy here: {cp["top1"]["mean"]:.2f}% vs {alloc["top1"]["mean"]:.2f}% '
                     f'for the allocation alone at equal bits; energy '
                     f'{cp["energy_uj"] / alloc["energy_uj"]:.2f}x and MACs '
                     f'{cp["macs"] / alloc["macs"]:.2f}x of it.')
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The Markdown report."""
    meta, summary = result['meta'], result['summary']
    out = ['# Budget allocation vs uniform MVQ (Fashion-MNIST, mmpretrain ResNet-18)', '',
           f'Command: `{meta["command"]}`  ', f'Machine: {meta["machine"]}  ',
           f'Wall time {meta["wall_s"] / 60:.1f} min without the ResNet-50 timing (runs cached '
           'in the work dir are reused unless --fresh).  ',
           f'Model: width {meta["width"]}, dense {meta["dense_top1"]:.2f}% after '
           f'{meta["dense_iters"]} steps. Every row: {meta["budget"]} fine-tuning steps '
           f'({meta["budget"] // 2} N:M-sparse + {meta["budget"] // 2} codebook), logit '
           f'self-distillation from the dense model, int8 codebooks, SGD lr {meta["lr"]}; '
           f'seeds {meta["seeds"]}; top-1 on the 10k test images, mean [min, max]. '
           f'Allocation choices per layer: {meta["choices"]}; sensitivities: relative output '
           f'error on {meta["calib_images"]} training images. Energy and cycles: one '
           f'{"x".join(map(str, meta["input"]))} inference on the {meta["hw"]} array '
           f'(the dense model: {meta["dense_costs"]["energy_pj"] * 1e-6:.3f} uJ, '
           f'{meta["dense_costs"]["cycles"]:,.0f} cycles on that array). Ratios are against the '
           'unpruned dense model\'s 32-bit parameters.', '',
           '| row | top-1 after fine-tuning | right after clustering | accounted bits | '
           'ratio | energy (uJ) | cycles | MMACs |', '|---|---|---|---:|---:|---:|---:|---:|']
    for row, s in summary.items():
        out.append(f'| {row} | {fmt_stat(s["top1"])} | {fmt_stat(s["clustered"])} | '
                   f'{s["bits"]:,.0f} | {s["ratio"]:.1f}x | {s["energy_uj"]:.3f} | '
                   f'{s["cycles"]:,.0f} | {s["macs"] / 1e6:.2f} |')
    out += ['', '## Reading', '', *reading(summary), '', '## Allocations', '']
    for p in result['points']:
        a = p['allocation']
        used = a['predicted']['bits'] / p['target_bits']
        out.append(f'- {p["uniform"]} budget {p["target_bits"]:,} bits: allocated '
                   f'{a["predicted"]["bits"]:,.0f} bits ({used:.4f} of the budget), layers '
                   f'{a["kinds"]}, allocate took {p["allocate_s"]:.1f} s '
                   f'({a["info"]["measured"]} measured, {a["info"]["reused"]} reused).')
    e = result['energy']
    realised = [r['energy_pj'] for r in result['runs'] if r['kind'] == 'energy-allocated']
    out.append(f'- Energy budget {e["target_pj"] * 1e-6:.4f} uJ: predicted '
               f'{e["allocation"]["predicted"]["energy_pj"] * 1e-6:.4f} uJ, realised '
               f'{max(realised) * 1e-6:.4f} uJ (largest over seeds; '
               f'{"at or under" if max(realised) <= e["target_pj"] else "OVER"} the target), '
               f'layers {e["allocation"]["kinds"]}.')
    c = result['channel']
    rec = c['record']
    out.append(f'- Channel pruning {c["ratio"]:.0%} (Torch-Pruning, L2, round to 8): params '
               f'{rec["params_before"]:,} -> {rec["params_after"]:,}, MACs '
               f'{rec["macs_before"] / 1e6:.2f}M -> {rec["macs_after"] / 1e6:.2f}M, top-1 right '
               f'after pruning {c["pruned_top1"]:.2f}%; then allocated at {c["target_bits"]:,} '
               f'bits: layers {c["allocation"]["kinds"]}.')
    if 'resnet50' in meta:
        r = meta['resnet50']
        out.append(f'- Allocating a ResNet-50 ({r["layers"]} candidate layers, up to '
                   f'{r["choices_per_layer"]} choices each, {r["measured"]} measurements on '
                   f'{r["images"]} 224x224 images, k-means {r["kmeans_iters"]} iterations): '
                   f'{r["seconds"]:.0f} s, of which {r["measure_s"]:.0f} s measuring; a second '
                   f'budget on the cache: {r["second_budget_s"]:.1f} s.')
    return '\n'.join(out) + '\n'


if __name__ == '__main__':
    main()
