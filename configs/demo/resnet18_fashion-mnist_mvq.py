# The paper's MVQ (sub-vectors of d=16 output channels, 4:16, int8 codebooks with an LSQ scale)
# with k=256 codewords (the demo's half-width model has too few sub-vectors per layer for the
# paper's k=512) fine-tuning the dense Fashion-MNIST ResNet-18 that tools/demo.py trains:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_mvq.py \
#       --cfg-options load_from=work_dirs/demo/dense_w32_800/iter_800.pth \
#       model.model.backbone.base_channels=32 model.model.backbone.stem_channels=32 \
#       model.model.head.in_channels=256
# As written: one-shot (cluster at once, then only the codewords and BN/biases train). The
# demo adds a sparse phase by --cfg-options (model.sparse_finetune=True,
# custom_hooks.0.sparse_finetune_iters; SR-STE as the base sets it), distillation
# (custom_hooks.0.distill.*) and the data-aware settings (model.mvq.importance/kmeans_weights,
# custom_hooks.0.calib_batches).
_base_ = [
    './resnet18_fashion-mnist_dense.py',
    '../_base_/mvq/mvq_resnet.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq=dict(preset='resnet', num_codewords=256, seed=0))
custom_hooks = [
    {{_base_.mvq_hook}},
    dict(type='mvq_plugin.HardwareCostHook', input_shape=(1, 1, 28, 28),
         arch='EWS-CMS_64x64', baseline='EWS_64x64'),
]
max_iters = 400
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                    '.lsq_scale': dict(decay_mult=0.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
                        eta_min=1e-4)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
