"""Adapters to training frameworks (``timm``, OpenMMLab).

Nothing here is imported eagerly: ``import mvq_plugin`` never pulls in timm or mmengine.
Import the adapter you use::

    from mvq_plugin.integrations import timm as mvq_timm
    model = mvq_timm.create_model('resnet18', mvq=dict(num_codewords=256, block_size=8))
"""

__all__: list[str] = []
