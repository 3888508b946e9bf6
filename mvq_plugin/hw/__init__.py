"""Analytical accelerator model for MVQ (numpy; docs/design.md section 5).

* :mod:`~mvq_plugin.hw.workload`: networks as weight-stationary GEMMs; built by
  :mod:`~mvq_plugin.hw.tracing` (a model, a plan, a compressed model) or
  :mod:`~mvq_plugin.hw.topology` (SCALE-Sim topology CSV);
* :mod:`~mvq_plugin.hw.arch`: :class:`ArrayConfig` and the ``ws``/``ews``/``mvq`` presets;
* :mod:`~mvq_plugin.hw.cost`: SCALE-Sim-exact dense WS closed form and the EWS/MVQ model;
* :mod:`~mvq_plugin.hw.tables`: energy/area tables (YAML with provenance), technology scaling;
* :mod:`~mvq_plugin.hw.report`: reports (JSON, CSV, Markdown, PNG), decomposed gains.

Example::

    from mvq_plugin import hw
    report = hw.estimate(model, arch='mvq', input_shape=(1, 3, 224, 224), baseline='ews')
    print(report.table_text())
    report.write('work_dirs/hw')
"""
from .arch import PRESETS, ArrayConfig, get_arch
from .cost import ENERGY_COMPONENTS, array_area, layer_costs, ws_cycles, ws_sram_accesses
from .estimator import EWS_SWITCHES, HardwareEstimator, ablation, cost_workload, estimate
from .report import FORMATS, VARIANTS, HardwareReport
from .tables import DEFAULT_TABLE, CostTable, load_table
from .topology import read_topology, write_topology
from .tracing import extract_workload
from .workload import LayerWorkload, Workload, mask_bits_per_subvector

__all__ = [
    'estimate', 'HardwareEstimator', 'HardwareReport', 'ablation', 'cost_workload',
    'ArrayConfig', 'PRESETS', 'get_arch', 'EWS_SWITCHES',
    'LayerWorkload', 'Workload', 'extract_workload', 'read_topology', 'write_topology',
    'mask_bits_per_subvector',
    'CostTable', 'load_table', 'DEFAULT_TABLE',
    'ws_cycles', 'ws_sram_accesses', 'layer_costs', 'array_area', 'ENERGY_COMPONENTS',
    'FORMATS', 'VARIANTS',
]
