# As mvq_vs_ews_64x64.py, tracing one real validation sample with its data samples (for
# detectors, whose tensor-mode forward needs them; the RoI heads see the real proposals).
hw_hook = dict(
    type='mvq_plugin.HardwareCostHook',
    trace='data',
    arch='EWS-CMS_64x64',
    baseline='EWS_64x64',
)
