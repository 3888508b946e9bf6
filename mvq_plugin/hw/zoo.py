"""Analytic workloads of reference networks (no torch needed).

:func:`resnet18_workload` is torchvision/timm ResNet-18 as weight-stationary GEMMs; a test
checks it layer by layer against the traced torchvision model.
"""
from __future__ import annotations

from .workload import LayerWorkload, Workload

__all__ = ['resnet18_workload']


def resnet18_workload(batch: int = 1, size: int = 224) -> Workload:
    """torchvision/timm ResNet-18's convs and FC as GEMMs (execution order)."""
    layers = []

    def conv(name, cin, cout, k, s, hin):
        pad = k // 2
        hout = (hin + 2 * pad - k) // s + 1
        layers.append(LayerWorkload(name, 'conv', cin, cout, (k, k), (s, s), 1, (hin, hin),
                                    (hout, hout), batch=batch))
        return hout

    h = conv('conv1', 3, 64, 7, 2, size)
    h = (h + 2 - 3) // 2 + 1                       # max pool 3x3 s2 p1
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            s = 2 if stage > 1 and block == 0 else 1
            pre = f'layer{stage}.{block}'
            h_in = h
            h = conv(f'{pre}.conv1', cin, cout, 3, s, h_in)
            conv(f'{pre}.conv2', cout, cout, 3, 1, h)
            if s != 1 or cin != cout:
                conv(f'{pre}.downsample.0', cin, cout, 1, s, h_in)
            cin = cout
    layers.append(LayerWorkload('fc', 'linear', 512, 1000, (1, 1), (1, 1), 1, (1, 1),
                                (batch, 1), batch=1))
    return Workload('resnet18', layers, (batch, 3, size, size))
