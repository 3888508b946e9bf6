"""The ``mvq_plugin`` registry scope for OpenMMLab (imported by mmengine on demand).

A config that names ``type='mvq_plugin.MVQModel'`` makes mmengine import
``mvq_plugin.registry`` when it first meets the scope; importing the OpenMMLab integration
here registers the model builder, the hooks and the datasets, and installs the safe local
checkpoint loader. ``import mvq_plugin`` alone never imports mmengine.
"""
from .integrations.mm import DATASETS, HOOKS, MODELS  # noqa: F401

__all__ = ['MODELS', 'HOOKS', 'DATASETS']
