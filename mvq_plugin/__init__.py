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
from .core import (
    CompressionReport,
    CompressionStats,
    MVQConfig,
    Plan,
    codebook_param_groups,
    compress,
    compression_stats,
    decode_mask,
    encode_mask,
    mask_code_bits,
    masked_kmeans,
    nm_mask,
    plan,
    quantized_layers,
    set_codebook_quant,
    to_dense,
)
from .io import ArtifactError, ArtifactInfo, load, save
from .version import __version__  # noqa: E402

__all__ = [
    'MVQConfig', 'plan', 'compress', 'compression_stats', 'to_dense', 'masked_kmeans',
    'nm_mask', 'encode_mask', 'decode_mask', 'mask_code_bits', 'quantized_layers',
    'codebook_param_groups', 'set_codebook_quant', 'Plan', 'CompressionReport',
    'CompressionStats', '__version__', 'save', 'load', 'ArtifactInfo', 'ArtifactError',
]

