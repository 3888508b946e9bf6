# The paper's MVQ for ResNets (mvq_plugin.preset('resnet')): sub-vectors of d=16 consecutive
# output channels, 4:16 pruning inside them, k=512 codewords, int8 codebooks with an LSQ
# scale, k-means until fewer than 0.1 % of the assignments change; the 1000-way classifier
# (not a multiple of 16 outputs) at d=8, 2:8, k=512. ~22x on ResNet-18 and ResNet-50.
# Sparse phase: SR-STE, the paper's choice for classification.
# Leaf configs wire them in:
#   model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
#                mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
#   custom_hooks = [{{_base_.mvq_hook}}]
mvq_cfg = dict(preset='resnet', seed=0)
mvq_hook = dict(
    type='mvq_plugin.MVQHook',
    sparse_finetune_iters=0,     # the first iterations: N:M-sparse training (set it in a leaf)
    sparse_method='srste',       # 'srste' | 'fixed'
    codebook_quant_start_iter=0,  # int8 codebook fake-quant (STE, LSQ scale) from here
    artifact='model.mvq',
)
