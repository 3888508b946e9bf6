"""The update step of :mod:`~mvq_plugin.core.kmeans`: per-codeword sums and weights.

:class:`ClusterSums` recounts, for fixed assignments, ``sum v*w`` and ``sum v`` per codeword
coordinate, over row ranges (:func:`row_ranges`) summed side by side on a shared thread pool
(:func:`worker_pool`).
"""
from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ['ClusterSums', 'row_ranges', 'worker_pool']


class ClusterSums:
    """Per-codeword sums ``sum v*w`` and weights ``sum v``, recounted from the assignments.

    The rows are cut into at most :attr:`CHUNK`-row ranges, one per thread at a time
    (:func:`row_ranges`): ``index_add_`` and ``bincount`` run on one core each, so the
    ranges are summed side by side in a thread pool of ``torch.get_num_threads()`` workers
    (the ops release the GIL), and their float32 partial sums (and counts) added in float64.

    Plain k-means keeps a coordinate-major copy of the vectors (``d x n``, as large as the
    vectors) so that a range's sums are ``d`` weighted bincounts, each reading one contiguous
    column (faster than an ``index_add_`` of the rows); with importance weights they are an
    ``index_add_`` of the rows. With a
    :class:`~mvq_plugin.core.search.FaissL2Search` over mask patterns, every group is a
    contiguous row range with one kept set, so a range's sums are one bincount over the flat
    keys ``a_i * d + t`` of its kept entries only (their values laid out once, row-major;
    rows with fewer kept entries than the most padded with zero values), and the
    weights come from the codeword counts per group, ``counts (P, k)``, times the groups'
    kept sets ``(P, d)``. A 2:8 update reads a quarter of ``n x d``.

    Args:
        searcher: The run's searcher (its pattern groups are used when it has them).
        x: ``(n, d)`` weighted vectors ``v * w`` (used without pattern groups).
        w: ``(n, d)`` weights ``v`` (a bool mask or floats) or ``None`` (all ones).
        k: Number of codewords.
    """

    CHUNK = 1 << 20

    def __init__(self, searcher, x: torch.Tensor, w: torch.Tensor | None, k: int) -> None:
        self.k, self.d = k, x.shape[1]
        self.x, self.w = x, w
        if searcher.patterns is None and w is not None and w.dtype == torch.bool:
            self.w = w.to(x.dtype)  # summed by index_add_ (the pattern groups need no copy)
        self.cols = self.columns = None
        if searcher.patterns is None and w is None:
            self.columns = x.t().contiguous()  # (d, n)
        self.parallel = x.device.type == 'cpu' and torch.get_num_threads() > 1
        if searcher.patterns is not None:
            offsets, groups = searcher.offsets, searcher.groups
            width = max(1, max(kept.numel() for kept, _ in groups))
            n = offsets[-1]
            index = torch.uint8 if self.d <= 256 else torch.int64  # promoted in the key sum
            self.cols = torch.zeros(n, width, dtype=index)
            self.values = torch.zeros(n, width)
            for lo, hi, (kept, xs) in zip(offsets, offsets[1:], groups):
                if kept.numel():  # xs: (hi - lo, kept)
                    self.cols[lo:hi, :kept.numel()] = kept
                    self.values[lo:hi, :kept.numel()] = torch.from_numpy(xs)
            sizes = torch.tensor([hi - lo for lo, hi in zip(offsets, offsets[1:])])
            self.group_base = torch.repeat_interleave(torch.arange(len(groups)) * k,
                                                      sizes).to(torch.int32)
            self.kept_sets = searcher.patterns.double()  # (P, d)

    def totals(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sums (k, d), weights (k, d) or (k, 1))`` in float64 for assignments ``a``."""
        ranges = row_ranges(a.shape[0], self.CHUNK, self.parallel)
        if len(ranges) > 1:
            parts = list(worker_pool().map(lambda r: self._partial(a, *r), ranges))
        else:
            parts = [self._partial(a, *ranges[0])]
        sums = sum(p[0].double() for p in parts)
        weights = sum(p[1].double() for p in parts)
        if self.cols is not None:
            groups = self.kept_sets.shape[0]
            weights = weights.view(groups, self.k).t() @ self.kept_sets
        return sums, weights

    def _partial(self, a: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums and weights (grouped: counts per group and codeword) of rows ``lo:hi``."""
        k, d, part = self.k, self.d, a[lo:hi]
        if self.cols is not None:
            keys = ((part * d).unsqueeze(1) + self.cols[lo:hi]).view(-1)
            sums = torch.bincount(keys, weights=self.values[lo:hi].view(-1), minlength=k * d)
            counts = torch.bincount(part + self.group_base[lo:hi],
                                    minlength=self.kept_sets.shape[0] * k)
            return sums.view(k, d), counts
        if self.columns is not None:
            sums = torch.stack([torch.bincount(part, weights=column[lo:hi], minlength=k)
                                for column in self.columns], 1)
            return sums, torch.bincount(part, minlength=k).view(k, 1)
        sums = self.x.new_zeros(k, d).index_add_(0, part, self.x[lo:hi])
        return sums, self.w.new_zeros(k, d).index_add_(0, part, self.w[lo:hi])

    def codebook(self, a: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """The updated codebook (``previous`` where a coordinate has no weight)."""
        sums, weights = self.totals(a)
        weights = weights.expand_as(sums)
        return torch.where(weights > 0, (sums / weights.clamp(min=1e-300)).float(), previous)


def row_ranges(n: int, chunk: int, parallel: bool) -> list[tuple[int, int]]:
    """``(lo, hi)`` row ranges of at most ``chunk`` rows; with ``parallel``, at least one per
    worker of :func:`worker_pool` when ``n`` allows (under 4096 rows a thread does not pay)."""
    parts = -(-n // chunk)
    if parallel:
        workers = torch.get_num_threads()
        parts = max(parts, min(workers, n // 4096)) if n >= 8192 else parts
        parts = -(-parts // workers) * workers if parts > 1 else parts
    step = -(-n // max(parts, 1))
    return [(lo, min(lo + step, n)) for lo in range(0, n, step)]


@functools.lru_cache(maxsize=None)
def _pool_of(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix='mvq-kmeans')


def worker_pool() -> ThreadPoolExecutor:
    """The shared worker pool, one worker per torch thread."""
    return _pool_of(torch.get_num_threads())
