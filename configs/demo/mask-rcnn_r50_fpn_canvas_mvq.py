# MVQ fine-tuning of the dense canvas Mask R-CNN (prediction layers stay dense):
#   python tools/train.py configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py \
#       --cfg-options load_from=work_dirs/mask-rcnn_r50_fpn_canvas_dense/iter_300.pth
_base_ = [
    './mask-rcnn_r50_fpn_canvas_dense.py',
    '../_base_/mvq/mvq_2-8_k256.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}},
             exclude=[r'^rpn_head\.rpn_(cls|reg)$', r'^roi_head\.bbox_head\.fc_(cls|reg)$',
                      r'^roi_head\.mask_head\.conv_logits$'])
custom_hooks = [
    {{_base_.mvq_hook}},
    dict(type='mvq_plugin.HardwareCostHook', trace='data', arch='mvq',
         baseline='ews', arch_overrides=dict(rows=64, cols=64)),
]
max_iters = 100
optim_wrapper = dict(optimizer=dict(lr=0.005),
                     paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0)}))
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
                        eta_min=1e-4)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters))
