"""Exact (masked) nearest-codeword search, the assignment step of :mod:`~mvq_plugin.core.kmeans`.

Two exact backends compute the same argmax: a chunked torch GEMM + max over the inner-product
form ``<[m*w, m], [2c, -c*c]>`` (any device; memory bounded by ``chunk_size x k``) and, for CPU
tensors when faiss is installed, faiss: its exhaustive inner-product search, or
(:class:`FaissL2Search`) its fused L2 kernels on the vectors grouped by mask pattern.

The Lloyd loop talks to a *searcher* built once per run, :class:`GemmSearch` (the
inner-product form, any weights) or :class:`FaissL2Search` (0/1 masks); both answer
``nearest(codebook) -> (assignments, squared distances)``.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ['BACKENDS', 'assign', 'query_table', 'search_table', 'resolve_backend',
           'GemmSearch', 'FaissL2Search']

BACKENDS = ('auto', 'torch', 'faiss')
#: Above this many distinct mask patterns the faiss backend searches the ``2d``-dimensional
#: inner-product form instead of per-pattern groups.
MAX_MASK_PATTERNS = 4096
#: Below ``n * k`` of this, a faiss call costs more than it saves: search with ``assign``.
FAISS_MIN_WORK = 2 ** 20
#: faiss's ``distance_compute_blas_threshold`` while we search (see ``_FaissL2Search``).
FAISS_BLAS_THRESHOLD = 1000

try:  # faiss is optional: the torch backend is complete on its own.
    import faiss  # type: ignore
except ImportError:  # pragma: no cover - exercised where faiss is absent
    faiss = None


def search_table(codebook: torch.Tensor, masked: bool) -> torch.Tensor:
    """Database side of the inner-product search: ``[2c, -c*c]`` or ``[2c, -|c|^2]``."""
    sq = codebook * codebook
    tail = -sq if masked else -sq.sum(1, keepdim=True)
    return torch.cat([2 * codebook, tail], dim=1).contiguous()


def query_table(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Query side: ``[m*w, m]`` (masked) or ``[w, 1]`` (plain); ``x`` is already ``m*w``."""
    tail = mask.to(x.dtype) if mask is not None else x.new_ones(x.shape[0], 1)
    return torch.cat([x, tail], dim=1).contiguous()


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f'k-means backend={backend!r} is not allowed; choose one of '
                         f'{list(BACKENDS)}')
    if backend == 'faiss':
        if faiss is None:
            raise ValueError("k-means backend='faiss' needs the faiss-cpu package")
        if device.type != 'cpu':
            raise ValueError(f"k-means backend='faiss' runs on CPU tensors, got {device}")
        return 'faiss'
    if backend == 'auto':
        return 'faiss' if faiss is not None and device.type == 'cpu' else 'torch'
    return 'torch'


