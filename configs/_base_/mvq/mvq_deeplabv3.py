# The paper's segmenter setting (mvq_plugin.preset('deeplabv3')): 50 % sparsity (1:2), d=16
# output channels, k=512 (d and k our choice); the classifier convs (conv_seg) stay dense.
# Sparse phase: a fixed magnitude mask (ASP), the paper's choice for segmentation.
_base_ = ['./mvq_resnet.py']
mvq_cfg = dict(_delete_=True, preset='deeplabv3', seed=0)
mvq_hook = dict(sparse_method='fixed')
