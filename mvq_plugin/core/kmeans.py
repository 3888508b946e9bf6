"""Masked k-means: Lloyd iterations under a fixed per-element mask.

Objective (docs/design.md section 2), for vectors ``w_i`` with masks ``m_i`` (``n x d``) and
codewords ``c_j`` (``k x d``)::

    J(C, a) = sum_i || m_i * (w_i - c_{a_i}) ||^2

* assign: ``a_i = argmin_j  -2 <m_i*w_i, c_j> + <m_i, c_j*c_j>``, an exact maximum inner
  product search in ``2d`` dimensions, ``argmax_j <[m_i*w_i, m_i], [2c_j, -c_j*c_j]>``
  (plain k-means: ``<[w_i, 1], [2c_j, -|c_j|^2]>``, ``d + 1`` dimensions);
* update: ``c_jt = sum_{i: a_i = j} m_it w_it / sum_{i: a_i = j} m_it`` (kept where the
  denominator is 0);
* empty clusters are re-seeded from a random member of the largest cluster;
* init: masked k-means++ (D^2 sampling under the masked distance, on a seeded subsample of
  at most ``KMEANSPP_SAMPLE_PER_CENTROID * k`` vectors) or ``k`` random vectors.

``J`` never increases: the assignment minimises it for fixed ``C``, the update for fixed ``a``,
and re-seeding only moves codewords without members. Plain k-means is ``mask=None``.

Importance-weighted (data-aware) clustering generalises the 0/1 mask to non-negative weights
``v_it = m_it * h_it`` (``h``: e.g. the second moment of the input channel a weight multiplies)::

    J_h(C, a) = sum_i sum_t v_it (w_it - c_{a_i,t})^2

Assignment and update keep their closed forms with ``v`` in place of ``m``: the search is the
same inner product ``<[v_i*w_i, v_i], [2c_j, -c_j*c_j]>`` and the update the weighted mean
``c_jt = sum v_it w_it / sum v_it``; ``J_h`` never increases either. (The per-pattern L2
search below needs 0/1 weights, so weighted runs use the inner-product search.)

The search (:mod:`~mvq_plugin.core.search`) has two exact backends: a chunked torch GEMM + max
(any device; memory bounded by ``chunk_size x k``) and, for CPU tensors when faiss is
installed, faiss's exhaustive search. Inside :func:`masked_kmeans` the faiss backend uses its
fused L2 kernels (much faster than its inner-product search at these dimensions): plain k-means
searches the vectors themselves; masked k-means groups the vectors by mask pattern once (an N:M
mask has at most ``C(M, N)^(d/M)`` patterns) and searches each group in its kept coordinates
only, ``|| m_i * (w_i - c_j) ||^2 = || w_i[K] - c_j[K] ||^2`` for the kept set ``K``. The
search returns the per-vector objective, so no extra pass computes ``J``.

The update (:class:`~mvq_plugin.core.kmeans_update.ClusterSums`) recounts per-codeword sums
and weights every iteration, float32 partial sums over row ranges accumulated in float64.
With the pattern groups, only the kept coordinates are summed and the weights are codeword
counts per group, so a 2:8 update reads a quarter of ``n x d``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from .kmeans_update import ClusterSums
from .search import (
    BACKENDS,
    FAISS_MIN_WORK,
    MAX_MASK_PATTERNS,
    FaissL2Search,
    GemmSearch,
    assign,
    resolve_backend,
)

#: k-means stopping rules.
KMEANS_STOPS = ('objective', 'assignments')

__all__ = ['KMEANS_STOPS', 'KMeansResult', 'masked_kmeans', 'assign', 'masked_sse',
           'BACKENDS']

logger = logging.getLogger(__name__)

KMEANSPP_SAMPLE_PER_CENTROID = 64


@dataclass
class KMeansResult:
    """Output of :func:`masked_kmeans`.

    Attributes:
        codebook: ``(k, d)`` float32 codewords.
        assignments: ``(n,)`` int64 codeword index per vector.
        objective: ``J`` after each assignment step (first entry: after initialisation).
        iterations: Update steps run.
        converged: Whether the stopping rule fired before ``iters``.
        reseeded: Number of empty clusters re-seeded over the run.
        last_change: Fraction of assignments the last update step changed (1.0 before any).
    """

    codebook: torch.Tensor
    assignments: torch.Tensor
    objective: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    reseeded: int = 0
    last_change: float = 1.0


def masked_sse(vectors: torch.Tensor, mask: torch.Tensor | None, codebook: torch.Tensor,
               assignments: torch.Tensor) -> float:
    """``J = sum_i sum_t v_it (w_it - c_{a_i,t})^2`` in float64.

    Args:
        vectors: ``(n, d)``.
        mask: ``(n, d)`` bool mask, float importance weights ``v >= 0``, or ``None`` (all ones).
        codebook: ``(k, d)``.
        assignments: ``(n,)``.
    """
    diff = vectors - codebook[assignments]
    sq = diff * diff
    if mask is not None:
        sq = sq * mask.to(device=diff.device, dtype=diff.dtype)
    return float(sq.sum(1).double().sum())


def _init_codebook(x: torch.Tensor, raw: torch.Tensor, w: torch.Tensor | None,
                   k: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """Initial codewords: masked k-means++ on a seeded subsample, or random vectors.

    ``x`` are the weighted queries ``v * w``, ``raw`` the vectors themselves (zero where
    ``v = 0``): codewords are taken from ``raw``, distances measured with ``x`` and ``w``.
    The ``k`` sequential D^2 draws run in NumPy on the CPU whatever the device: each step
    touches only the subsample, where a torch op's dispatch and thread start cost more
    than its arithmetic, and the same seed picks the same codewords on every device.
    """
    n = x.shape[0]
    if init == 'random':
        return raw[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
    sample = min(n, KMEANSPP_SAMPLE_PER_CENTROID * k)
    rows = torch.randperm(n, generator=gen)[:sample].to(x.device)
    xs, rs = x[rows].cpu().numpy(), raw[rows].cpu().numpy()
    ws = w[rows].float().cpu().numpy() if w is not None else None
    first = int(torch.randint(sample, (1,), generator=gen))
    uniforms = torch.rand(k - 1, generator=gen, dtype=torch.float64).numpy()
    chosen = _d2_sample(xs, rs, ws, first, uniforms)
    return raw[rows[torch.from_numpy(chosen).to(x.device)]].clone()


#: Rows per block of the two-level cumulative distribution in :func:`_d2_sample`.
_D2_BLOCK = 128


def _d2_sample(xs: np.ndarray, rs: np.ndarray, ws: np.ndarray | None, first: int,
               uniforms: np.ndarray) -> np.ndarray:
    """Indices of ``1 + len(uniforms)`` rows picked by D^2 sampling under the masked distance.

    Row ``first`` is picked first; each next row inverts the cumulative distribution of the
    squared distance to the nearest picked row at ``u * total`` (uniformly when every
    distance is 0). Distances: ``|| m * (w - c) ||^2 = sum v w^2 - 2 <v w, c> + <v, c^2>``,
    on coordinate-major copies (one ``(d,) @ (d, S)`` product per term). The inversion is
    two-level, over block sums and then within one block, so no step runs a sequential
    cumulative sum over all ``S`` rows.
    """
    sample = xs.shape[0]
    blocks = -(-sample // _D2_BLOCK)
    xt, wt = np.ascontiguousarray(xs.T), (np.ascontiguousarray(ws.T) if ws is not None else None)
    sqnorm = (xs * rs).sum(1)  # sum_t v_t w_t^2

    def dist_to(c: np.ndarray) -> np.ndarray:
        quad = (c * c) @ wt if wt is not None else np.float32((c * c).sum())
        return np.maximum(sqnorm - 2 * (c @ xt) + quad, 0)

    chosen = np.empty(len(uniforms) + 1, dtype=np.int64)
    chosen[0] = first
    padded = np.zeros(blocks * _D2_BLOCK, dtype=np.float32)  # the tail past ``sample`` stays 0
    dist, by_block = padded[:sample], padded.reshape(blocks, _D2_BLOCK)
    dist[:] = dist_to(rs[first])
    for step, u in enumerate(uniforms, start=1):
        outer = np.cumsum(by_block.sum(1, dtype=np.float64))
        total = outer[-1]
        if total > 0:  # D^2 sampling by inverting the cumulative distribution
            target = u * total
            b = min(int(np.searchsorted(outer, target, side='right')), blocks - 1)
            inner = np.cumsum(by_block[b], dtype=np.float64)
            target -= outer[b - 1] if b else 0.0
            within = min(int(np.searchsorted(inner, target, side='right')), _D2_BLOCK - 1)
            nxt = min(b * _D2_BLOCK + within, sample - 1)
        else:  # every sample already has a zero-distance codeword: pick uniformly.
            nxt = min(int(u * sample), sample - 1)
        chosen[step] = nxt
        np.minimum(dist, dist_to(rs[nxt]), out=dist)
    return chosen


def _reseed_empty(codebook: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None,
                  assignments: torch.Tensor, gen: torch.Generator,
                  order: torch.Tensor | None = None) -> int:
    """Moves every memberless codeword onto a random member of the largest cluster.

    ``x`` are the vectors themselves (zero where the weight is 0), not the weighted queries.
    The member's kept elements replace the codeword's; positions the member prunes keep the
    largest cluster's values. ``assignments`` may be in a permuted row order: row ``r`` of
    it is row ``order[r]`` of ``x`` and ``w``. Returns the number of re-seeded codewords.
    """
    k = codebook.shape[0]
    sizes = torch.bincount(assignments, minlength=k).cpu()
    empty = torch.nonzero(sizes == 0).flatten().tolist()
    for j in empty:
        big = int(torch.argmax(sizes))
        members = torch.nonzero(assignments == big).flatten()
        i = members[int(torch.randint(members.numel(), (1,), generator=gen))]
        if order is not None:
            i = order[i]
        row = codebook[big].clone()
        if w is None:
            row = x[i].clone()
        else:
            keep = w[i] > 0
            row[keep] = x[i][keep]
        codebook[j] = row
        sizes[big] -= 1
        sizes[j] = 1
    return len(empty)


def masked_kmeans(vectors: torch.Tensor, mask: torch.Tensor | None, k: int, *,
                  weights: torch.Tensor | None = None, iters: int = 50, seed: int = 0,
                  init: str | torch.Tensor = 'kmeans++', tol: float = 1e-4,
                  stop: str = 'objective', change_tol: float = 1e-3,
                  backend: str = 'auto', chunk_size: int = 65536) -> KMeansResult:
    """Clusters ``vectors`` under ``mask`` (see the module docstring for the math).

    Args:
        vectors: ``(n, d)`` sub-vectors; values at masked-out positions are ignored.
        mask: ``(n, d)`` bool (True = kept) or ``None`` for plain k-means.
        k: Number of codewords, ``2 <= k <= n``.
        weights: Optional ``(n, d)`` non-negative importance ``h``; the objective becomes
            ``sum m_it h_it (w_it - c_t)^2`` (see the module docstring).
        iters: Maximum number of update steps.
        seed: Seed for initialisation and re-seeding; a seed gives identical results.
        init: ``'kmeans++'`` (masked D^2 sampling), ``'random'`` or a ``(k, d)`` tensor of
            initial codewords.
        tol: With ``stop='objective'``: stop when ``(J_prev - J) <= tol * J_prev``.
        stop: ``'objective'`` (the relative decrease above) or ``'assignments'`` (the paper's
            rule, section 4.3: stop when fewer than ``change_tol`` of the assignments change
            in an update step).
        change_tol: With ``stop='assignments'``: the fraction of changed assignments below
            which k-means stops (0.001: 0.1 %).
        backend: Search backend, ``'auto'`` (faiss on CPU when installed, else torch),
            ``'torch'`` or ``'faiss'``.
        chunk_size: Rows per GEMM for the torch backend.

    Returns:
        A :class:`KMeansResult` on ``vectors.device``.
    """
    if vectors.dim() != 2:
        raise ValueError(f'vectors must be (n, d), got shape {tuple(vectors.shape)}')
    n, d = vectors.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n:
        raise ValueError(f'k={k!r} must be an integer in [2, n={n}] (number of vectors)')
    if mask is not None and mask.shape != vectors.shape:
        raise ValueError(f'mask shape {tuple(mask.shape)} does not match vectors '
                         f'{tuple(vectors.shape)}')
    if mask is not None and mask.dtype != torch.bool:
        other = mask[(mask != 0) & (mask != 1)]
        if other.numel():
            raise ValueError(f'mask ({mask.dtype}) holds {other[0].item()!r}: it must be bool '
                             f'or 0/1 (True = kept); pass per-element importance as weights=')
    if weights is not None:
        if weights.shape != vectors.shape:
            raise ValueError(f'weights shape {tuple(weights.shape)} does not match vectors '
                             f'{tuple(vectors.shape)}')
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError('k-means weights must be finite and >= 0 (importance per element)')
    if isinstance(init, torch.Tensor):
        if init.shape != (k, d):
            raise ValueError(f'initial codebook shape {tuple(init.shape)} must be (k={k}, d={d})')
    elif init not in ('kmeans++', 'random'):
        raise ValueError(f"init={init!r} is not allowed; choose 'kmeans++', 'random' or a "
                         '(k, d) tensor')
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f'iters={iters!r} must be an integer >= 0')
    if stop not in KMEANS_STOPS:
        raise ValueError(f'stop={stop!r} is not allowed; choose one of {list(KMEANS_STOPS)}')
    if not 0 <= change_tol < 1:
        raise ValueError(f'change_tol={change_tol!r} must be in [0, 1)')
    if chunk_size < 1:
        raise ValueError(f'chunk_size={chunk_size!r} must be >= 1')
    backend = resolve_backend(backend, vectors.device)
    gen = torch.Generator().manual_seed(seed)

    raw = vectors.detach().float()
    w = None  # per-element weights v: the bool mask itself, or (float) mask * importance
    if mask is not None:
        w = mask.to(device=raw.device, dtype=torch.bool)
    if weights is not None:
        h = weights.detach().to(device=raw.device, dtype=torch.float32)
        w = h if w is None else w * h
        raw = raw * (w > 0)
        x = (raw * w).contiguous()  # the queries' v * w
    else:  # 0/1 weights: v * w is the masked vector itself
        raw = x = (raw * w if w is not None else raw).contiguous()

    if isinstance(init, torch.Tensor):
        codebook = init.detach().to(device=x.device, dtype=torch.float32).clone()
    else:
        codebook = _init_codebook(x, raw, w, k, init, gen)

    searcher = None
    if backend == 'faiss' and n * k >= FAISS_MIN_WORK and weights is None:
        searcher = FaissL2Search(x, w)
        if searcher.patterns is not None and len(searcher.groups) > MAX_MASK_PATTERNS:
            searcher = None  # too many patterns: the 2d-dimensional inner-product form
    order = searcher.order if searcher is not None else None  # a runs in pattern order
    if searcher is None:
        searcher = GemmSearch(x, raw, w, backend, chunk_size)

    a, dist = searcher.nearest(codebook)
    history = [float(dist.sum(dtype=torch.float64))]
    iterations = reseeded = 0
    converged = False
    change = 1.0
    totals = ClusterSums(searcher, x, w, k)
    for _ in range(iters):
        codebook = totals.codebook(a, codebook)
        reseeded += _reseed_empty(codebook, raw, w, a, gen, order)
        previous = a
        del dist  # freed before the next search allocates its own: one set at a time
        a, dist = searcher.nearest(codebook)
        change = float((a != previous).sum()) / n
        del previous
        history.append(float(dist.sum(dtype=torch.float64)))
        iterations += 1
        prev, cur = history[-2:]
        if stop == 'assignments':
            done = change < change_tol
        else:
            done = prev <= 0 or prev - cur <= tol * prev
        if done:
            converged = True
            break
    if order is not None:
        a = torch.empty_like(a).index_copy_(0, order, a)
    return KMeansResult(codebook, a, history, iterations, converged, reseeded, change)
