import itertools

import pytest
import torch

from mvq_plugin.core import kmeans as km
from mvq_plugin.core import kmeans_update, masked_kmeans, nm_mask, search


def _data(n=400, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(6, d, generator=g) * 3
    x = centers[torch.randint(6, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    mask = nm_mask(x.abs(), 2, 4)
    return x, mask


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_equals_loop_reference(backend, lloyd_reference):
    if backend == 'faiss':
        pytest.importorskip('faiss')
    x, mask = _data(n=60, d=4)
    init = x[:5].clone() * mask[:5]
    res = masked_kmeans(x, mask, 5, iters=6, init=init, tol=0.0, backend=backend)
    c, a, hist = lloyd_reference(x, mask, init, len(res.objective) - 1)
    assert res.assignments.tolist() == a
    assert torch.allclose(res.codebook.double(), c, atol=1e-5)
    assert res.objective == pytest.approx(hist, rel=1e-5)


def test_reaches_global_optimum_on_tiny_separable_input():
    x = torch.tensor([[0., 0.], [0.2, 0.1], [0.1, 0.3], [5., 5.], [5.2, 4.9], [4.8, 5.3]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], dtype=torch.bool)
    res = masked_kmeans(x, mask, 2, iters=20, seed=3)

    def best_for(assign):
        total = 0.0
        for j in (0, 1):
            rows = [i for i in range(6) if assign[i] == j]
            for t in range(2):
                kept = [x[i, t] for i in rows if mask[i, t]]
                if kept:
                    mu = sum(kept) / len(kept)
                    total += sum(float((v - mu) ** 2) for v in kept)
        return total

    brute = min(best_for(a) for a in itertools.product((0, 1), repeat=6))
    assert res.objective[-1] == pytest.approx(brute, rel=1e-5)


def test_objective_non_increasing_and_converges():
    x, mask = _data(n=3000, d=8)
    res = masked_kmeans(x, mask, 32, iters=40, tol=0.0, init='random')
    diffs = torch.tensor(res.objective).diff()
    assert torch.all(diffs <= 1e-6 * res.objective[0])
    assert res.objective[-1] < 0.5 * res.objective[0]
    assert res.objective[-1] == pytest.approx(
        km.masked_sse(x, mask, res.codebook, res.assignments), rel=1e-5)


def test_pruned_values_do_not_matter():
    x, mask = _data()
    noisy = torch.where(mask, x, torch.randn_like(x) * 100)
    a = masked_kmeans(x, mask, 16, iters=10, seed=1)
    b = masked_kmeans(noisy, mask, 16, iters=10, seed=1)
    assert torch.equal(a.assignments, b.assignments)
    assert torch.equal(a.codebook, b.codebook)


def test_identical_for_a_seed_different_across_seeds():
    x, mask = _data()
    a = masked_kmeans(x, mask, 16, iters=10, seed=7)
    b = masked_kmeans(x, mask, 16, iters=10, seed=7)
    c = masked_kmeans(x, mask, 16, iters=10, seed=8)
    assert torch.equal(a.codebook, b.codebook) and torch.equal(a.assignments, b.assignments)
    assert not torch.equal(a.codebook, c.codebook)


def test_empty_clusters_are_reseeded():
    x, mask = _data(n=200)
    init = x[:8].clone()
    init[5:] = 1e4  # three codewords that no vector picks
    res = masked_kmeans(x, mask, 8, iters=10, init=init, tol=0.0)
    assert res.reseeded >= 3
    assert torch.bincount(res.assignments, minlength=8).min() > 0
    assert torch.all(torch.tensor(res.objective).diff() <= 1e-6 * res.objective[0])


def test_plain_kmeans_is_mask_of_ones():
    x, _ = _data()
    ones = torch.ones_like(x, dtype=torch.bool)
    a = masked_kmeans(x, None, 8, iters=5, seed=2, backend='torch')
    b = masked_kmeans(x, ones, 8, iters=5, seed=2, backend='torch')
    assert torch.equal(a.assignments, b.assignments)
    assert torch.allclose(a.codebook, b.codebook, atol=1e-5)


def test_backends_agree():
    pytest.importorskip('faiss')
    x, mask = _data(n=5000)
    codebook = torch.randn(32, 8) * 3
    for m in (None, mask):
        q = search.query_table(x * m if m is not None else x, m)
        a_t, best_t = search.assign(q, codebook, m is not None, backend='torch', chunk_size=777)
        a_f, best_f = search.assign(q, codebook, m is not None, backend='faiss')
        assert (a_t == a_f).float().mean() > 0.999  # differ only on float32 near-ties
        assert torch.allclose(best_t, best_f, rtol=1e-5, atol=1e-3)
        full_t = masked_kmeans(x, m, 32, iters=8, seed=4, backend='torch')
        full_f = masked_kmeans(x, m, 32, iters=8, seed=4, backend='faiss')
        assert full_t.objective[-1] == pytest.approx(full_f.objective[-1], rel=1e-2)


@pytest.mark.parametrize('kwargs, match', [
    (dict(k=1), r'k=1 must be an integer in \[2, n=400\]'),
    (dict(k=401), r'k=401'),
    (dict(k=4, init='foo'), "init='foo'"),
    (dict(k=4, iters=-2), 'iters=-2'),
    (dict(k=4, backend='gpu'), "backend='gpu'"),
    (dict(k=4, init=torch.zeros(3, 8)), r'initial codebook shape \(3, 8\)'),
])
def test_bad_arguments(kwargs, match):
    x, mask = _data()
    with pytest.raises(ValueError, match=match):
        masked_kmeans(x, mask, **kwargs)


def test_mask_must_be_bool_or_zero_one():
    x, mask = _data()
    ref = masked_kmeans(x, mask, 8, iters=5, seed=2)
    same = masked_kmeans(x, mask.float(), 8, iters=5, seed=2)
    assert torch.equal(ref.assignments, same.assignments)
    assert torch.equal(ref.codebook, same.codebook)
    with pytest.raises(ValueError, match=r'\(torch.float32\) holds 0.5: it must be bool or 0/1'):
        masked_kmeans(x, mask * 0.5, 8)


@pytest.mark.parametrize('kind', ['plain', 'nm', 'ragged', 'weighted'])
def test_cluster_sums_over_threaded_row_ranges_equal_float64_reference(kind, monkeypatch):
    """The update's sums and weights, cut into several row ranges summed on two threads,
    equal a float64 reference: plain, N:M pattern groups, masks whose patterns keep
    different numbers of entries (padded rows), and importance weights."""
    pytest.importorskip('faiss')
    g = torch.Generator().manual_seed(5)
    n, d, k = 20000, 8, 16
    x = torch.randn(n, d, generator=g)
    mask = {'plain': None, 'nm': nm_mask(x.abs(), 2, 8),
            'ragged': torch.rand(n, d, generator=g) < 0.4,
            'weighted': torch.rand(n, d, generator=g) < 0.5}[kind]
    v = (mask.float() * torch.rand(n, d, generator=g) if kind == 'weighted'
         else mask.float() if mask is not None else torch.ones(n, d))
    xm = x * v
    searcher = (search.FaissL2Search(xm, mask) if kind != 'weighted'
                else search.GemmSearch(xm, x * (v > 0), v, 'torch', 4096))
    monkeypatch.setattr(kmeans_update.ClusterSums, 'CHUNK', 3000)
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 2)
    assert len(kmeans_update.row_ranges(n, 3000, True)) == 8
    sums_of = kmeans_update.ClusterSums(searcher, xm, v if mask is not None else None, k)
    a = torch.randint(k, (n,), generator=g)
    sums, weights = sums_of.totals(a)
    order = searcher.order if searcher.order is not None else torch.arange(n)
    rows_x, rows_v = xm[order].double(), v[order].double()  # ``a`` is in the searcher's order
    one_hot = torch.nn.functional.one_hot(a, k).double()  # (n, k)
    assert torch.allclose(sums, one_hot.t() @ rows_x, atol=1e-4)
    assert torch.allclose(weights.expand(k, d), one_hot.t() @ rows_v, atol=1e-4)
    if kind == 'ragged':
        assert sums_of.cols is not None and len(searcher.groups) > 100


def test_row_ranges_cover_rows_once():
    for n, chunk, parallel in [(1, 10, True), (9000, 1 << 20, True), (3_186_688, 1 << 20, True),
                               (50, 7, False), (10_000, 4096, False)]:
        ranges = kmeans_update.row_ranges(n, chunk, parallel)
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(hi == lo2 for (_, hi), (lo2, _) in zip(ranges, ranges[1:]))
        assert all(0 < hi - lo <= chunk for lo, hi in ranges)


def test_d2_sampling_inverts_the_cumulative_distribution_exactly():
    """The two-level inversion picks the row a flat cumulative sum picks, for every draw."""
    import numpy as np
    g = torch.Generator().manual_seed(2)
    s, d = 1000, 4  # not a multiple of the block: the padded tail must never be picked
    xs = torch.randn(s, d, generator=g)
    ws = (torch.rand(s, d, generator=g) < 0.5).float()
    xw = (xs * ws).numpy()
    uniforms = torch.rand(40, generator=g, dtype=torch.float64).numpy()
    chosen = km._d2_sample(xw, xw, ws.numpy(), 7, uniforms)
    dist = None
    for step, u in enumerate(uniforms, start=1):
        c = xw[chosen[step - 1]]
        new = (ws.numpy() * (xw - c) ** 2).sum(1)
        dist = new if dist is None else np.minimum(dist, new)
        cumulative = np.cumsum(dist.astype(np.float64))
        want = min(int(np.searchsorted(cumulative, u * cumulative[-1], side='right')), s - 1)
        # float32 rounding of the distances may move a draw that lands on a boundary
        assert chosen[step] == want or abs(cumulative[want] - u * cumulative[-1]) < 1e-3
    assert chosen[0] == 7 and len(set(chosen.tolist())) == len(chosen)
