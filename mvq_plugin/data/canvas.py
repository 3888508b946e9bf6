"""Small real-pixel detection and segmentation sets built from Fashion-MNIST items.

No annotated detection/segmentation set is available offline, so we paste real Fashion-MNIST
items (scaled, tinted) onto noisy canvases. Two placements:

* ``grid`` (the default): one item per grid cell, so no two overlap: every instance mask is
  exactly the item's pixels above a threshold and every box is that mask's extent.
* ``free`` (:data:`HARD`, the detection/segmentation benchmark's set): items anywhere, up to
  ``max_items`` of them over a wide scale range, later items occluding earlier ones (an
  instance's mask is what stays visible, its box that mask's extent; an item left with less
  than ``min_visible`` of its pixels is dropped from the annotations but stays painted as
  clutter), plus ``clutter`` distractor shapes (tinted rectangles and ellipses of random
  texture, never annotated).

* COCO instance segmentation (``make_coco_instances``): ``{split}/*.png`` and
  ``annotations/instances_{split}.json``, masks as uncompressed COCO RLE (decoded exactly by
  pycocotools, which mmdet's ``CocoDataset``/``CocoMetric`` use), boxes in XYWH.
* Semantic segmentation (``make_semantic_seg``): ``img_dir/{split}/*.png`` and
  ``ann_dir/{split}/*.png`` (class index per pixel, 0 = background, ``c + 1`` = item class
  ``c``), the layout mmseg's ``BaseSegDataset`` reads.

Everything is deterministic for a seed and takes seconds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist

__all__ = ['CanvasSpec', 'HARD', 'make_coco_instances', 'make_semantic_seg', 'SEG_CLASSES']

SEG_CLASSES = ('background', ) + FASHION_MNIST_CLASSES
_THRESHOLD = 40  # item pixels above this (of 255) belong to the instance


@dataclass(frozen=True)
class CanvasSpec:
    """How canvases are drawn.

    Attributes:
        size: Canvas side in pixels.
        grid: Cells per side (``placement='grid'``); at most one item per cell.
        max_items: Items per canvas (1..``max_items``; at most ``grid**2`` on a grid).
        scale: Item side range in pixels (items are 28x28, resized).
        placement: ``'grid'`` (no overlap) or ``'free'`` (anywhere; later items occlude).
        clutter: Distractor shapes per canvas (0..``clutter``, drawn before the items).
        min_visible: With ``placement='free'``, the visible fraction of an item's pixels below
            which it is not annotated.
    """

    size: int = 128
    grid: int = 2
    max_items: int = 3
    scale: tuple[int, int] = (36, 60)
    placement: str = 'grid'
    clutter: int = 0
    min_visible: float = 0.4

    def __post_init__(self) -> None:
        if self.placement not in ('grid', 'free'):
            raise ValueError(f"CanvasSpec.placement={self.placement!r}; allowed: 'grid', "
                             "'free'")
        if not 1 <= self.scale[0] <= self.scale[1]:
            raise ValueError(f'CanvasSpec.scale={self.scale} must be (min, max) with '
                             '1 <= min <= max')
        if self.clutter < 0 or not 0.0 < self.min_visible <= 1.0:
            raise ValueError(f'CanvasSpec.clutter={self.clutter} must be >= 0 and '
                             f'min_visible={self.min_visible} in (0, 1]')
        if self.placement == 'free':
            if self.scale[1] > self.size:
                raise ValueError(f'CanvasSpec.scale={self.scale} exceeds size={self.size}')
            if self.max_items < 1:
                raise ValueError(f'CanvasSpec.max_items={self.max_items} must be >= 1')
            return
        if self.scale[1] > self.size // self.grid:
            raise ValueError(f'CanvasSpec.scale={self.scale} does not fit a cell of '
                             f'{self.size // self.grid} px (size={self.size}, grid={self.grid})')
        if not 1 <= self.max_items <= self.grid ** 2:
            raise ValueError(f'CanvasSpec.max_items={self.max_items} must be in '
                             f'[1, grid**2={self.grid ** 2}]')


#: The harder set of the detection/segmentation benchmark: 160x160 canvases, 2-8 items from
#: 16 to 72 px placed freely (occlusion), up to 4 distractor shapes.
HARD = CanvasSpec(size=160, max_items=8, scale=(16, 72), placement='free', clutter=4)


def _clutter(canvas: np.ndarray, rng: np.random.Generator, spec: CanvasSpec) -> None:
    """Paints 0..``spec.clutter`` tinted rectangles/ellipses with noise texture (in place)."""
    size = spec.size
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, spec.clutter + 1))):
        h, w = (int(v) for v in rng.integers(6, size // 3, 2))
        y0, x0 = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
        if rng.random() < 0.5:
            shape = (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)
        else:
            cy, cx = y0 + h / 2, x0 + w / 2
            shape = ((yy - cy) / (h / 2)) ** 2 + ((xx - cx) / (w / 2)) ** 2 <= 1
        tone = rng.uniform(60, 200, 3) * rng.uniform(0.4, 1.0)
        canvas[shape] = (tone + rng.normal(0, 25, (int(shape.sum()), 3))).clip(0, 255)


def _canvases(num: int, spec: CanvasSpec, split: str, seed: int, root: str | None):
    """Yields ``(rgb HxWx3 uint8, [(label, bool mask HxW)])`` per canvas."""
    images, labels = load_fashion_mnist('train' if split == 'train' else 'test', root)
    images, labels = images[:, 0].numpy(), labels.numpy()
    rng = np.random.default_rng(seed)
    cell = spec.size // spec.grid
    for _ in range(num):
        canvas = rng.normal(40, 12, (spec.size, spec.size, 3)).clip(0, 255)
        if spec.clutter:
            _clutter(canvas, rng, spec)
        items = []
        count = int(rng.integers(1, spec.max_items + 1))
        slots = rng.permutation(spec.grid ** 2)[:count] if spec.placement == 'grid' \
            else range(count)
        for c in slots:
            idx = int(rng.integers(len(images)))
            side = int(rng.integers(spec.scale[0], spec.scale[1] + 1))
            item = np.asarray(Image.fromarray(images[idx]).resize((side, side),
                                                                  Image.BILINEAR))
            mask_small = item > _THRESHOLD
            if not mask_small.any():
                continue
            if spec.placement == 'grid':
                y0 = (c // spec.grid) * cell + int(rng.integers(0, cell - side + 1))
                x0 = (c % spec.grid) * cell + int(rng.integers(0, cell - side + 1))
            else:
                y0, x0 = (int(v) for v in rng.integers(0, spec.size - side + 1, 2))
            tint = rng.uniform(0.5, 1.0, 3)
            region = canvas[y0:y0 + side, x0:x0 + side]
            region[mask_small] = item[mask_small, None] * tint
            mask = np.zeros((spec.size, spec.size), dtype=bool)
            mask[y0:y0 + side, x0:x0 + side] = mask_small
            if spec.placement == 'free':
                for _, earlier, _ in items:  # the new item hides what it covers
                    earlier &= ~mask
            items.append((int(labels[idx]), mask, int(mask_small.sum())))
        yield canvas.astype(np.uint8), [(lab, m) for lab, m, area in items
                                        if m.sum() >= spec.min_visible * area]


def _rle(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major run lengths starting with zeros)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': counts}


def make_coco_instances(out_dir: str | Path, num_train: int = 64, num_val: int = 16,
                        spec: CanvasSpec = CanvasSpec(), seed: int = 0,
                        root: str | None = None) -> Path:
    """Writes a COCO-format instance segmentation set (train from Fashion-MNIST train items,
    val from test items).

    Args:
        out_dir: Output directory (created).
        num_train: Training canvases.
        num_val: Validation canvases.
        spec: Canvas layout.
        seed: Random seed.
        root: Fashion-MNIST directory (default: searched).

    Returns:
        ``out_dir``. Layout: ``train/``, ``val/``, ``annotations/instances_{train,val}.json``.
    """
    out = Path(out_dir)
    (out / 'annotations').mkdir(parents=True, exist_ok=True)
    categories = [{'id': i + 1, 'name': n, 'supercategory': 'fashion'}
                  for i, n in enumerate(FASHION_MNIST_CLASSES)]
    for split, num, s in (('train', num_train, seed), ('val', num_val, seed + 1)):
        (out / split).mkdir(exist_ok=True)
        images, anns = [], []
        for i, (rgb, items) in enumerate(_canvases(num, spec, split, s, root)):
            name = f'{i:06d}.png'
            Image.fromarray(rgb).save(out / split / name)
            images.append({'id': i + 1, 'file_name': name, 'width': spec.size,
                           'height': spec.size})
            for label, mask in items:
                ys, xs = np.nonzero(mask)
                x0, y0 = int(xs.min()), int(ys.min())
                w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
                anns.append({'id': len(anns) + 1, 'image_id': i + 1, 'category_id': label + 1,
                             'bbox': [x0, y0, w, h], 'area': int(mask.sum()),
                             'segmentation': _rle(mask), 'iscrowd': 0})
        payload = {'images': images, 'annotations': anns, 'categories': categories}
        (out / 'annotations' / f'instances_{split}.json').write_text(json.dumps(payload))
    return out


def make_semantic_seg(out_dir: str | Path, num_train: int = 64, num_val: int = 16,
                      spec: CanvasSpec = CanvasSpec(), seed: int = 0,
                      root: str | None = None) -> Path:
    """Writes a semantic segmentation set (``img_dir``/``ann_dir``, PNG label maps).

    Args:
        out_dir: Output directory (created).
        num_train: Training canvases.
        num_val: Validation canvases.
        spec: Canvas layout.
        seed: Random seed.
        root: Fashion-MNIST directory (default: searched).

    Returns:
        ``out_dir``; label ``0`` is background, ``c + 1`` the Fashion-MNIST class ``c``
        (:data:`SEG_CLASSES`).
    """
    out = Path(out_dir)
    for split, num, s in (('train', num_train, seed), ('val', num_val, seed + 1)):
        (out / 'img_dir' / split).mkdir(parents=True, exist_ok=True)
        (out / 'ann_dir' / split).mkdir(parents=True, exist_ok=True)
        for i, (rgb, items) in enumerate(_canvases(num, spec, split, s, root)):
            label_map = np.zeros(rgb.shape[:2], dtype=np.uint8)
            for label, mask in items:
                label_map[mask] = label + 1
            Image.fromarray(rgb).save(out / 'img_dir' / split / f'{i:06d}.png')
            Image.fromarray(label_map).save(out / 'ann_dir' / split / f'{i:06d}.png')
    return out
