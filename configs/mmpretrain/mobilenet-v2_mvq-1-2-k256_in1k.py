# MobileNetV2 on ImageNet with the paper's MobileNet sparsity (1:2; d=8, k=256 our choice;
# configs/_base_/mvq/mvq_mobilenet.py): pointwise convs and the classifier are compressed; the
# depthwise convs (C_in/groups = 1) and the stem stay dense (listed in the plan with reasons).
_base_ = [
    'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py',
    '../_base_/mvq/mvq_mobilenet.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                 '.lsq_scale': dict(decay_mult=0.0)}))
