# MVQ fine-tuning of the dense Fashion-MNIST ResNet-18 with per-layer settings chosen for a
# size budget (configs/_base_/mvq/mvq_budget.py) instead of one setting everywhere:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_mvq_budget.py \
#       --cfg-options model.init_checkpoint=work_dirs/demo/dense_1200/iter_1200.pth \
#       model.budget.bytes=1MiB
# The allocation runs when the model is built and logs its per-layer table; the same choice
# without training: python tools/allocate.py THIS_CONFIG --bytes 1MiB --checkpoint CKPT
_base_ = [
    './resnet18_fashion-mnist_dense.py',
    '../_base_/mvq/mvq_budget.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, budget={{_base_.mvq_budget}},
             calib_dataloader={{_base_.train_dataloader}}, init_checkpoint=None)
custom_hooks = [
    {{_base_.mvq_hook}},
    dict(type='mvq_plugin.HardwareCostHook', input_shape=(1, 1, 28, 28), arch='mvq',
         baseline='ews', arch_overrides=dict(rows=64, cols=64)),
]
max_iters = 400
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
                        eta_min=1e-4)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
