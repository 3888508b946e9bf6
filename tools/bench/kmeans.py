"""k-means speed and quality: mvq_plugin's masked k-means vs faiss-cpu, side by side.

Data: the sub-vectors (d=8) of every ResNet-50 layer except the stem conv (torchvision
architecture, its default random init: no weights are downloaded), about 3.2M vectors, along
each ``--axes`` entry side by side: ``in_channel`` (this project's first layout) and
``out_channel`` (the paper's: d consecutive output channels), with the ``--nm`` mask drawn
along the same axis. Both run on the same data with the same k, iterations and thread count;
faiss is told to use every point (``max_points_per_centroid`` large) so that neither subsamples.

Prints time ratios (ours / faiss) and final-objective ratios, plus the wall time of a whole
ResNet-50 MVQ compression (per-layer masked k-means, 50 iterations).

``--scaling`` adds how the cost grows: masked 2:8 k-means (d=8, 10 iterations, random init,
fastest of 2 runs) on seeded Gaussian vectors for n = 0.1M, 1M, 10M at k=256 and
k = 256, 1024, 4096 at n=1M, each in a fresh process: seconds per iteration (set-up apart),
seconds per iteration per (n*k), and the peak RSS during the run above the process's RSS once
the data exist (so the table shows what memory grows with: the data, not n*k).

    python tools/bench/kmeans.py [--iters 20] [--k 256] [--threads 2] [--rounds 3] [--scaling]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import faiss
import numpy as np
import torch
from common import (  # same folder (tools/bench/common.py)
    best_of,
    describe_machine,
    resnet50,
    set_threads,
    timed,
    write_json,
)
from matching import LAYOUTS  # same folder

import mvq_plugin as mvq
from mvq_plugin.core import kmeans as km
from mvq_plugin.core import search
from mvq_plugin.core.blocking import to_subvectors
from mvq_plugin.core.config import nm_pattern

AXES = ('in_channel', 'out_channel')


def resnet50_subvectors(d: int, axis: str = 'in_channel') -> torch.Tensor:
    """Sub-vectors of ``d`` weights along ``axis`` of ResNet-50's layers but the stem; the
    layers are those whose input and output channels both divide by ``d`` (every layer at
    d=8), so both axes cluster the same weights."""
    model = resnet50()
    rows = [to_subvectors(mod.weight.detach(), d, axis) for name, mod in model.named_modules()
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and name != 'conv1'
            and mod.weight.shape[0] % d == 0 and mod.weight.shape[1] % d == 0]
    return torch.cat(rows).contiguous()


def objective(x: torch.Tensor, mask, codebook: torch.Tensor) -> float:
    """Exact objective of a codebook (fresh exact assignment), so both sides are scored alike."""
    q = search.query_table(x * mask if mask is not None else x, mask)
    a, _ = search.assign(q, codebook, mask is not None, backend='faiss')
    return km.masked_sse(x, mask, codebook, a)


SCALING = [(100_000, 256), (1_000_000, 256), (10_000_000, 256), (1_000_000, 1024),
           (1_000_000, 4096)]


def _reset_peak_rss() -> None:
    """Resets this process's peak RSS (Linux ``clear_refs`` 5), so imports do not count."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _rss_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, in MiB."""
    with open('/proc/self/status') as f:
        line = next(row for row in f if row.startswith(field + ':'))
    return int(line.split()[1]) / 1024


def scaling_row(n: int, k: int, threads: int, iters: int = 10, repeats: int = 2) -> dict:
    """One (n, k) point, measured in this (fresh) process.

    Seconds per iteration are ``(t(iters) - t(0)) / iters``, each ``t`` the fastest of
    ``repeats`` runs, so the one-off set-up (pattern grouping, first search) is not spread over
    the iterations; it is reported apart.
    """
    set_threads(threads, faiss=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=gen)
    mask = mvq.core.nm_mask(x.abs(), 2, 8)

    def run(steps):
        return best_of(lambda: mvq.core.masked_kmeans(x, mask, k, iters=steps, tol=0.0,
                                                     init='random', seed=0), repeats)[1]

    setup = run(0)
    base = _rss_mib('VmRSS')
    _reset_peak_rss()
    t = run(iters)
    per_iter = (t - setup) / iters
    return dict(n=n, k=k, iters=iters, setup_seconds=setup, seconds=t, s_per_iter=per_iter,
                ns_per_iter_per_nk=1e9 * per_iter / (n * k),
                data_mib=(x.numel() * 4 + mask.numel()) / 2**20,
                peak_above_data_mib=_rss_mib('VmHWM') - base)


