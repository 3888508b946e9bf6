"""Reading back what an mmengine run logged (``LocalVisBackend``'s ``scalars.json``)."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ['read_scalars', 'last_scalar']


def read_scalars(work_dir: str | Path) -> list[dict]:
    """Every record of ``<work_dir>/<timestamp>/vis_data/scalars.json``, runs in time order.

    Raises:
        FileNotFoundError: The work dir holds no scalar log.
    """
    files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    return [json.loads(line) for path in files for line in path.read_text().splitlines()
            if line.strip()]


def last_scalar(work_dir: str | Path, key: str) -> float:
    """The last logged value of ``key``.

    Raises:
        KeyError: ``key`` was never logged.
    """
    values = [record[key] for record in read_scalars(work_dir) if key in record]
    if not values:
        raise KeyError(f'no {key!r} logged under {work_dir}')
    return float(values[-1])
