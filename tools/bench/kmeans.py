"""k-means speed and quality: mvq_plugin's masked k-means vs faiss-cpu, side by side.

Data: the in-channel sub-vectors (d=8) of every ResNet-50 layer except the stem conv
(torchvision architecture, its default random init: no weights are downloaded), about 3.2M
vectors. Both run on the same data with the same k, iterations and thread count; faiss is
told to use every point (``max_points_per_centroid`` large) so that neither subsamples.

Prints time ratios (ours / faiss) and final-objective ratios, plus the wall time of a whole
ResNet-50 MVQ compression (per-layer masked k-means, 50 iterations).

``--scaling`` adds how the cost grows: masked 2:8 k-means (d=8, 2 iterations, random init) on
seeded Gaussian vectors for n = 0.1M, 1M, 10M at k=256 and k = 256, 1024, 4096 at n=1M, each
in a fresh process: seconds per iteration, seconds per iteration per (n*k), and the peak RSS
above the process's RSS once the data exist (so the table shows memory bounded by the search
chunks, not by n*k).

    python tools/bench/kmeans.py [--iters 20] [--k 256] [--threads 2] [--scaling]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import faiss
import numpy as np
import torch
import torchvision

import mvq_plugin as mvq
from mvq_plugin.core import kmeans as km
from mvq_plugin.core import search
from mvq_plugin.core.blocking import to_subvectors
from mvq_plugin.machine import describe_machine


def resnet50_subvectors(d: int) -> torch.Tensor:
    torch.manual_seed(0)  # the same random init every run
    model = torchvision.models.resnet50()
    rows = [to_subvectors(mod.weight.detach(), d) for name, mod in model.named_modules()
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and name != 'conv1']
    return torch.cat(rows).contiguous()


def objective(x: torch.Tensor, mask, codebook: torch.Tensor) -> float:
    """Exact objective of a codebook (fresh exact assignment), so both sides are scored alike."""
    q = search.query_table(x * mask if mask is not None else x, mask)
    a, _ = search.assign(q, codebook, mask is not None, backend='faiss')
    return km.masked_sse(x, mask, codebook, a)


SCALING = [(100_000, 256), (1_000_000, 256), (10_000_000, 256), (1_000_000, 1024),
           (1_000_000, 4096)]


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def scaling_row(n: int, k: int, threads: int, iters: int = 2) -> dict:
    """One (n, k) point, measured in this (fresh) process."""
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=gen)
    mask = mvq.core.nm_mask(x.abs(), 2, 8)
    base = _current_rss_mib()
    res, t = timed(lambda: mvq.core.masked_kmeans(x, mask, k, iters=iters, tol=0.0,
                                                 init='random', seed=0))
    return dict(n=n, k=k, iters=res.iterations, seconds=t, s_per_iter=t / max(iters, 1),
                ns_per_iter_per_nk=1e9 * t / max(iters, 1) / (n * k),
                data_mib=(x.numel() * 4 + mask.numel()) / 2**20,
                peak_above_data_mib=_rss_mib() - base)


def scaling(threads: int) -> list[dict]:
    rows = []
    for n, k in SCALING:
        out = subprocess.run([sys.executable, __file__, '--scaling-row', str(n), str(k),
                              '--threads', str(threads)], capture_output=True, text=True,
                             check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f'n={n:>10,} k={k:5d}: {r["s_per_iter"]:7.2f} s/iter, '
              f'{r["ns_per_iter_per_nk"]:.3f} ns per n*k, peak +{r["peak_above_data_mib"]:.0f} MiB '
              f'over {r["data_mib"]:.0f} MiB of data', flush=True)
    return rows


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--k', type=int, default=256)
    p.add_argument('--d', type=int, default=8)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--skip-compress', action='store_true')
    p.add_argument('--scaling', action='store_true', help='add the (n, k) scaling table')
    p.add_argument('--scaling-row', type=int, nargs=2, metavar=('N', 'K'),
                   help=argparse.SUPPRESS)  # one point, in a fresh process
    p.add_argument('--out', default=None)
    args = p.parse_args(argv)
    if args.scaling_row:
        print(json.dumps(scaling_row(*args.scaling_row, args.threads)))
        return {}
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    x = resnet50_subvectors(args.d)
    mask = mvq.core.nm_mask(x.abs(), 2, 8)
    n = x.shape[0]
    print(f'ResNet-50 sub-vectors: n={n:,}, d={args.d}, k={args.k}, iters={args.iters}, '
          f'threads={args.threads}')

    def run_faiss():
        kmf = faiss.Kmeans(args.d, args.k, niter=args.iters, seed=args.seed + 1,
                           max_points_per_centroid=n, verbose=False)
        kmf.train(x.numpy())
        return torch.from_numpy(kmf.centroids)

    c_faiss, t_faiss = timed(run_faiss)
    rows = {}
    for label, m_, backend in [('plain (faiss search)', None, 'faiss'),
                               ('plain (torch GEMM)', None, 'torch'),
                               ('masked 2:8 (faiss search)', mask, 'faiss'),
                               ('masked 2:8 (torch GEMM)', mask, 'torch')]:
        res, t = timed(lambda: mvq.core.masked_kmeans(x, m_, args.k, iters=args.iters, tol=0.0,
                                                 init='random', seed=args.seed,
                                                 backend=backend))
        ours = objective(x, m_, res.codebook)
        ref = objective(x, m_, c_faiss)  # faiss's plain centroids scored on the same objective
        rows[label] = dict(seconds=t, time_ratio_vs_faiss_plain=t / t_faiss,
                           objective=ours, objective_ratio_vs_faiss=ours / ref)
    result = dict(n=n, d=args.d, k=args.k, iters=args.iters, threads=args.threads,
                  faiss_seconds=t_faiss, runs=rows)

    if not args.skip_compress:
        model = torchvision.models.resnet50()
        cfg = mvq.MVQConfig(block_size=args.d, num_codewords=args.k, kmeans_iters=50,
                            seed=args.seed)
        report, t = timed(lambda: mvq.compress(model, cfg))
        result['resnet50_compress'] = dict(seconds=t, layers=len(report.layers),
                                           iterations=sum(r.iterations for r in report.layers))

    if args.scaling:
        result['scaling'] = scaling(args.threads)
    result['machine'] = describe_machine()
    print(f'\n{result["machine"]}')
    print(f'faiss Kmeans (plain, all points): {t_faiss:.2f} s')
    print(f'{"ours":28s} {"time / faiss":>12s} {"objective / faiss":>18s}')
    for label, r in rows.items():
        print(f'{label:28s} {r["time_ratio_vs_faiss_plain"]:12.2f} '
              f'{r["objective_ratio_vs_faiss"]:18.4f}')
    if 'resnet50_compress' in result:
        rc = result['resnet50_compress']
        print(f'\nwhole ResNet-50 MVQ compression (2:8, k={args.k}, <=50 iters, '
              f'{rc["layers"]} layers): {rc["seconds"]:.1f} s')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    np.random.seed(0)
    main()
