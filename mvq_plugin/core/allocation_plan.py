"""A per-layer allocation applied to a config: the rule ``base + allocation's exclude and
overrides`` that :meth:`mvq_plugin.Allocation.config`, ``compress(allocation=...)`` and
``MVQModel(allocation=...)`` share.

An allocation is given as the JSON file ``tools/allocate.py --out plan.json`` writes
(``Allocation.to_dict()``), as that dict, or as any object with ``exclude`` and
``overrides`` attributes (an :class:`~mvq_plugin.Allocation`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from .config import MVQConfig

__all__ = ['read_allocation', 'with_allocation']


def read_allocation(source: Any) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``(exclude, overrides)`` of an allocation file, dict or object.

    Raises:
        FileNotFoundError: ``source`` is a path that does not exist.
        ValueError: The file is not JSON, or holds no ``exclude``/``overrides``.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'allocation file {path!r} does not exist (write one with '
                                    '`tools/allocate.py CONFIG --bytes ... --out plan.json`)')
        try:
            with open(path) as fh:
                source = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f'allocation file {path!r} is not JSON: {err}') from None
    if isinstance(source, Mapping):
        exclude, overrides = source.get('exclude'), source.get('overrides')
    else:
        exclude = getattr(source, 'exclude', None)
        overrides = getattr(source, 'overrides', None)
    if not isinstance(exclude, (list, tuple)) or not isinstance(overrides, Mapping):
        raise ValueError(f'an allocation needs a list "exclude" and a dict "overrides" '
                         f'(what tools/allocate.py --out writes); got exclude={exclude!r:.80}, '
                         f'overrides={overrides!r:.80}')
    return [str(p) for p in exclude], {str(k): dict(v) for k, v in overrides.items()}


def with_allocation(base: MVQConfig, allocation: Any) -> MVQConfig:
    """``base`` with the allocation's exclude patterns appended and its overrides merged over
    the base's (the allocation's rules come last, so they win)."""
    exclude, overrides = read_allocation(allocation)
    return dataclasses.replace(base, exclude=list(base.exclude) + exclude,
                               overrides={**base.overrides, **overrides})
