# MVQ fine-tuning of the dense Fashion-MNIST ResNet-18 with per-layer settings chosen for a
# size budget (configs/_base_/mvq/mvq_budget.py) instead of one setting everywhere; schedule,
# hooks and optimizer as in resnet18_fashion-mnist_mvq.py:
#   python tools/train.py configs/demo/resnet18_fashion-mnist_mvq_budget.py \
#       --cfg-options model.init_checkpoint=work_dirs/demo/dense_w32_800/iter_800.pth \
#       model.model.backbone.base_channels=32 model.model.backbone.stem_channels=32 \
#       model.model.head.in_channels=256 model.budget.bytes=600kB
# (the dense checkpoint `make demo` writes: width 32, 800 iterations). The allocation runs when
# the model is built and logs its per-layer table; the same choice without training, written
# to a plan file that resnet18_fashion-mnist_mvq.py takes as model.allocation=plan.json:
#   python tools/allocate.py configs/demo/resnet18_fashion-mnist_mvq_budget.py --bytes 600kB \
#       --checkpoint work_dirs/demo/dense_w32_800/iter_800.pth --out plan.json --cfg-options ...
_base_ = ['./resnet18_fashion-mnist_mvq.py', '../_base_/mvq/mvq_budget.py']
model = dict(budget={{_base_.mvq_budget}}, calib_dataloader={{_base_.train_dataloader}},
             init_checkpoint=None)
