# Accelerator cost of the model being trained (hw_* keys only): the MVQ sparse array vs the
# base EWS array, 64x64 PEs, 40 nm, 8-bit weights/activations (see docs/hardware.md).
hw_hook = dict(
    type='mvq_plugin.HardwareCostHook',
    input_shape=(1, 3, 224, 224),
    arch='mvq',
    baseline='ews',
    arch_overrides=dict(rows=64, cols=64),
)
