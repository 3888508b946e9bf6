"""Datasets for timm's loaders: the real Fashion-MNIST IDX files or an ImageFolder tree.

``timm.data.create_loader`` sets ``transform`` on the dataset it is given, as on timm's own
datasets; the adapters here take it and forward it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ['ImageTensorDataset', 'SubsetDataset', 'build_datasets', 'make_loaders']


class ImageTensorDataset(Dataset):
    """uint8 ``(N, 1, H, W)`` images as PIL images (``mode`` ``'L'`` or ``'RGB'``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mode: str = 'RGB') -> None:
        if mode not in ('L', 'RGB'):
            raise ValueError(f"ImageTensorDataset mode={mode!r}; allowed: 'L', 'RGB'")
        self.images, self.labels, self.mode = images, labels, mode
        self.transform = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.images[index, 0].numpy(), mode='L')
        if self.mode != 'L':
            img = img.convert(self.mode)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])


class SubsetDataset(Dataset):
    """A fixed subset of a dataset that forwards ``transform`` to it."""

    def __init__(self, base: Dataset, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    @property
    def transform(self):
        return self.base.transform

    @transform.setter
    def transform(self, value) -> None:
        self.base.transform = value

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.base[self.indices[index]]


def build_datasets(data: str, *, in_chans: int = 3, subset: int | None = None,
                   val_subset: int | None = None, seed: int = 0,
                   data_dir: str | None = None) -> tuple[Dataset, Dataset, int | None]:
    """Train and validation datasets and the class count (``None`` when unknown).

    Args:
        data: ``'fashion_mnist'`` (real IDX files, see :func:`mvq_plugin.data.
            find_fashion_mnist`) or an ImageFolder root with ``train/`` and ``val/`` folders
            (read by ``timm.data.create_dataset``).
        in_chans: 1 (grayscale) or 3 (RGB) channels.
        subset: Train on this many fixed random images.
        val_subset: Validate on this many fixed random images.
        seed: Seed of the subsets.
        data_dir: Fashion-MNIST directory (default: the usual places).
    """
    if in_chans not in (1, 3):
        raise ValueError(f'in_chans={in_chans!r}; allowed: 1, 3')
    mode = 'L' if in_chans == 1 else 'RGB'
    gen = torch.Generator().manual_seed(seed)
    if data == 'fashion_mnist':
        from ..data import load_fashion_mnist

        sets = []
        for split, limit in (('train', subset), ('test', val_subset)):
            images, labels = load_fashion_mnist(split, data_dir)
            if limit is not None and limit < len(labels):
                idx = torch.randperm(len(labels), generator=gen)[:limit]
                images, labels = images[idx], labels[idx]
            sets.append(ImageTensorDataset(images, labels, mode))
        return sets[0], sets[1], 10
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"data={data!r} is neither 'fashion_mnist' nor a directory")
    from timm.data import create_dataset

    train = create_dataset('', root=str(root), split='train', is_training=True,
                           input_img_mode=mode)
    val = create_dataset('', root=str(root), split='validation', input_img_mode=mode)
    reader = getattr(train, 'reader', None)
    num_classes = len(getattr(reader, 'class_to_idx', {}) or {}) or None
    out = []
    for ds, limit in ((train, subset), (val, val_subset)):
        if limit is not None and limit < len(ds):
            ds = SubsetDataset(ds, torch.randperm(len(ds), generator=gen)[:limit].tolist())
        out.append(ds)
    return out[0], out[1], num_classes


def make_loaders(model, train_set: Dataset, val_set: Dataset, *, batch_size: int,
                 img_size: int | None = None, in_chans: int = 3, fashion_mnist: bool = False,
                 workers: int = 0, no_aug: bool = False, device: Any = 'cpu'
                 ) -> tuple[Any, Any, dict[str, Any]]:
    """timm's train and validation loaders with the model's data config.

    ``img_size`` (32 for Fashion-MNIST by default) overrides the model's input size; a
    grayscale model gets the mean of the model's per-channel mean and std.

    Returns:
        ``(train_loader, val_loader, data_config)``.
    """
    from timm.data import create_loader, resolve_data_config

    data_cfg = resolve_data_config(model=model)
    if img_size is not None or fashion_mnist:
        size = img_size or 32
        data_cfg['input_size'] = (in_chans, size, size)
    if in_chans == 1 and len(data_cfg['mean']) != 1:
        data_cfg['mean'] = (sum(data_cfg['mean']) / len(data_cfg['mean']),)
        data_cfg['std'] = (sum(data_cfg['std']) / len(data_cfg['std']),)
    common = dict(input_size=data_cfg['input_size'], mean=data_cfg['mean'], std=data_cfg['std'],
                  interpolation=data_cfg['interpolation'], num_workers=workers, device=device,
                  use_prefetcher=False, persistent_workers=False, batch_size=batch_size)
    train = create_loader(train_set, is_training=True, no_aug=no_aug, **common)
    val = create_loader(val_set, is_training=False, crop_pct=data_cfg['crop_pct'], **common)
    return train, val, data_cfg
