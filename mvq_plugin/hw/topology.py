"""SCALE-Sim topology CSV files: reading them as a workload, writing a workload as one."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable

from .workload import LayerWorkload, Workload

__all__ = ['read_topology', 'write_topology', 'TOPOLOGY_HEADER']

TOPOLOGY_HEADER = ('Layer name', 'IFMAP Height', 'IFMAP Width', 'Filter Height', 'Filter Width',
                   'Channels', 'Num Filter', 'Strides')


def read_topology(path: str | Path, block_size: int = 8, num_codewords: int = 256,
                  name: str | None = None) -> Workload:
    """Read a SCALE-Sim conv topology CSV.

    Columns: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
    Num Filter, Strides[, N:M]``; the IFMAP sizes include padding and, as in SCALE-Sim,
    ``H_out = ceil((H - kh + s) / s)`` (one more than PyTorch's ``floor((H - kh) / s) + 1``
    when ``s`` does not divide ``H - kh``; :func:`write_topology` writes sizes on which both
    agree). A layer whose name contains ``DP`` is depthwise in
    SCALE-Sim (``Channels`` separate 1-channel convs): it becomes ``groups = Channels``. A
    sparsity column ``N:M`` with ``N < M`` marks the layer compressed with ``block_size`` and
    ``num_codewords``.

    Args:
        path: The CSV file.
        block_size: ``d`` for layers the file marks sparse.
        num_codewords: ``k`` for layers the file marks sparse.
        name: Workload name (default: the file stem).

    Returns:
        The :class:`Workload`.
    """
    path = Path(path)
    layers = []
    with open(path, newline='') as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f'{path}: empty topology file')
    for lineno, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row if c.strip() != '']
        if len(cells) < 8:
            raise ValueError(f'{path}:{lineno}: expected at least 8 columns '
                             f'{TOPOLOGY_HEADER}, got {row}')
        lname = cells[0]
        try:
            ih, iw, fh, fw, ch, nf, s = (int(c) for c in cells[1:8])
        except ValueError as err:
            raise ValueError(f'{path}:{lineno}: non-integer size in {row}') from err
        if fh > ih or fw > iw:
            raise ValueError(f'{path}:{lineno}: filter {fh}x{fw} larger than ifmap {ih}x{iw}')
        oh, ow = -(-(ih - fh + s) // s), -(-(iw - fw + s) // s)
        extra: dict[str, Any] = {}
        if len(cells) > 8 and ':' in cells[8]:
            n, m = (int(v) for v in cells[8].split(':'))
            if n < m:
                extra = dict(compressed=True, block_size=block_size,
                             num_codewords=num_codewords, n=n, m=m, method='mvq')
        groups = ch if 'DP' in lname else 1
        out_ch = nf * groups
        layers.append(LayerWorkload(lname, 'conv', ch, out_ch, (fh, fw), (s, s), groups,
                                    (ih, iw), (oh, ow), source='topology', **extra))
    return Workload(name or path.stem, layers, None)


def write_topology(workload: Workload | Iterable[LayerWorkload], path: str | Path) -> Path:
    """Write a SCALE-Sim conv topology CSV (ifmap sizes include the padding).

    Grouped layers are written per group (``Channels = C_in/groups``, ``Num Filter =
    C_out/groups``); SCALE-Sim then costs one group, so multiply by ``groups`` to compare.
    """
    path = Path(path)
    with open(path, 'w') as f:
        f.write(','.join(TOPOLOGY_HEADER) + ',\n')
        for lay in workload:
            f.write(','.join(str(v) for v in lay.scalesim_row()) + ',\n')
    return path
