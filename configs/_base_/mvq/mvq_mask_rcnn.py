# The paper's detector setting (mvq_plugin.preset('mask_rcnn')): 75 % sparsity (4:16), d=16
# output channels, k=256 (the paper's 26x, counted as its Eq. 7 over the compressed layers);
# the prediction layers (RPN objectness and deltas, box classifier and regressor, mask
# logits) stay dense. Sparse phase: a fixed magnitude mask (ASP), the
# paper's choice for detection (SR-STE was unstable there); feature distillation at the neck.
_base_ = ['./mvq_resnet.py']
mvq_cfg = dict(_delete_=True, preset='mask_rcnn', seed=0)
mvq_hook = dict(sparse_method='fixed', distill=dict(logits_weight=0.0, features={'neck': 1.0}))
