"""mvq_plugin's OpenMMLab registries: children of mmengine's roots, scope ``mvq_plugin``.

Configs name our parts with the scope prefix (``type='mvq_plugin.MVQHook'``) whatever the
config's ``default_scope`` is; mmengine finds them through the root registries.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ['MODELS', 'HOOKS', 'DATASETS']

_LOCATIONS = ['mvq_plugin.integrations.mm']

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mvq_plugin', locations=_LOCATIONS)
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mvq_plugin', locations=_LOCATIONS)
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mvq_plugin',
                    locations=_LOCATIONS)
