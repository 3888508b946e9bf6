# Dense ResNet-18 (mmpretrain's, unchanged but for 1 input channel and 10 classes) on the
# real Fashion-MNIST (60k/10k, data/fashion_mnist, unpacked by `make setup`).
# As written: the standard width 64, 1200 iterations:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_dense.py
# tools/demo.py trains it once at width 32 for 800 iterations (by --cfg-options) into
# work_dirs/demo/dense_w32_800/iter_800.pth and reuses that checkpoint.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']

data_root = 'data/fashion_mnist'
model = dict(backbone=dict(in_channels=1), head=dict(num_classes=10, topk=(1, )))
data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.02], to_rgb=False)

train_dataloader = dict(
    batch_size=128, num_workers=2, persistent_workers=False,
    dataset=dict(_delete_=True, type='FashionMNIST', data_root=data_root, download=False,
                 test_mode=False, pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=500, num_workers=2, persistent_workers=False,
    dataset=dict(_delete_=True, type='FashionMNIST', data_root=data_root, download=False,
                 test_mode=True, pipeline=[dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_iters = 1200
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters, eta_min=1e-4),
]
train_cfg = dict(_delete_=True, by_epoch=False, max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    logger=dict(type='LoggerHook', interval=50))
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
