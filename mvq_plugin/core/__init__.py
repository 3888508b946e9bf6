"""The MVQ algorithm in plain PyTorch (no mmengine, no timm)."""
from .accounting import CompressionStats, compression_stats, count_macs
from .bits import LayerBits, index_bits, layer_bits
from .blocking import from_subvectors, to_subvectors
from .calibration import collect_input_stats
from .cluster import ClusterJob, CompressionReport, LayerReport, cluster_layer, cluster_layers
from .compress import codebook_param_groups, compress, set_codebook_quant, to_dense
from .config import CONFIG_ATTR, LayerConfig, MVQConfig
from .distill import DistillConfig, Distiller, make_teacher
from .importance import IMPORTANCE, get_importance
from .kmeans import KMeansResult, masked_kmeans, masked_sse
from .nm import decode_mask, encode_mask, mask_code_bits, nm_mask
from .parametrize import (
                          MVQWeight,
                          Stage,
                          attach_mvq_weight,
                          is_compressed,
                          quantized_layers,
)
from .plan import LayerPlan, Plan, check_patterns, plan, register_layer_type
from .presets import PRESETS, preset
from .quant import fake_quant_int8, lsq_quant
from .recipe import MVQRecipe, RecipeResult, finetune_dense, run_recipe
from .schedule import MVQSchedule, Phase, ScheduleEvent
from .staged import (
                          cluster_prepared,
                          dense_view,
                          layer_stages,
                          pending_layers,
                          prepare,
                          prune_prepared,
)

__all__ = [
    'MVQConfig', 'LayerConfig', 'plan', 'Plan', 'LayerPlan', 'compress', 'CompressionReport',
    'LayerReport', 'quantized_layers', 'to_dense', 'is_compressed', 'codebook_param_groups',
    'set_codebook_quant', 'compression_stats', 'CompressionStats', 'layer_bits', 'LayerBits',
    'masked_kmeans', 'masked_sse', 'KMeansResult', 'nm_mask', 'encode_mask', 'decode_mask',
    'mask_code_bits', 'to_subvectors', 'from_subvectors', 'MVQWeight', 'fake_quant_int8',
    'IMPORTANCE', 'get_importance', 'check_patterns', 'prepare', 'prune_prepared',
    'cluster_prepared', 'dense_view',
    'pending_layers', 'layer_stages',
    'register_layer_type', 'Stage', 'index_bits', 'count_macs', 'cluster_layer',
    'cluster_layers', 'ClusterJob', 'attach_mvq_weight', 'CONFIG_ATTR', 'MVQRecipe',
    'RecipeResult', 'run_recipe', 'finetune_dense', 'DistillConfig', 'Distiller',
    'make_teacher', 'collect_input_stats', 'MVQSchedule', 'Phase', 'ScheduleEvent',
    'lsq_quant', 'preset', 'PRESETS',
]
