# Budget-driven MVQ: mvq_plugin.allocate chooses each layer's settings (dense, N:M 2:8 / 4:8
# or plain vq, d, k, codebook precision) with the least measured output distortion inside the
# budget; every other setting comes from mvq_cfg (inherit mvq_2-8_k256.py or another base
# defining it next to this one). Limits (one or more, all must hold):
#   bytes='1.5MiB' | bits=...            accounted size (params; BN statistics not counted)
#   energy_ratio=0.5 | energy_pj=...     one inference on `hw` vs the dense model on `baseline`
#   cycles_ratio=0.5 | cycles=...
#   hw='mvq_64x64', baseline='ews', input_shape=(1, C, H, W) (default: a calibration image)
# Leaf configs wire it in with the dense weights and the calibration data:
#   model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
#                mvq={{_base_.mvq_cfg}}, budget={{_base_.mvq_budget}},
#                calib_dataloader={{_base_.train_dataloader}}, init_checkpoint=DENSE_CKPT)
mvq_budget = dict(
    bytes='1.5MiB',
    choices=dict(nm=['2:8', '4:8', 'none'], block_size=[8, 16],
                 num_codewords=[16, 32, 64, 128, 256], codebook_bits=[8], dense=True),
    calib_batches=2,                        # first batches of calib_dataloader, unshuffled
    cache='work_dirs/mvq_sensitivity.json',  # measurements reused by the next budget
    objective='output',                     # relative output error ('kl' for logits)
)
