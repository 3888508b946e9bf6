# This project's first layout: d=8 consecutive INPUT channels, 2:8, k=256, a max-abs int8 scale
# (the paper's settings are mvq_resnet.py and its siblings). MVQ settings only (mvq_* keys, so
# this base never clashes with an upstream one).
# Leaf configs wire them in:
#   model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
#                mvq={{_base_.mvq_cfg}})
#   custom_hooks = [{{_base_.mvq_hook}}]
mvq_cfg = dict(
    method='mvq',          # 'mvq' | 'vq' | 'prune_vq'
    vector_axis='in_channel',
    block_size=8,          # d: sub-vector length along the input channels
    num_codewords=256,     # k
    n=2, m=8,              # N:M pruning inside each group of M input channels
    codebook_bits=8,       # int8 codewords + one fp32 scale per codebook
    codebook_scale='maxabs',
    kmeans_stop='objective',
    kmeans_iters=50,
    kmeans_init='kmeans++',
    importance='magnitude',
    skip_first_conv=True,  # the stem conv (C_in=3) stays dense
    seed=0,
)
mvq_hook = dict(
    type='mvq_plugin.MVQHook',
    sparse_finetune_iters=0,  # >0: N:M-sparse fine-tuning first (model.sparse_finetune=True)
    codebook_quant_start_iter=0,       # int8 codebook fake-quant (STE) from this iteration
    artifact='model.mvq',     # written to the work dir after training
)
