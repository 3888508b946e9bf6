"""Shared fixtures: seeded, CPU-only, tiny models."""
import pytest
import torch
from torch import nn


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
