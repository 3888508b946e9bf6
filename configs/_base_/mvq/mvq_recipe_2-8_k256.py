# The full MVQ recipe (docs/design.md section 3) on top of mvq_2-8_k256.py's settings:
# N:M prune -> sparse fine-tuning of the kept weights (the first `mvq_sparse_iters` of the
# run) -> masked k-means on the sparse-trained weights -> codebook fine-tuning with int8
# codebooks -> artifact; self-distillation from the dense model throughout (logit KD at the
# classifier's `head.fc`; set `logits_module`, or `logits_weight=0` with `features` such as
# {'neck': 1.0} for detectors and segmentors).
# Leaf configs wire it in like mvq_2-8_k256.py, plus `sparse_finetune=True` on the model:
#   model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
#                mvq={{_base_.mvq_cfg}}, sparse_finetune=True)
#   custom_hooks = [{{_base_.mvq_hook}}]
# and set mvq_hook.sparse_finetune_iters to about half of train_cfg.max_iters.
_base_ = ['./mvq_2-8_k256.py']

mvq_cfg = dict(
    importance='magnitude',     # 'activation': |w| * input-channel norm (calibration batches)
    kmeans_weights='uniform',   # 'activation': k-means weighted by E[x_c^2]
)
mvq_hook = dict(
    sparse_finetune_iters=200,  # the first iterations: N:M-sparse fine-tuning
    codebook_quant_start_iter=0,
    distill=dict(logits_weight=1.0, temperature=1.0, task_weight=1.0),
    calib_batches=0,      # >= 1 when a data-aware setting is on
)
