"""Shared fixtures: seeded, CPU-only, tiny models; the ``mmcv_ops`` marker."""
import pytest
import torch
from torch import nn


def pytest_runtest_setup(item):
    """A test marked ``mmcv_ops`` is skipped, with the command to run, where mmcv's compiled ops
    are not installed (the lite set-up); ``make test`` installs them, so it runs them all."""
    if item.get_closest_marker('mmcv_ops') is None:
        return
    from mvq_plugin.integrations.mmcv_ops import MMCVOpsMissing, require_mmcv_ops
    try:
        require_mmcv_ops('this test')
    except MMCVOpsMissing as err:
        pytest.skip(str(err))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    torch.set_num_threads(2)


class TinyNet(nn.Module):
    """Stem conv (C_in=3), a 3x3 conv, a grouped 1x1, a depthwise conv, BN and a classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.pw = nn.Conv2d(32, 32, 1, groups=2)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.conv(x)))
        x = self.dw(torch.relu(self.pw(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def tiny_net():
    return TinyNet()


def _lloyd_reference(x, v, init, iters):
    """Loop-by-loop Lloyd iterations of ``sum_i sum_t v_it (x_it - c_{a_i,t})^2`` (no GEMM,
    no search tricks); ``v`` a 0/1 mask or importance weights. Returns (codebook, assignments,
    objective after every assignment)."""
    n, d = x.shape
    k = init.shape[0]
    c, xd, vd = init.double().clone(), x.double(), v.double()

    def assign_all():
        a, total = [], 0.0
        for i in range(n):
            dists = [float((vd[i] * (xd[i] - c[j]).pow(2)).sum()) for j in range(k)]
            j = min(range(k), key=dists.__getitem__)
            a.append(j)
            total += dists[j]
        return a, total

    a, obj = assign_all()
    history = [obj]
    for _ in range(iters):
        for j in range(k):
            for t in range(d):
                num = sum(vd[i, t] * xd[i, t] for i in range(n) if a[i] == j)
                den = sum(vd[i, t] for i in range(n) if a[i] == j)
                if den > 0:
                    c[j, t] = num / den
        a, obj = assign_all()
        history.append(obj)
    return c, a, history


@pytest.fixture
def lloyd_reference():
    """The brute-force Lloyd reference of the (weighted) masked k-means objective."""
    return _lloyd_reference
