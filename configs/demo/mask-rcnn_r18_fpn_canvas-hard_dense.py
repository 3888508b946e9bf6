# Mask R-CNN with a ResNet-18 FPN backbone, trained from random init on the hard canvas set
# (data/canvas_coco_hard: real Fashion-MNIST items placed freely with occlusion, 16-72 px,
# distractor shapes, 160x160; `python tools/make_canvas_data.py --hard --train 3000 --val 300`).
# Changes from mmdet's mask-rcnn_r50_fpn_1x_coco.py, and why:
# - backbone depth 18 and FPN in_channels [64, 128, 256, 512]: as mmdet's own
#   mask-rcnn_r18_fpn config (an R50 step takes 18-30 s on 2 cores; R18 trains here);
# - no Pretrained init (nothing downloads): random init, so every stage trains
#   (frozen_stages=-1 instead of 1) and BN normalises with batch statistics and learns its
#   running statistics (norm_eval=False instead of True; upstream keeps the pretrained BN
#   statistics fixed);
# - RPN anchor scale 4 instead of 8: anchors of 16-256 px for 16-72 px items (8 gives
#   32-512 px, larger than most items);
# - R-CNN sampler 64 RoIs per image instead of 512 (at most 16 positives for the few items of
#   a canvas), mask head convs 128 channels instead of 256, RPN training proposals 1000 before
#   and 500 after NMS instead of 2000 / 1000: RoIAlign (mmcv's CPU kernel, forward and
#   backward), the mask head and NMS dominated the step;
# - FPN, RPN and RoI heads 128 channels wide instead of 256: the convolutions and RoIAlign of
#   a 256-wide FPN at 160x160 took half of what remained. With these, a step at batch 4 takes
#   0.9 s instead of 2.3 s on 2 AVX-512 cores (M3, Intel Xeon), so the dense model and every row of the
#   benchmark fit one working session; the ResNet-18 backbone is upstream's;
# - 10 classes; 160x160 images, batch 4, SGD lr 0.01 with warm-up and cosine decay over
#   2500 iterations (the 1x schedule is 90k iterations at batch 16, lr 0.02);
# - the test-time mask threshold, NMS and score settings stay upstream's.
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']

data_root = 'data/canvas_coco_hard/'
metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                         'Shirt', 'Sneaker', 'Bag', 'Ankle boot'))
fpn_channels = 128
model = dict(
    backbone=dict(depth=18, init_cfg=None, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels,
                  anchor_generator=dict(scales=[4])),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=fpn_channels),
                  mask_roi_extractor=dict(out_channels=fpn_channels),
                  bbox_head=dict(in_channels=fpn_channels, num_classes=10),
                  mask_head=dict(in_channels=fpn_channels, num_classes=10,
                                 conv_out_channels=128)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=500),
                   rcnn=dict(sampler=dict(num=64))))
img_scale = (160, 160)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_iters = 2500
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=200, end=max_iters, eta_min=2e-4),
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=1000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=2),
    # validations logged at the iteration, not at the epoch (0 in an iteration-based loop)
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
