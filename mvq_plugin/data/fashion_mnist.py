"""Fashion-MNIST from its IDX files (Debian's ``dataset-fashion-mnist``, or un-gzipped copies).

The set-up script unpacks the files into ``data/fashion_mnist`` (the layout mmpretrain's
``FashionMNIST`` dataset reads); the reader also accepts the ``.gz`` originals.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ['FASHION_MNIST_CLASSES', 'find_fashion_mnist', 'load_fashion_mnist', 'read_idx']

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                         'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
          'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
_SEARCH = ('data/fashion_mnist', '/usr/share/datasets/fashion-mnist')


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'rb') as f:
        data = f.read()
    magic = int.from_bytes(data[:4], 'big')
    if magic >> 8 != 0x08:
        raise ValueError(f'{path} is not an unsigned-byte IDX file (magic {magic:#x})')
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f'{path} is truncated: {body.size} bytes for dims {dims}')
    return body.reshape(dims)


def _locate(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / f'{name}.gz'):
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    """The directory holding the Fashion-MNIST IDX files.

    Looks in ``root`` if given, else ``$MVQ_DATA_DIR/fashion_mnist``, ``./data/fashion_mnist``
    and ``/usr/share/datasets/fashion-mnist``.
    """
    candidates = [Path(root)] if root else []
    if not root:
        if os.environ.get('MVQ_DATA_DIR'):
            candidates.append(Path(os.environ['MVQ_DATA_DIR']) / 'fashion_mnist')
        candidates += [Path(p) for p in _SEARCH]
    for c in candidates:
        if all(_locate(c, n) for pair in _FILES.values() for n in pair):
            return c
    raise FileNotFoundError(
        f'Fashion-MNIST IDX files not found in {[str(c) for c in candidates]}; run '
        '`make setup` (installs Debian package dataset-fashion-mnist and unpacks it to '
        'data/fashion_mnist) or pass the directory holding the four IDX files')


def load_fashion_mnist(split: str = 'train', root: str | Path | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split."""
    if split not in _FILES:
        raise ValueError(f"split={split!r} is not allowed; choose 'train' or 'test'")
    base = find_fashion_mnist(root)
    images, labels = (read_idx(_locate(base, n)) for n in _FILES[split])
    return (torch.from_numpy(images.copy()).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)))
