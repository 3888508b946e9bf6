# mmdet's Mask R-CNN R50-FPN 1x COCO with every backbone stage trainable (upstream freezes the
# stem and the first stage of its ImageNet-pretrained ResNet, frozen_stages=1). MVQ's sparse
# phase trains the dense weights of every compressed layer so that they recover from the N:M
# mask, and the first stage is compressed too; `MVQModel(sparse_finetune=True)` refuses a
# model that freezes a compressed layer. The MVQ leaf inherits this file instead of upstream's.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']
model = dict(backbone=dict(frozen_stages=-1))
