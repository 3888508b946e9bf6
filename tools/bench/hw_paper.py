"""The paper's headline comparison (MVQ, ASPLOS 2025) reproduced with this model.

``python tools/bench/hw_paper.py`` prints the tables of ``docs/hardware.md``: ResNet-18 at
224x224, batch 1, a 64x64 array at 40 nm, MVQ with d = 8, k = 256, 2:8 (75% sparsity) on
every layer but the first conv, against the base EWS accelerator and a plain WS array, with
the gain decomposed into sparsity only / VQ weight traffic only / both, and the sensitivity to
the assumptions that drive it. The workload is built analytically (no torch needed); a test
checks it against the traced torchvision model.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from common import write_json  # same folder (tools/bench/common.py)

from mvq_plugin.hw import EWS_SWITCHES, ablation, cost_workload, estimate, get_arch, load_table
from mvq_plugin.hw.zoo import resnet18_workload

#: Published figures (abstract; 6.9 TOPS/W is secondary, see docs/design.md section 5).
PAPER = dict(energy_efficiency=2.3, array_area_reduction=0.55, tops_per_w=6.9,
             speedup_range=(1.2, 2.2))


def headline(rows: int = 64, cols: int = 64, node_nm: float = 40, batch: int = 1,
             **overrides: Any) -> dict[str, Any]:
    """MVQ vs EWS and vs WS on ResNet-18, decomposed.

    Returns:
        ``{'vs_ews': report, 'vs_ws': report}`` (each a compared
        :class:`~mvq_plugin.hw.HardwareReport`).
    """
    wl = resnet18_workload(batch).with_compression(8, 256, 2, 8)
    kw = dict(rows=rows, cols=cols, **overrides)
    return {f'vs_{b}': estimate(wl, arch='mvq', baseline=b, node_nm=node_nm, **kw)
            for b in ('ews', 'ws')}


def sensitivity(node_nm: float = 40) -> list[tuple[str, dict[str, float]]]:
    """MVQ-vs-EWS gains when one assumption changes (ResNet-18, 64x64)."""
    wl = resnet18_workload().with_compression(8, 256, 2, 8)
    tab = load_table(None, node_nm)
    cases = [('default', {}, wl),
             ('weight-load bandwidth B = 256 bits/cycle', dict(weight_load_bw_bits=256), wl),
             ('weight-load bandwidth B = 128 bits/cycle', dict(weight_load_bw_bits=128), wl),
             ('batch 8', {}, resnet18_workload(8).with_compression(8, 256, 2, 8)),
             ('activations stay on chip (no DRAM activation traffic)',
              dict(dram_activations=False), wl),
             ('conv1 also compressed (no dense multipass layer)', {},
              resnet18_workload().with_compression(8, 256, 2, 8, predicate=lambda x: True)),
             ('codebook RF with 1 read port', dict(codebook_read_ports=1), wl)]
    out = []
    for label, over, work in cases:
        target = get_arch('mvq', **over)
        base = get_arch('ews', **over)
        rep = cost_workload(work, target, tab)
        ref = cost_workload(work.dense(), base, tab)
        g = rep.gain_over(ref)
        g['tops_per_w_system'] = rep.tops_per_w_system
        out.append((label, g))
    # DRAM energy at 0: the on-chip view
    raw_dram0 = load_table(None, node_nm)
    energy = dict(raw_dram0.energy, dram_bit=0.0)
    tab0 = replace(raw_dram0, energy=energy)
    rep = cost_workload(wl, get_arch('mvq'), tab0)
    g = rep.gain_over(cost_workload(wl.dense(), get_arch('ews'), tab0))
    g['tops_per_w_system'] = rep.tops_per_w_system
    out.append(('no DRAM in the energy (on-chip only)', g))
    return out


def figures(node_nm: float = 40) -> dict[str, Any]:
    """The headline and sensitivity figures as plain data (what ``--json`` writes)."""
    reps = headline(node_nm=node_nm)
    out: dict[str, Any] = {}
    for key, rep in reps.items():
        variants = {'baseline': rep.baseline, **rep.variants}
        out[key] = dict(
            gains=rep.gains(),
            tops_per_w={k: v.tops_per_w for k, v in variants.items()},
            energy={k: {c: v.total('energy_' + c) for c in ('dram', 'mac')}
                    for k, v in variants.items()})
    out['sensitivity'] = dict(sensitivity(node_nm))
    return out


def _md_table(rows: list[list[str]]) -> str:
    out = ['| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])]
    out += ['| ' + ' | '.join(r) + ' |' for r in rows[1:]]
    return '\n'.join(out)


def _component_rows(title: str, base_name: str, designs: list, components: tuple[str, ...],
                    value, fmt: str) -> list[list[str]]:
    """``[title, base, sparsity only, vq only, both]`` rows of ``value(design, c) * 1e-6``."""
    rows = [[title, base_name, 'sparsity only', 'vq only', 'both']]
    for c in components:
        rows.append([c] + [format(value(d, c) * 1e-6, fmt) for d in designs])
    return rows


def render(node_nm: float = 40) -> str:
    """Markdown tables of the headline, its decomposition and the sensitivity."""
    reps = headline(node_nm=node_nm)
    parts = []
    for key, rep in reps.items():
        base = rep.baseline
        rows = [['design', 'cycles', 'speed-up', 'energy (uJ)', 'energy eff.',
                 'on-chip energy (uJ)', 'on-chip energy eff.', 'array area (mm^2)',
                 'area reduction', 'TOPS/W on-chip', 'TOPS/W with DRAM']]
        rows.append([f'{base.arch.name} (dense)', f'{base.cycles:,}', '1.00x',
                     f'{base.energy_pj * 1e-6:.1f}', '1.00x', f'{base.chip_energy_pj * 1e-6:.1f}',
                     '1.00x', f'{base.area["array"] * 1e-6:.3f}', '0%',
                     f'{base.tops_per_w:.2f}', f'{base.tops_per_w_system:.2f}'])
        for name, v in rep.variants.items():
            g = v.gain_over(base)
            rows.append([name.replace('_', ' '), f'{v.cycles:,}', f'{g["speedup"]:.2f}x',
                         f'{v.energy_pj * 1e-6:.1f}', f'{g["energy_efficiency"]:.2f}x',
                         f'{v.chip_energy_pj * 1e-6:.1f}', f'{g["chip_energy_efficiency"]:.2f}x',
                         f'{v.area["array"] * 1e-6:.3f}',
                         f'{100 * g["array_area_reduction"]:.1f}%', f'{v.tops_per_w:.2f}',
                         f'{v.tops_per_w_system:.2f}'])
        parts.append(f'### MVQ {key.replace("_", " ")}\n\n' + _md_table(rows))
    rep = reps['vs_ews']
    designs = [rep.baseline] + [rep.variants[v] for v in ('sparsity_only', 'vq_only', 'both')]
    energy = _component_rows('component (uJ)', 'ews (dense)', designs,
                             ('dram', 'sram', 'rf', 'codebook_rf', 'array', 'mac',
                              'mux_adder_tree'), lambda d, c: d.total('energy_' + c), '.1f')
    parts.append('### Energy by component, MVQ vs EWS\n\n' + _md_table(energy))
    area = _component_rows('area (mm^2)', 'ews', designs,
                           ('pe_array', 'codebook_rf', 'array', 'act_rf', 'psum_rf', 'sram',
                            'total'), lambda d, c: d.area[c], '.3f')
    parts.append('### Area by component\n\n' + _md_table(area))
    abl = ablation(resnet18_workload(), 'ws', EWS_SWITCHES, node_nm=node_nm)
    base = abl['base']
    rows = [['WS + switch (dense ResNet-18)', 'cycles', 'speed-up', 'energy eff.',
             'on-chip energy eff.']]
    for k, r in abl.items():
        g = r.gain_over(base)
        rows.append([k, f'{r.cycles:,}', f'{g["speedup"]:.2f}x',
                     f'{g["energy_efficiency"]:.2f}x', f'{g["chip_energy_efficiency"]:.2f}x'])
    parts.append('### What EWS adds to plain WS, one switch at a time\n\n' + _md_table(rows))
    rows = [['assumption changed (MVQ vs EWS)', 'speed-up', 'energy eff.', 'on-chip energy eff.',
             'area reduction', 'TOPS/W on-chip', 'TOPS/W with DRAM']]
    for label, g in sensitivity(node_nm):
        rows.append([label, f'{g["speedup"]:.2f}x', f'{g["energy_efficiency"]:.2f}x',
                     f'{g["chip_energy_efficiency"]:.2f}x',
                     f'{100 * g["array_area_reduction"]:.1f}%', f'{g["tops_per_w"]:.2f}',
                     f'{g["tops_per_w_system"]:.2f}'])
    parts.append('### Sensitivity\n\n' + _md_table(rows))
    return '\n\n'.join(parts) + '\n'


def main(argv: list[str] | None = None) -> int:
    """Print the Markdown tables (``--node`` selects the technology node)."""
    parser = argparse.ArgumentParser(description='MVQ paper headline on the hw model')
    parser.add_argument('--node', type=float, default=40)
    parser.add_argument('--json', default=None, help='also write the figures to this file')
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.node))
    if args.json:
        write_json(args.json, figures(args.node))
    return 0


if __name__ == '__main__':
    sys.exit(main())
