"""The canvas sets: exact masks and boxes from real Fashion-MNIST items, deterministic."""


import numpy as np
import pytest
from PIL import Image

from mvq_plugin.data import load_fashion_mnist
from mvq_plugin.data.canvas import (
    SEG_CLASSES,
    CanvasSpec,
    _canvases,
    make_coco_instances,
    make_semantic_seg,
)

pycocotools = pytest.importorskip('pycocotools.coco')


def test_fashion_mnist_is_the_real_set():
    images, labels = load_fashion_mnist('test')
    assert images.shape == (10000, 1, 28, 28) and labels.shape == (10000, )
    assert np.bincount(labels.numpy()).tolist() == [1000] * 10


def test_coco_masks_and_boxes_are_exact(tmp_path):
    make_coco_instances(tmp_path, 6, 3, seed=3)
    coco = pycocotools.COCO(str(tmp_path / 'annotations' / 'instances_train.json'))
    items = list(_canvases(6, CanvasSpec(), 'train', 3, None))
    assert len(coco.getImgIds()) == 6
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert len(anns) == len(items[img_id - 1][1]) >= 1
        for ann, (label, mask) in zip(anns, items[img_id - 1][1]):
            assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
            ys, xs = np.nonzero(mask)
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                   ys.max() - ys.min() + 1]
            assert ann['category_id'] == label + 1 and ann['area'] == mask.sum()
    img = Image.open(tmp_path / 'val' / '000000.png')
    assert img.size == (128, 128) and img.mode == 'RGB'


def test_semantic_labels_match_items_and_are_deterministic(tmp_path):
    make_semantic_seg(tmp_path / 'a', 4, 2, seed=1)
    make_semantic_seg(tmp_path / 'b', 4, 2, seed=1)
    items = list(_canvases(4, CanvasSpec(), 'train', 1, None))
    for i, (_, objs) in enumerate(items):
        label_map = np.array(Image.open(tmp_path / 'a' / 'ann_dir' / 'train' / f'{i:06d}.png'))
        expected = np.zeros_like(label_map)
        for label, mask in objs:
            expected[mask] = label + 1
        assert np.array_equal(label_map, expected)
        assert label_map.max() < len(SEG_CLASSES)
        a = (tmp_path / 'a' / 'img_dir' / 'train' / f'{i:06d}.png').read_bytes()
        assert a == (tmp_path / 'b' / 'img_dir' / 'train' / f'{i:06d}.png').read_bytes()


def test_bad_spec_is_refused():
    with pytest.raises(ValueError, match='scale'):
        CanvasSpec(size=64, grid=2, scale=(20, 40))
    with pytest.raises(ValueError, match='max_items'):
        CanvasSpec(max_items=5)


def test_free_placement_occludes_and_annotates_what_stays_visible():
    from mvq_plugin.data.canvas import HARD
    counts, overlapped = [], 0
    for rgb, items in _canvases(40, HARD, 'train', 0, None):
        assert rgb.shape == (160, 160, 3)
        counts.append(len(items))
        masks = np.stack([m for _, m in items]) if items else np.zeros((0, 160, 160), bool)
        # occlusion leaves every pixel to at most one instance: the later item on top
        assert (masks.sum(0) <= 1).all()
        boxes = [(ys.min(), ys.max(), xs.min(), xs.max())
                 for ys, xs in (np.nonzero(m) for m in masks)]
        overlapped += sum(a[0] <= b[1] and b[0] <= a[1] and a[2] <= b[3] and b[2] <= a[3]
                          for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert 1 <= min(counts) and max(counts) <= 8 and np.mean(counts) > 3.5
    assert overlapped >= 20  # boxes overlap: items hide parts of each other
    # the same seed gives the same canvases
    a = next(_canvases(1, HARD, 'val', 5, None))
    b = next(_canvases(1, HARD, 'val', 5, None))
    assert (a[0] == b[0]).all() and len(a[1]) == len(b[1])


def test_free_placement_drops_items_hidden_below_min_visible():
    spec = CanvasSpec(size=64, max_items=8, scale=(40, 60), placement='free',
                      min_visible=0.9)
    loose = CanvasSpec(size=64, max_items=8, scale=(40, 60), placement='free',
                       min_visible=0.01)
    strict_n = sum(len(i) for _, i in _canvases(30, spec, 'train', 2, None))
    loose_n = sum(len(i) for _, i in _canvases(30, loose, 'train', 2, None))
    assert strict_n < loose_n  # large items on a small canvas hide each other


def test_canvas_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="placement='random'"):
        CanvasSpec(placement='random')
    with pytest.raises(ValueError, match=r'scale=\(40, 20\)'):
        CanvasSpec(scale=(40, 20), placement='free')
    with pytest.raises(ValueError, match='clutter=-1'):
        CanvasSpec(clutter=-1)
