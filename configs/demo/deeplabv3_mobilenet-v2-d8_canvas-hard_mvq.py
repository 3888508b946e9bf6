# The paper's segmenter recipe on the hard-canvas DeepLab-V3 MobileNetV2 (configs/_base_/mvq/
# mvq_deeplabv3.py: 1:2 = 50 % sparsity, d=8 output channels, k=512, int8 LSQ codebooks;
# the per-pixel classifiers dense): a fixed magnitude mask (ASP) for the first half of the
# budget, masked k-means, then codebook fine-tuning, distilled from the dense model at the
# decode head's input (the backbone's last feature map). Start from the dense checkpoint:
#   python tools/train.py configs/demo/deeplabv3_mobilenet-v2-d8_canvas-hard_mvq.py \
#       --cfg-options load_from=work_dirs/detseg/deeplabv3_dense/iter_3000.pth \
#       custom_hooks.0.sparse_finetune_iters=200
_base_ = [
    './deeplabv3_mobilenet-v2-d8_canvas-hard_dense.py',
    '../_base_/mvq/mvq_deeplabv3.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
max_iters = 400
optim_wrapper = dict(optimizer=dict(lr=2e-4),  # AdamW (the dense config's), a fifth of its lr
                     paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                     '.lsq_scale': dict(decay_mult=0.0)}))
param_scheduler = [dict(type='PolyLR', eta_min=1e-6, power=0.9, begin=0, end=max_iters,
                        by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
