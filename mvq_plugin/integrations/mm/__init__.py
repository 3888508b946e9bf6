"""OpenMMLab integration: the model builder, ``MVQHook`` and ``HardwareCostHook``.

Importing this package registers them in the ``mvq_plugin`` scope (``custom_imports`` in a
config, or ``import mvq_plugin`` when mmengine is installed), and makes mmengine load local
checkpoints with torch's safe unpickler and an explicit allowlist (:mod:`.checkpoint`).
"""
from .checkpoint import UnsafeCheckpointError, load_checkpoint_safely, register_safe_local_loader
from .hooks import MVQHook
from .hw_hook import HardwareCostHook
from .model import build_mvq_model, load_dense_weights
from .registry import DATASETS, HOOKS, MODELS

__all__ = ['MODELS', 'HOOKS', 'DATASETS', 'MVQHook', 'HardwareCostHook', 'build_mvq_model',
           'load_dense_weights', 'load_checkpoint_safely', 'UnsafeCheckpointError']

register_safe_local_loader()
