# MVQ fine-tuning of the dense Fashion-MNIST ResNet-18 with per-layer settings chosen for a
# size budget (configs/_base_/mvq/mvq_budget.py) instead of one setting everywhere; schedule,
# hooks and optimizer as in resnet18_fashion-mnist_mvq.py:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_mvq_budget.py \
#       --cfg-options model.init_checkpoint=work_dirs/demo/dense_1200/iter_1200.pth \
#       model.budget.bytes=1MiB
# The allocation runs when the model is built and logs its per-layer table; the same choice
# without training: python tools/allocate.py THIS_CONFIG --bytes 1MiB --checkpoint CKPT
_base_ = ['./resnet18_fashion-mnist_mvq.py', '../_base_/mvq/mvq_budget.py']
model = dict(budget={{_base_.mvq_budget}}, calib_dataloader={{_base_.train_dataloader}},
             init_checkpoint=None)
