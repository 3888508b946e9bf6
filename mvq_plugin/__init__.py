"""mvq_plugin: MVQ (masked vector quantization) for OpenMMLab and timm.

The core works on any ``nn.Module``::

    import mvq_plugin as mvq
    cfg = mvq.MVQConfig(block_size=8, num_codewords=256, n=2, m=8)
    print(mvq.plan(model, cfg))
    report = mvq.compress(model, cfg)
    print(mvq.compression_stats(model))

Importing it imports neither mmengine nor timm. OpenMMLab configs name the parts by scope
(``type='mvq_plugin.MVQModel'``); mmengine then imports :mod:`mvq_plugin.registry`, which
registers them (``custom_imports=dict(imports=['mvq_plugin'])`` keeps working).
"""
from . import hw
from .allocation import Allocation, Budget, ChoiceSpace, allocate
from .core import (
    MVQConfig,
    MVQRecipe,
    codebook_param_groups,
    compress,
    compression_stats,
    plan,
    preset,
    quantized_layers,
    run_recipe,
    set_codebook_quant,
    to_dense,
)
from .io import ArtifactError, load, save
from .version import __version__  # noqa: E402

#: What a user calls; building blocks stay reachable by their module (``mvq_plugin.core``,
#: ``mvq_plugin.core.kmeans``, ``mvq_plugin.io``, ...). ``hw.estimate`` costs a model on the
#: accelerator model;
#: ``allocate`` chooses per-layer settings for a size, energy or cycle budget.
__all__ = [
    'MVQConfig', 'preset', 'plan', 'compress', 'MVQRecipe', 'run_recipe', 'compression_stats',
    'codebook_param_groups',
    'set_codebook_quant', 'quantized_layers', 'to_dense', 'save', 'load', 'ArtifactError', 'hw',
    'allocate', 'Budget', 'ChoiceSpace', 'Allocation',
    '__version__',
]
