"""PNG plots of a :class:`~mvq_plugin.hw.HardwareReport` (matplotlib, Agg backend).

matplotlib is imported with this module, so importing it without matplotlib raises
``ImportError``, which :meth:`HardwareReport.write` turns into a warning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from .cost import ENERGY_COMPONENTS

matplotlib.use('Agg', force=False)
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ['plot_report', 'plot_side_by_side']


def plot_report(report: Any, directory: str | Path,
                stem: str = 'hw_report') -> list[Path]:
    """Write ``{stem}_cycles.png`` (per-layer cycles, baseline overlaid) and
    ``{stem}_energy.png`` (energy breakdown per design: baseline, sparsity only, VQ only, both).

    Returns:
        The paths written.
    """
    directory = Path(directory)
    paths = []
    names = [lay.name for lay in report.workload.layers]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.25 * len(names) + 2), 4))
    width = 0.4 if report.baseline is not None else 0.8
    if report.baseline is not None:
        ax.bar(x - width / 2, report.baseline.layers['cycles'], width,
               label=f'{report.baseline.arch.name} (baseline)')
        ax.bar(x + width / 2, report.layers['cycles'], width, label=report.arch.name)
    else:
        ax.bar(x, report.layers['cycles'], width, label=report.arch.name)
    ax.set_yscale('log')
    ax.set_ylabel('cycles')
    ax.set_title(f'{report.workload.name}: cycles per layer '
                 f'({report.arch.rows}x{report.arch.cols})')
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax.legend()
    fig.tight_layout()
    path = directory / f'{stem}_cycles.png'
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

    designs = []
    if report.baseline is not None:
        designs.append((f'{report.baseline.arch.name}\n(dense)', report.baseline))
        for name, rep in report.variants.items():
            designs.append((name.replace('_', ' '), rep))
    if not any(rep is report for _, rep in designs):
        designs.append((report.arch.name, report))
    fig, ax = plt.subplots(figsize=(1.6 * len(designs) + 3, 4))
    bottom = np.zeros(len(designs))
    for comp in ENERGY_COMPONENTS:
        vals = np.array([rep.total(f'energy_{comp}') * 1e-6 for _, rep in designs])
        ax.bar(range(len(designs)), vals, bottom=bottom, label=comp)
        bottom += vals
    ax.set_xticks(range(len(designs)))
    ax.set_xticklabels([d for d, _ in designs], fontsize=8)
    ax.set_ylabel('energy per inference (uJ)')
    ax.set_title(f'{report.workload.name}: energy breakdown')
    ax.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    path = directory / f'{stem}_energy.png'
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def plot_side_by_side(items: list[tuple[str, float, float]], path: str | Path, title: str,
                      ylabel: str) -> Path:
    """Bars of ``(label, paper value, our value)`` pairs side by side; returns ``path``."""
    path = Path(path)
    x = np.arange(len(items))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(items) + 2), 4))
    ax.bar(x - 0.2, [p for _, p, _ in items], 0.4, label='paper')
    ax.bar(x + 0.2, [o for _, _, o in items], 0.4, label='this model')
    ax.set_xticks(x)
    ax.set_xticklabels([lab for lab, _, _ in items], rotation=60, ha='right', fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
