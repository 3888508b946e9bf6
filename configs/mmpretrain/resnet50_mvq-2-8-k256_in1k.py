# ResNet-50 on ImageNet with MVQ (2:8, k=256, d=8). Start from a dense checkpoint:
#   python tools/train.py configs/mmpretrain/resnet50_mvq-2-8-k256_in1k.py \
#       --cfg-options load_from=resnet50_dense.pth
_base_ = [
    'mmpretrain::resnet/resnet50_8xb32_in1k.py',
    '../_base_/mvq/mvq_2-8_k256.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}})
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
# Codewords train without weight decay.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0)}))
