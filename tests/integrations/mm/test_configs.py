"""Every shipped config loads and builds; bad MVQ settings fail early, naming the key."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402

import mvq_plugin  # noqa: E402,F401
from mvq_plugin.core import Stage, layer_stages  # noqa: E402
from mvq_plugin.integrations.mm import MVQHook  # noqa: E402
from mvq_plugin.integrations.mm.config_model import build_model_from_config  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
#: Every shipped MVQ config (the dense demo configs are the sources they inherit).
LEAVES = sorted(str(p.relative_to(REPO)) for d in ('mmpretrain', 'mmdet', 'mmseg', 'demo')
                for p in (REPO / 'configs' / d).glob('*.py') if 'mvq' in p.name)
#: Detection and segmentation leaves: their models need mmcv's compiled ops.
DETSEG = ('mmdet/', 'mmseg/', 'mask-rcnn', 'deeplab', 'fcn_')


def _build(cfg: Config):
    return build_model_from_config(cfg)[0]


def test_every_leaf_is_listed():
    names = {Path(p).name for p in LEAVES}
    assert len(LEAVES) == 12 and {
            'resnet18_mvq-4-16-k512_in1k.py', 'resnet50_mvq-4-16-k512_in1k.py',
            'mobilenet-v2_mvq-1-2-k256_in1k.py', 'mask-rcnn_r50_fpn_mvq-4-16-k256_1x_coco.py',
            'deeplabv3_r50-d8_mvq-1-2-k512_4xb4-20k_voc12aug-512x512.py',
            'fcn_r50-d8_mvq-1-2-k512_4xb4-20k_voc12aug-512x512.py',
            'resnet18_fashion-mnist_mvq_budget.py', 'mask-rcnn_r18_fpn_canvas-hard_mvq.py',
            'deeplabv3_mobilenet-v2-d8_canvas-hard_mvq.py'} <= names


@pytest.mark.slow
@pytest.mark.parametrize('path', [
    pytest.param(p, marks=pytest.mark.mmcv_ops) if any(s in p for s in DETSEG) else p
    for p in LEAVES])
def test_leaf_config_loads_and_builds(path):
    cfg = Config.fromfile(str(REPO / path))
    assert cfg.model.type == 'mvq_plugin.MVQModel'
    hooks = [h['type'] for h in cfg.custom_hooks]
    assert 'mvq_plugin.MVQHook' in hooks
    cfg.model.mvq.num_codewords = 16  # plan only: no clustering happens at build time
    if cfg.model.get('budget') is not None:
        # The allocation needs dense weights and data: tests/integrations/mm/test_budget.py.
        cfg.model.budget = None
    model = _build(cfg)
    the_plan = model.mvq_plan
    assert the_plan.compressed, path
    assert set(layer_stages(model).values()) == {Stage.DENSE}
    reasons = {lp.name: lp.reason for lp in the_plan.skipped}
    if 'mobilenet' in path:
        assert any('depthwise' in r for r in reasons.values())
        assert all(('depthwise' in reasons[n]) for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    if 'mask-rcnn' in path:
        for name in ('rpn_head.rpn_cls', 'rpn_head.rpn_reg', 'roi_head.bbox_head.fc_cls',
                     'roi_head.bbox_head.fc_reg', 'roi_head.mask_head.conv_logits'):
            assert reasons[name].startswith('excluded by pattern'), name
    if '/mmseg/' in path or 'deeplab' in path:
        assert reasons['decode_head.conv_seg'].startswith('excluded by pattern')
    # The optimizer sees the codewords from the start.
    params = {id(p) for p in model.parameters()}
    assert all(id(q.codebook) in params for q in mvq_plugin.quantized_layers(model).values())


@pytest.mark.slow
@pytest.mark.mmcv_ops
@pytest.mark.parametrize('config,preset,eq7,whole', [
    # the paper's Table 6: Mask R-CNN R50-FPN 75 % at 26x, DeepLab-V3 MobileNetV2 50 % at 19x
    ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', 'mask_rcnn', 25.85, 18.09),
    ('mmseg::mobilenet_v2/mobilenet-v2-d8_deeplabv3_4xb4-160k_ade20k-512x512.py', 'deeplabv3',
     19.00, 16.88),
])
def test_detection_and_segmentation_presets_land_at_the_papers_ratios(config, preset, eq7, whole):
    """The ratio the paper's Eq. 7 gives over the compressed layers, and the whole model's."""
    from mmengine.hub import get_config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    cfg = get_config(config)  # the upstream file inside the installed package
    scope = config.split('::')[0]
    init_default_scope(scope)
    with DefaultScope.overwrite_default_scope(scope):
        model_cfg = cfg.model
        model_cfg.pop('data_preprocessor', None)
        model_cfg.pop('pretrained', None)
        if scope == 'mmseg':  # VOC's 21 classes, the inference model (no auxiliary head)
            model_cfg.backbone.init_cfg = None
            model_cfg.decode_head.num_classes = 21
            model_cfg.pop('auxiliary_head')
        model = MODELS.build(model_cfg)
    plan = mvq_plugin.plan(model, mvq_plugin.preset(preset))
    assert plan.layers_ratio == pytest.approx(eq7, abs=0.01)
    assert plan.compression_ratio(model) == pytest.approx(whole, abs=0.01)
    dense = {lp.name for lp in plan.skipped}
    if preset == 'mask_rcnn':
        assert 'roi_head.bbox_head.shared_fcs.0' not in dense  # the FCs are compressed
        assert dense == {'backbone.conv1', 'rpn_head.rpn_cls', 'rpn_head.rpn_reg',
                         'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg',
                         'roi_head.mask_head.upsample', 'roi_head.mask_head.conv_logits'}


@pytest.mark.slow
@pytest.mark.mmcv_ops
def test_a_sparse_phase_refuses_frozen_stages_at_build_time():
    """mmdet's ResNet freezes its stem and first stage in ``train()`` (``frozen_stages=1``): a
    sparse phase could not train those compressed layers, so the build says so; the shipped
    COCO leaf inherits a config with every stage trainable."""
    cfg = Config.fromfile(str(REPO / 'configs/mmdet/mask-rcnn_r50_fpn_mvq-4-16-k256_1x_coco.py'))
    assert cfg.model.model.backbone.frozen_stages == -1
    cfg.model.mvq.num_codewords = 16
    cfg.model.model.backbone.frozen_stages = 1  # upstream's
    with pytest.raises(ValueError, match=r"freezes 10 of them \(\['backbone\.layer1\.0\.conv1'.*"
                                         r"frozen_stages=-1"):
        _build(cfg)
    cfg.model.sparse_finetune = False  # nothing trains the dense weights: allowed
    _build(cfg)


def test_unknown_layer_pattern_fails_naming_it():
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    cfg.model.exclude = [r'^backbone\.layer9\.']
    with pytest.raises(ValueError, match=r"exclude pattern '\^backbone\\\\.layer9"):
        _build(cfg)


def test_nm_not_fitting_block_fails_naming_field():
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    cfg.model.mvq.n, cfg.model.mvq.m = 2, 3
    with pytest.raises(ValueError, match=r'm=3 must divide block_size=16'):
        _build(cfg)


def test_missing_init_checkpoint_fails_naming_key(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    cfg.model.init_checkpoint = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError, match='model.init_checkpoint'):
        _build(cfg)


def test_init_checkpoint_without_a_layer_fails(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    dense = _build(Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_dense.py')))
    state = dense.state_dict()
    del state['backbone.layer3.0.conv2.weight']
    torch.save(state, tmp_path / 'partial.pth')
    cfg.model.init_checkpoint = str(tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match='backbone.layer3.0.conv2'):
        _build(cfg)


def test_init_checkpoint_weights_reach_the_mvq_layers(tmp_path):
    dense = _build(Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_dense.py')))
    torch.save({'state_dict': dense.state_dict()}, tmp_path / 'dense.pth')
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    cfg.model.init_checkpoint = str(tmp_path / 'dense.pth')
    model = _build(cfg)
    layer = model.backbone.layer1[0].conv1
    assert torch.equal(layer.parametrizations.weight.original,
                       dense.backbone.layer1[0].conv1.weight)
    assert model.backbone.is_init  # the runner's init_weights will not overwrite them


class _Runner:
    """The two attributes MVQHook.before_run reads."""

    def __init__(self, model, load_from):
        self.model = model
        self.cfg = Config(dict(load_from=load_from))


def test_missing_load_from_fails_before_training(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/demo/resnet18_fashion-mnist_mvq.py'))
    model = _build(cfg)
    with pytest.raises(FileNotFoundError, match='load_from'):
        MVQHook().before_run(_Runner(model, str(tmp_path / 'nope.pth')))


def test_hook_arguments_are_validated():
    with pytest.raises(ValueError, match='sparse_finetune_iters'):
        MVQHook(sparse_finetune_iters=-1)
    with pytest.raises(ValueError, match='backend'):
        MVQHook(backend='gpu')
    assert os.path.basename(MVQHook().artifact) == 'model.mvq'


@pytest.mark.mmcv_ops
def test_upstream_init_rules_run_on_the_dense_structure():
    """The builder runs the upstream init rules (mmdet's Xavier/Normal rules, overrides by
    name) on the upstream structure before the MVQ structure exists; the runner's later
    init_weights call changes nothing (no patched method, no private flag written)."""
    cfg = Config.fromfile(str(REPO / 'configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py'))
    cfg.model.mvq.num_codewords = 16
    model = _build(cfg)
    assert model.is_init and 'init_weights' not in vars(model)
    fpn = model.neck.fpn_convs[0].conv
    w = fpn.parametrizations.weight.original
    bound = (6 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5  # Xavier uniform ran on it
    assert 0.9 * bound < float(w.abs().max()) <= bound and not bool(fpn.bias.any())
    books = {n: q.codebook for n, q in mvq_plugin.quantized_layers(model).items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()  # what Runner._init_model_weights calls
    after_state = model.state_dict()  # (an LSQ scale is NaN until first used)
    assert all(torch.allclose(v.float(), after_state[k].float(), rtol=0, atol=0, equal_nan=True)
               for k, v in state.items())
    after = mvq_plugin.quantized_layers(model)
    assert all(after[n].codebook is b for n, b in books.items())
    assert not fpn.parametrizations.weight.original.requires_grad


@pytest.mark.slow
@pytest.mark.parametrize('config, dense, compressed, k', [
    # an upstream config: the tool's defaults (the paper's 4:16, d=16, k=512)
    pytest.param('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', 'backbone.conv1',
                 'neck.fpn_convs.0.conv', '512', marks=pytest.mark.mmcv_ops),
    # an MVQ config: its own settings (4:16, k=256)
    ('configs/demo/resnet18_fashion-mnist_mvq.py', 'backbone.conv1', 'backbone.layer4.1.conv2',
     '256'),
])
def test_plan_tool_prints_the_layer_names(tmp_path, config, dense, compressed, k):
    """``tools/plan.py`` lists every layer by name (the names ``exclude`` patterns match)."""
    import subprocess
    import sys
    if config.startswith('mmdet::'):
        leaf = tmp_path / 'upstream.py'  # an upstream config as is, URL backbone included
        leaf.write_text(f"_base_ = ['{config}']\n")
        config = str(leaf)
    proc = subprocess.run([sys.executable, str(REPO / 'tools' / 'plan.py'), config],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert 'first conv' in rows[dense] or 'C_in' in rows[dense], rows[dense]
    assert '4:16' in rows[compressed] and k in rows[compressed].split(), rows[compressed]
    summary, ratios = proc.stdout.splitlines()[-2:]
    assert 'layers compressed' in summary
    assert re.fullmatch(r"planned: [\d,]+ bits, [\d.]+x vs fp32 \(whole model.*\); [\d.]+x over "
                        r"the compressed layers \(the paper's Eq. 7\)", ratios), ratios
