# ResNet-18 on ImageNet with the paper's MVQ (4:16, d=16 output channels, k=512, ~22x;
# configs/_base_/mvq/mvq_resnet.py). Start from a dense checkpoint:
#   python tools/train.py configs/mmpretrain/resnet18_mvq-4-16-k512_in1k.py \
#       --cfg-options load_from=resnet18_dense.pth
_base_ = [
    'mmpretrain::resnet/resnet18_8xb32_in1k.py',
    '../_base_/mvq/mvq_resnet.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
# Codewords train without weight decay.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                 '.lsq_scale': dict(decay_mult=0.0)}))
