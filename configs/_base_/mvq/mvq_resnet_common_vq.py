# The paper's common-VQ baseline at the ResNet ratio (mvq_plugin.preset('resnet_common_vq')):
# plain k-means, d=8 consecutive output channels, k=1024, no pruning (~22x).
_base_ = ['./mvq_resnet.py']
mvq_cfg = dict(_delete_=True, preset='resnet_common_vq', seed=0)
mvq_hook = dict(sparse_finetune_iters=0)