def assign(queries: torch.Tensor, codebook: torch.Tensor, masked: bool, *,
           backend: str = 'auto', chunk_size: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact masked assignment as a maximum inner-product search.

    Args:
        queries: ``(n, 2d)`` rows ``[m*w, m]`` (masked) or ``(n, d+1)`` rows ``[w, 1]``.
        codebook: ``(k, d)``.
        masked: Which query layout ``queries`` has.
        backend: ``'auto'``, ``'torch'`` or ``'faiss'``.
        chunk_size: Rows per GEMM for the torch backend (memory ``chunk_size x k``).

    Returns:
        ``(assignments (n,) int64, best (n,) float32)`` where
        ``best_i = max_j <q_i, [2c_j, -c_j^2]>`` so that ``J_i = sum_t m_it w_it^2 - best_i``.
    """
    idx, best = _top(queries, search_table(codebook, masked), 1, backend, chunk_size)
    return idx[:, 0], best[:, 0]


def _top(queries: torch.Tensor, table: torch.Tensor, count: int, backend: str,
         chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` largest inner products per query, best first: ``(idx, score)``."""
    if resolve_backend(backend, queries.device) == 'faiss':
        index = faiss.IndexFlatIP(table.shape[1])
        index.add(table.numpy())
        best, idx = index.search(queries.contiguous().numpy(), count)
        return torch.from_numpy(idx).long(), torch.from_numpy(best)
    n = queries.shape[0]
    idx = torch.empty(n, count, dtype=torch.int64, device=queries.device)
    best = torch.empty(n, count, dtype=queries.dtype, device=queries.device)
    table_t = table.t()
    for start in range(0, n, chunk_size):
        scores = queries[start:start + chunk_size] @ table_t
        if count == 1:
            torch.max(scores, dim=1, keepdim=True, out=(best[start:start + chunk_size],
                                                        idx[start:start + chunk_size]))
        else:
            torch.topk(scores, count, dim=1, out=(best[start:start + chunk_size],
                                                  idx[start:start + chunk_size]))
    return idx, best


class GemmSearch:
    """Exact search in the inner-product form, for any non-negative weights ``v``.

    Args:
        x: ``(n, d)`` weighted vectors ``v * w``.
        raw: ``(n, d)`` the vectors themselves (zero where ``v = 0``).
        v: ``(n, d)`` weights, or ``None`` for plain k-means.
        backend: ``'torch'`` or ``'faiss'`` (faiss's inner-product search).
        chunk_size: Rows per torch GEMM.
    """

    order = patterns = None  # rows stay in their own order; no pattern groups

    def __init__(self, x: torch.Tensor, raw: torch.Tensor, v: torch.Tensor | None,
                 backend: str, chunk_size: int) -> None:
        self.queries = query_table(x, v)
        self.raw, self.v = raw, v
        self.backend, self.chunk_size = backend, chunk_size

    def nearest(self, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, dist)``: best codeword per row and ``sum_t v_t (w_t - c_{a,t})^2``, computed
        directly (the inner-product scores lose digits to cancellation)."""
        a, _ = assign(self.queries, codebook, self.v is not None, backend=self.backend,
                      chunk_size=self.chunk_size)
        diff = self.raw - codebook[a]
        sq = diff * diff
        return a, (sq * self.v if self.v is not None else sq).sum(1)


class FaissL2Search:
    """Exact (masked) search with faiss's fused L2 kernels; built once per k-means run.

    Masked vectors are grouped by mask pattern; the caller works in the grouped row order
    (:attr:`order`) so that every group is a contiguous slice, searched in its kept
    coordinates only.

    Args:
        x: ``(n, d)`` float32 CPU vectors (already multiplied by the mask).
        mask: ``(n, d)`` bool or ``None``.

    Attributes:
        order: Row permutation into pattern order (``None`` for plain k-means).
        patterns: ``(P, d)`` bool kept sets (``None`` for plain k-means).
    """

    def __init__(self, x: torch.Tensor, mask: torch.Tensor | None) -> None:
        self.order = self.patterns = None
        if mask is None:
            self.groups = [(None, x.contiguous().numpy())]
            self.offsets = [0, x.shape[0]]
            return
        d = mask.shape[1]
        bits = torch.arange(d, dtype=torch.int64)
        if d <= 20:  # a counting sort over the 2^d codes (exact in float32 up to 2^24)
            code = (mask.to(torch.float32) @ (2.0 ** bits.float())).long()
            present = torch.bincount(code, minlength=2 ** d)
            uniq = torch.nonzero(present).flatten()
            self.order = torch.argsort(code, stable=True)
            sizes = present[uniq]
        else:
            code = (mask.long() << bits).sum(1)
            uniq, inverse = torch.unique(code, return_inverse=True)
            self.order = torch.argsort(inverse, stable=True)
            sizes = torch.bincount(inverse, minlength=len(uniq))
        self.patterns = ((uniq[:, None] >> bits) & 1).bool()
        self.offsets = [0] + torch.cumsum(sizes, 0).tolist()
        self.groups = []
        for g, keep in enumerate(self.patterns):  # gather each group's kept columns only
            cols = torch.nonzero(keep).flatten()
            rows = self.order[self.offsets[g]:self.offsets[g + 1]]
            self.groups.append((cols, x[rows[:, None], cols].numpy()))

    def nearest(self, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a, dist)`` per row (in :attr:`order`), ``dist`` the squared masked distance."""
        # faiss searches fewer queries than this threshold (default 128k) with a per-query
        # loop, ~10x slower per query than its blocked kernel at these dimensions.
        saved = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = FAISS_BLAS_THRESHOLD
        try:
            return self._search(codebook)
        finally:
            faiss.cvar.distance_compute_blas_threshold = saved

    def _search(self, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # faiss writes into views of the outputs and no torch op runs between its calls:
        # torch's and faiss's OpenMP pools are separate, and a torch op between two searches
        # leaves torch's threads spinning on the cores faiss is using.
        a = torch.zeros(self.offsets[-1], 1, dtype=torch.int64)
        dist = torch.zeros(self.offsets[-1], 1)
        book = codebook.contiguous().numpy()  # per-group tables gathered in NumPy: cheaper
        tables = [None if cols is not None and cols.numel() == 0 else  # than a torch op each
                  (book if cols is None else np.ascontiguousarray(book[:, cols.numpy()]))
                  for cols, _ in self.groups]
        a_out, dist_out = a.numpy(), dist.numpy()
        for g, ((_, xs), table) in enumerate(zip(self.groups, tables)):
            if table is None:
                continue  # nothing kept: every codeword is at distance 0; codeword 0 it is
            lo, hi = self.offsets[g], self.offsets[g + 1]
            index = faiss.IndexFlatL2(table.shape[1])
            index.add(table)
            index.search(xs, 1, D=dist_out[lo:hi], I=a_out[lo:hi])
        return a[:, 0], dist[:, 0]
