"""Torch-Pruning channel pruning before MVQ: couplings stay consistent, forward shapes hold,
and the artifact of a channel-pruned MVQ model loads bit-exactly into a freshly built one."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core.channels import CHANNELS_ATTR, apply_channel_pruning, prune_channels
from mvq_plugin.io import read_header


def _resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _mobilenet_v2():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10).eval()


@pytest.mark.parametrize('build', [_resnet18, _mobilenet_v2])
def test_pruned_then_compressed_keeps_shapes_and_exports_bit_exactly(build, tmp_path):
    model = build()
    fresh = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 32)
    out_shape = model(x).shape
    record = prune_channels(model, (1, 3, 32, 32), 0.25, round_to=8)
    assert record.params_after < 0.75 * record.params_before
    assert record.macs_after < 0.8 * record.macs_before
    assert model(x).shape == out_shape
    # Couplings: every residual sum / depthwise conv still agrees on its channels.
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d) and mod.groups > 1:
            assert mod.groups == mod.in_channels == mod.out_channels
    if build is _resnet18:
        blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
                  for b in layer]
        for b in blocks:
            short = b.downsample[0].out_channels if b.downsample is not None else \
                b.conv1.in_channels
            assert b.conv2.out_channels == short
    mvq.compress(model, mvq.MVQConfig(num_codewords=32, kmeans_iters=3))
    mvq.set_codebook_quant(model, True)
    with torch.no_grad():
        expected = model(x)
    assert expected.shape == out_shape
    path = tmp_path / 'pruned.mvq'
    mvq.save(model, path)
    assert read_header(path)['channel_pruning']['history'] == record.history
    mvq.load(fresh, path)  # built unpruned: pruned the same way, then loaded
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
    assert getattr(fresh, CHANNELS_ATTR) == record


def test_stage_ratios_and_ignored_layers():
    model = _resnet18()
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    prune_channels(model, (1, 3, 32, 32), None, stage_ratios={'layer4': 0.5})
    after = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert after['layer4.0.conv1'] == widths['layer4.0.conv1'] // 2
    assert after['layer1.0.conv1'] == widths['layer1.0.conv1']
    assert model.fc.out_features == 10  # the classifier's outputs are never pruned


def test_a_record_that_does_not_fit_leaves_the_model_unchanged():
    pruned = _resnet18()
    record = prune_channels(pruned, (1, 3, 32, 32), 0.25).to_dict()
    other = _mobilenet_v2()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match='does not fit this MobileNetV2'):
        apply_channel_pruning(other, record)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(ValueError, match='history='):
        apply_channel_pruning(_resnet18(), dict(record, history=[['fc', 'yes', [0]]]))


def test_bad_ratios_are_named():
    with pytest.raises(ValueError, match=r'ratio=1.5 must be a fraction'):
        prune_channels(_resnet18(), (1, 3, 32, 32), 1.5)
    with pytest.raises(ValueError, match="pattern 'stage9' matches no"):
        prune_channels(_resnet18(), (1, 3, 32, 32), None, stage_ratios={'stage9': 0.5})
    model = _resnet18()
    mvq.compress(model, mvq.MVQConfig(num_codewords=16, kmeans_iters=1))
    with pytest.raises(ValueError, match='needs a dense model'):
        prune_channels(model, (1, 3, 32, 32), 0.25)


@pytest.mark.mmcv_ops
def test_mmdet_fpn_neck_couplings():
    pytest.importorskip('mmdet')
    from mmdet.models.backbones import ResNet
    from mmdet.models.necks import FPN

    class Detector(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ResNet(depth=18, out_indices=(0, 1, 2, 3))
            self.neck = FPN([64, 128, 256, 512], 64, num_outs=5)

        def forward(self, x):
            return self.neck(self.backbone(x))

    torch.manual_seed(0)
    det = Detector().eval()
    x = torch.randn(1, 3, 64, 64)
    shapes = [o.shape for o in det(x)]
    record = prune_channels(det, (1, 3, 64, 64), 0.25, ignored=[r'neck\.fpn_convs'],
                            round_to=8)
    assert [o.shape for o in det(x)] == shapes  # the neck's outputs keep their channels
    assert record.params_after < record.params_before
    for i, lateral in enumerate(det.neck.lateral_convs):
        stage = getattr(det.backbone, f'layer{i + 1}')
        assert lateral.conv.in_channels == stage[-1].conv2.out_channels
