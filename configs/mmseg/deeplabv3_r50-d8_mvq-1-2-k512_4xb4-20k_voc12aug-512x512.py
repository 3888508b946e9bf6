# DeepLabV3 R50-D8, VOC 2012 aug, 512x512, with the paper's segmenter setting (50 %, 1:2, d=8,
# k=512; configs/_base_/mvq/mvq_deeplabv3.py); the per-pixel classifiers stay dense.
_base_ = [
    'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    '../_base_/mvq/mvq_deeplabv3.py',
    '../_base_/hw/mvq_vs_ews_64x64.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                 '.lsq_scale': dict(decay_mult=0.0)}))
