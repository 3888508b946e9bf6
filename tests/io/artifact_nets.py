"""Small seeded networks for the artifact tests (importable as ``artifact_nets:small_convnet``
by ``tools/export.py --arch``)."""
import torch
from torch import nn


class ConvNet(nn.Module):
    """Stem (dense), two convs with BN, a classifier: enough sub-vectors for k = 2048."""

    def __init__(self, width: int = 64, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv1 = nn.Conv2d(16, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def small_convnet(**kwargs) -> ConvNet:
    """Factory for ``--arch artifact_nets:small_convnet``."""
    return ConvNet(**kwargs)


def trained_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Runs two training-mode batches so BN running statistics are not their defaults."""
    gen = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 8, 8, generator=gen))
    return model.eval()
