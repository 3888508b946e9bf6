# The paper's detector recipe on the hard-canvas Mask R-CNN R18-FPN (configs/_base_/mvq/
# mvq_mask_rcnn.py: 4:16 = 75 % sparsity, d=16 output channels, k=256, int8 LSQ codebooks;
# prediction layers dense): a fixed magnitude mask (ASP) for the first half of the budget,
# masked k-means, then codebook fine-tuning, both phases distilled from the dense model at
# the neck. Start from the dense checkpoint, half the iterations sparse:
#   python tools/train.py configs/demo/mask-rcnn_r18_fpn_canvas-hard_mvq.py --cfg-options \
#       load_from=work_dirs/detseg/mask_rcnn_dense/iter_2500.pth \
#       custom_hooks.0.sparse_finetune_iters=200
_base_ = [
    './mask-rcnn_r18_fpn_canvas-hard_dense.py',
    '../_base_/mvq/mvq_mask_rcnn.py',
    '../_base_/hw/mvq_vs_ews_64x64_data.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
max_iters = 400
optim_wrapper = dict(optimizer=dict(lr=0.005),
                     paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                     '.lsq_scale': dict(decay_mult=0.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
                        eta_min=1e-4)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
