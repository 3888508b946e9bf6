# The paper's MobileNet/EfficientNet sparsity, 1:2 (mvq_plugin.preset('mobilenet')); the paper
# gives no d or k for them: d=8 output channels, k=256 (our choice). Depthwise convs stay dense.
_base_ = ['./mvq_resnet.py']
mvq_cfg = dict(_delete_=True, preset='mobilenet', seed=0)
