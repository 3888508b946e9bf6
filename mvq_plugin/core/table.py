"""The one plain-text table renderer of the package's reports (plans, hardware reports)."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ['render_table']


def render_table(rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart, a dashed rule under the first (header) row."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ['  '.join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)
