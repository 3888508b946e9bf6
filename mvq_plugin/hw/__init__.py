"""Analytical accelerator model for MVQ (numpy; docs/design.md section 5).

* :mod:`~mvq_plugin.hw.workload`: networks as weight-stationary GEMMs; built by
  :mod:`~mvq_plugin.hw.tracing` (a model, a plan, a compressed model) or
  :mod:`~mvq_plugin.hw.topology` (SCALE-Sim topology CSV);
* :mod:`~mvq_plugin.hw.arch`: :class:`ArrayConfig`, the paper's six settings (WS ... EWS-CMS)
  and the earlier ``ws``/``ews``/``mvq`` presets;
* :mod:`~mvq_plugin.hw.tile`: the tiles and their resource counts (the paper's Table 2);
* :mod:`~mvq_plugin.hw.scaling`: Stillmaker & Baas node scaling, the paper's Table 9;
* :mod:`~mvq_plugin.hw.paper`: the paper's published figures beside the model's;
* :mod:`~mvq_plugin.hw.stream` and :mod:`~mvq_plugin.hw.golden`: the weight stream of a
  compressed model and the functional model of the weight loader and sparse tile that runs it;
* :mod:`~mvq_plugin.hw.cost`: SCALE-Sim-exact dense WS closed form and the EWS/MVQ model;
* :mod:`~mvq_plugin.hw.tables`: energy/area tables (YAML with provenance), technology scaling;
* :mod:`~mvq_plugin.hw.report`: reports (JSON, CSV, Markdown, PNG), decomposed gains.

Example::

    from mvq_plugin import hw
    report = hw.estimate(model, arch='EWS-CMS', input_shape=(1, 3, 224, 224), baseline='EWS')
    print(report.table_text())
    report.write('work_dirs/hw')
"""
from . import golden, stream
from .arch import PAPER_SETTINGS, PRESETS, ArrayConfig, get_arch, paper_setting
from .cost import ENERGY_COMPONENTS, array_area, layer_costs, ws_cycles, ws_sram_accesses
from .estimator import EWS_SWITCHES, HardwareEstimator, ablation, cost_workload, estimate
from .report import FORMATS, VARIANTS, HardwareReport
from .scaling import TABLE9, energy_factor, normalize_efficiency
from .tables import BUILTIN_TABLES, DEFAULT_TABLE, CostTable, load_table
from .tile import TileResources, array_resources, resolve_tile, tile_resources
from .topology import read_topology, write_topology
from .tracing import extract_workload
from .workload import LayerWorkload, Workload, mask_bits_per_subvector

__all__ = [
    'estimate', 'HardwareEstimator', 'HardwareReport', 'ablation', 'cost_workload',
    'ArrayConfig', 'PRESETS', 'PAPER_SETTINGS', 'get_arch', 'paper_setting', 'EWS_SWITCHES',
    'TileResources', 'tile_resources', 'array_resources', 'resolve_tile',
    'normalize_efficiency', 'energy_factor', 'TABLE9', 'BUILTIN_TABLES',
    'LayerWorkload', 'Workload', 'extract_workload', 'read_topology', 'write_topology',
    'mask_bits_per_subvector',
    'CostTable', 'load_table', 'DEFAULT_TABLE',
    'ws_cycles', 'ws_sram_accesses', 'layer_costs', 'array_area', 'ENERGY_COMPONENTS',
    'golden', 'stream',
    'FORMATS', 'VARIANTS',
]
