# The paper's segmenter setting (mvq_plugin.preset('deeplabv3')): 50 % sparsity (1:2), d=8
# output channels, k=512 (the paper's 19x, counted as its Eq. 7 over the compressed layers);
# the classifier convs (conv_seg) stay dense.
# Sparse phase: a fixed magnitude mask (ASP), the paper's choice for segmentation; feature
# distillation from the dense model on the backbone's outputs (what the decode heads read:
# an EncoderDecoder has no neck).
_base_ = ['./mvq_resnet.py']
mvq_cfg = dict(_delete_=True, preset='deeplabv3', seed=0)
mvq_hook = dict(sparse_method='fixed', distill=dict(logits_weight=0.0, features={'backbone': 1.0}))