def scaling(threads: int) -> list[dict]:
    rows = []
    for n, k in SCALING:
        out = subprocess.run([sys.executable, __file__, '--scaling-row', str(n), str(k),
                              '--threads', str(threads)], capture_output=True, text=True,
                             check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f'n={n:>10,} k={k:5d}: {r["s_per_iter"]:7.3f} s/iter (set-up '
              f'{r["setup_seconds"]:.2f} s), '
              f'{r["ns_per_iter_per_nk"]:.3f} ns per n*k, peak +{r["peak_above_data_mib"]:.0f} MiB '
              f'over {r["data_mib"]:.0f} MiB of data', flush=True)
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--k', type=int, default=256)
    p.add_argument('--d', type=int, default=8)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--rounds', type=int, default=3,
                   help='interleaved faiss/ours rounds (ratios: median and range)')
    p.add_argument('--skip-compress', action='store_true')
    p.add_argument('--scaling', action='store_true', help='add the (n, k) scaling table')
    p.add_argument('--scaling-row', type=int, nargs=2, metavar=('N', 'K'),
                   help=argparse.SUPPRESS)  # one point, in a fresh process
    p.add_argument('--axes', nargs='+', default=list(AXES), choices=AXES,
                   help='sub-vector layouts, side by side (default: both)')
    p.add_argument('--nm', type=nm_pattern, default=(2, 8), help='N:M of the masked rows')
    p.add_argument('--out', default=None)
    args = p.parse_args(argv)
    if args.scaling_row:
        print(json.dumps(scaling_row(*args.scaling_row, args.threads)))
        return {}
    set_threads(args.threads, faiss=True)

    nn_, mm_ = args.nm
    cfg = mvq.MVQConfig(block_size=args.d, num_codewords=args.k, n=nn_, m=mm_, kmeans_iters=50,
                        seed=args.seed, **LAYOUTS['legacy' if args.axes[0] == 'in_channel'
                                                 else 'paper'])
    rows, faiss_times, compress, sizes = {}, {}, [], {}
    for axis in args.axes:
        x = resnet50_subvectors(args.d, axis)
        mask = mvq.core.nm_mask(x.abs(), nn_, mm_)
        n = sizes[axis] = x.shape[0]
        print(f'ResNet-50 {axis} sub-vectors: n={n:,}, d={args.d}, k={args.k}, '
              f'iters={args.iters}, threads={args.threads}', flush=True)

        def run_faiss():
            kmf = faiss.Kmeans(args.d, args.k, niter=args.iters, seed=args.seed + 1,
                               max_points_per_centroid=n, verbose=False)
            kmf.train(x.numpy())
            return torch.from_numpy(kmf.centroids)

        def run_ours(m_, backend):
            return timed(lambda: mvq.core.masked_kmeans(x, m_, args.k, iters=args.iters,
                                                        tol=0.0, init='random', seed=args.seed,
                                                        backend=backend))

        cases = [('plain (faiss search)', None, 'faiss'),
                 (f'masked {nn_}:{mm_} (faiss search)', mask, 'faiss'),
                 ('plain (torch GEMM)', None, 'torch'),
                 (f'masked {nn_}:{mm_} (torch GEMM)', mask, 'torch')]
        # Rounds interleave faiss and ours, so each ratio compares runs seconds apart; the slow
        # torch-GEMM rows run in the first round only.
        for round_ in range(args.rounds):
            c_faiss, t_faiss = timed(run_faiss)
            faiss_times.setdefault(axis, []).append(t_faiss)
            for label, m_, backend in cases:
                if backend == 'torch' and round_:
                    continue
                res, t = run_ours(m_, backend)
                row = rows.setdefault(f'{axis}: {label}', dict(seconds=[], ratios=[]))
                row['seconds'].append(t)
                row['ratios'].append(t / t_faiss)
                if round_ == 0:
                    ours = objective(x, m_, res.codebook)
                    ref = objective(x, m_, c_faiss)  # faiss's plain centroids, same objective
                    row.update(objective=ours, objective_ratio_vs_faiss=ours / ref)
            if not args.skip_compress and axis == args.axes[0]:
                report, t = timed(lambda: mvq.compress(resnet50(), cfg))
                compress.append(dict(seconds=t, ratio_vs_faiss=t / t_faiss,
                                     layers=len(report.layers),
                                     iterations=sum(r.iterations for r in report.layers)))
    for row in rows.values():
        row['time_ratio_vs_faiss_plain'] = statistics.median(row['ratios'])
    result = dict(n=sizes, nm=list(args.nm), d=args.d, k=args.k, iters=args.iters,
                  threads=args.threads, axes=args.axes,
                  rounds=args.rounds, faiss_seconds=faiss_times, runs=rows)
    if compress:
        result['resnet50_compress'] = dict(
            runs=compress, seconds=statistics.median(c['seconds'] for c in compress))

    if args.scaling:
        result['scaling'] = scaling(args.threads)
    result['machine'] = describe_machine()
    print(f'\n{result["machine"]}')
    for axis, times in faiss_times.items():
        print(f'faiss Kmeans (plain, all points), {axis}, per round: '
              f'{", ".join(f"{t:.2f}" for t in times)} s')
    print(f'{"ours":42s} {"time / faiss (median [range] over rounds)":>44s} '
          f'{"objective / faiss":>18s}')
    for label, r in rows.items():
        span = f'[{min(r["ratios"]):.2f}, {max(r["ratios"]):.2f}]'
        print(f'{label:42s} {r["time_ratio_vs_faiss_plain"]:30.2f} {span:>13s} '
              f'{r["objective_ratio_vs_faiss"]:18.4f}')
    if compress:
        per_round = ', '.join(f'{c["seconds"]:.1f}' for c in compress)
        print(f'\nwhole ResNet-50 MVQ compression ({args.axes[0]}, {nn_}:{mm_}, k={args.k}, '
              f'<=50 iters, {compress[0]["layers"]} layers), per round: '
              f'{per_round} s')
    if args.out:
        write_json(args.out, result, indent=2)
    return result


if __name__ == '__main__':
    np.random.seed(0)
    main()
