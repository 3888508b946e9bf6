# Mask R-CNN R50-FPN 1x COCO with the paper's detector setting (75 %, 4:16, d=16, k=256;
# configs/_base_/mvq/mvq_mask_rcnn.py). The prediction layers stay dense: RPN objectness and
# box deltas, the box classifier/regressor and the mask logits (small, and every error there
# hits the metric directly). Every backbone stage trains (upstream freezes the stem and the
# first stage): the sparse phase trains the dense weights of every compressed layer.
_base_ = [
    './mask-rcnn_r50_fpn_1x_coco_all-stages-trainable.py',
    '../_base_/mvq/mvq_mask_rcnn.py',
    '../_base_/hw/mvq_vs_ews_64x64_data.py',
]
custom_imports = dict(imports=['mvq_plugin'], allow_failed_imports=False)
model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
             mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
custom_hooks = [{{_base_.mvq_hook}}, {{_base_.hw_hook}}]
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.codebook': dict(decay_mult=0.0),
                                                 '.lsq_scale': dict(decay_mult=0.0)}))
