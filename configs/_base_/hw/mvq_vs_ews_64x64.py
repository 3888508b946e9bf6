# Accelerator cost of the model being trained (hw_* keys only): the paper's EWS-CMS array
# (sparse tile, codebook RF) vs its base EWS array, 64x64 PEs, 40 nm at 300 MHz, 8-bit
# weights/activations (mvq_plugin.hw.get_arch; docs/hardware.md).
hw_hook = dict(
    type='mvq_plugin.HardwareCostHook',
    input_shape=(1, 3, 224, 224),
    arch='EWS-CMS_64x64',
    baseline='EWS_64x64',
)
