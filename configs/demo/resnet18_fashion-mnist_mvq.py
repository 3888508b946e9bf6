# MVQ (2:8, k=256, d=8, int8 codebooks) fine-tuning of the dense Fashion-MNIST ResNet-18:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_mvq.py \
#       --cfg-options load_from=work_dirs/demo/dense_1200/iter_1200.pth
# As written: one-shot (cluster at once, then only the codewords and BN/biases train). The
# demo adds the recipe of configs/_base_/mvq/mvq_recipe_2-8_k256.py by --cfg-options: sparse
# fine-tuning (model.sparse_finetune=True, custom_hooks.0.sparse_finetune_iters), distillation
# (custom_hooks.0.distill.*) and the data-aware settings (model.mvq.importance/kmeans_weights,
# custom_hooks.0.calib_batches).
_base_ = [
    './resnet18_fashion-mnist_dense.py',
    '../_base_/mvq/mvq_2-8_k256.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}})
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
