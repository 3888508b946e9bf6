"""Importance-weighted masked k-means: exact assignment and update, monotone objective."""
import itertools

import pytest
import torch

from mvq_plugin.core import masked_kmeans, nm_mask
from mvq_plugin.core.kmeans import masked_sse


def _data(n=60, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(5, d, generator=g) * 3
    x = centers[torch.randint(5, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    mask = nm_mask(x.abs(), 2, 4)
    h = torch.rand(n, d, generator=g) * 4 + 0.05
    return x, mask, h


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
def test_weighted_equals_loop_reference(backend, lloyd_reference):
    if backend == 'faiss':
        pytest.importorskip('faiss')
    x, mask, h = _data()
    init = x[:5].clone() * mask[:5]
    res = masked_kmeans(x, mask, 5, weights=h, iters=6, init=init, tol=0.0, backend=backend)
    c, a, hist = lloyd_reference(x, mask.double() * h.double(), init, len(res.objective) - 1)
    assert res.assignments.tolist() == a
    assert torch.allclose(res.codebook.double(), c, atol=1e-5)
    assert res.objective == pytest.approx(hist, rel=1e-5)
    # the reported objective is the weighted SSE of the final state
    assert res.objective[-1] == pytest.approx(
        masked_sse(x, mask.float() * h, res.codebook, res.assignments), rel=1e-5)


def test_weighted_objective_never_increases():
    x, mask, h = _data(n=400, d=8, seed=1)
    mask = nm_mask(x.abs(), 2, 8)
    res = masked_kmeans(x, mask, 16, weights=h, iters=30, tol=0.0, seed=2)
    diffs = [b - a for a, b in zip(res.objective, res.objective[1:])]
    assert max(diffs) <= 1e-6 * res.objective[0]
    assert res.objective[-1] < 0.7 * res.objective[0]


def test_unit_weights_reproduce_the_masked_path():
    x, mask, _ = _data(n=300, d=8, seed=3)
    mask = nm_mask(x.abs(), 2, 8)
    plain = masked_kmeans(x, mask, 8, iters=10, seed=4, backend='torch')
    ones = masked_kmeans(x, mask, 8, weights=torch.ones_like(x), iters=10, seed=4,
                         backend='torch')
    assert torch.equal(plain.assignments, ones.assignments)
    assert torch.allclose(plain.codebook, ones.codebook)
    assert ones.objective == pytest.approx(plain.objective, rel=1e-6)


def test_weighted_global_optimum_on_tiny_input():
    """With two clusters and six vectors, Lloyd from k-means++ finds the brute-force optimum."""
    x = torch.tensor([[0., 0.], [0.2, 0.1], [0.1, 0.3], [5., 5.], [5.2, 4.9], [4.8, 5.3]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], dtype=torch.bool)
    h = torch.tensor([[1., 2.], [3., 1.], [0.5, 1.], [1., 4.], [2., 2.], [1., 0.5]])
    v = mask.float() * h
    res = masked_kmeans(x, mask, 2, weights=h, iters=20, seed=3)

    def best_for(assign):
        total = 0.0
        for j in (0, 1):
            rows = [i for i in range(6) if assign[i] == j]
            for t in range(2):
                den = sum(float(v[i, t]) for i in rows)
                if den:
                    mu = sum(float(v[i, t] * x[i, t]) for i in rows) / den
                    total += sum(float(v[i, t]) * (float(x[i, t]) - mu) ** 2 for i in rows)
        return total

    brute = min(best_for(a) for a in itertools.product((0, 1), repeat=6))
    assert res.objective[-1] == pytest.approx(brute, rel=1e-5)


def test_weights_are_validated():
    x, mask, h = _data()
    with pytest.raises(ValueError, match='weights shape'):
        masked_kmeans(x, mask, 4, weights=h[:, :2])
    with pytest.raises(ValueError, match='>= 0'):
        masked_kmeans(x, mask, 4, weights=-h)
