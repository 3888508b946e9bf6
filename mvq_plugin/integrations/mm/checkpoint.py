"""Safe loading of mmengine checkpoints: torch's ``weights_only`` unpickler, explicit allowlist.

mmengine 0.10.7 reads every local checkpoint (``load_from``, ``--resume``, ``tools/test.py``,
``init_cfg=dict(type='Pretrained')``) with a bare ``torch.load``. Under torch >= 2.6 that is
``weights_only=True``, which refuses the few non-tensor objects mmengine itself writes (the
message hub's ``HistoryBuffer`` s with their numpy arrays, numpy scalars in ``meta``), so the
usual workaround is torch's process-wide opt-out of safe loading, after which any checkpoint
can run code when it is unpickled.

This module instead registers a local loader for mmengine's ``CheckpointLoader`` (the ``''``
scheme: plain paths) that keeps ``weights_only=True`` and allows exactly the types mmengine
checkpoints hold (:data:`MMENGINE_CHECKPOINT_GLOBALS`), only for the duration of the load.
A checkpoint needing anything else is refused with an :class:`UnsafeCheckpointError` naming
the file and the disallowed globals; nothing in it runs. Importing ``mvq_plugin`` in an
OpenMMLab run (``custom_imports``) registers it.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import re
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['MMENGINE_CHECKPOINT_GLOBALS', 'UnsafeCheckpointError', 'load_checkpoint_safely',
           'register_safe_local_loader', 'history_buffer_method']


def _numpy_globals() -> list:
    """numpy's array and scalar reconstructors and the dtype classes of arrays it pickles."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


def history_buffer_method(obj: Any, name: str) -> Any:
    """The one ``getattr`` an mmengine checkpoint needs, and nothing more.

    ``HistoryBuffer.__getstate__`` pickles its statistics methods (``HistoryBuffer.min``,
    ``.max``, ...), which pickle writes as ``getattr(HistoryBuffer, 'min')``. Allowing the
    builtin ``getattr`` would hand a crafted file every attribute of every allowed object;
    this stands in for it under the name ``builtins.getattr`` and returns only public methods
    defined on ``HistoryBuffer`` itself.
    """
    if obj is HistoryBuffer and not name.startswith('_') and callable(
            vars(HistoryBuffer).get(name)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__qualname__", type(obj).__name__)}, {name!r}) is not '
        "allowed: only HistoryBuffer's public methods may be looked up")


#: What an mmengine checkpoint holds beyond torch's own safe types: the message hub's
#: ``HistoryBuffer`` (numpy arrays and its statistics methods inside) and numpy arrays and
#: scalars (``meta``, logs).
MMENGINE_CHECKPOINT_GLOBALS: tuple = (HistoryBuffer, *_numpy_globals())
_SAFE_GLOBALS = [*MMENGINE_CHECKPOINT_GLOBALS, (history_buffer_method, 'builtins.getattr')]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs a global outside the allowlist; it was not unpickled."""

    def __init__(self, path: str, globals_: list[str], detail: str) -> None:
        self.path, self.globals = path, globals_
        allowed = ', '.join(sorted(f'{g.__module__}.{g.__qualname__}'
                                   for g in MMENGINE_CHECKPOINT_GLOBALS))
        allowed += ", getattr(HistoryBuffer, <public method>)"
        named = ', '.join(globals_) if globals_ else f'({detail})'
        super().__init__(
            f'refused to load checkpoint {path!r}: it needs the global(s) {named}, which are '
            f'not among the types mmengine checkpoints hold (torch tensors and containers, '
            f'{allowed}); unpickling it could run code it carries. Nothing from it was '
            'loaded. If you trust the file, re-save its tensors as a plain state dict.')


def _global_names(path: str) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint: the unpickler's own message is all we have
        return []


def load_checkpoint_safely(filename: str | os.PathLike, map_location: Any = None) -> Any:
    """``torch.load(weights_only=True)`` with :data:`MMENGINE_CHECKPOINT_GLOBALS` allowed.

    Args:
        filename: A local checkpoint file (``~`` is expanded).
        map_location: As for :func:`torch.load`.

    Returns:
        The checkpoint object (usually a dict with ``state_dict``, ``meta``, ...).

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: The checkpoint needs a global outside the allowlist.
    """
    path = osp.expanduser(os.fspath(filename))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path!r} not found')
    with torch.serialization.safe_globals(_SAFE_GLOBALS):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r'WeightsUnpickler error:\s*([^\n]+)', str(err))
            detail = found.group(1).strip() if found else str(err).strip().split('\n')[0]
            raise UnsafeCheckpointError(path, _global_names(path), detail) from None


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` scheme for local paths (the name mmengine logs)."""
    return load_checkpoint_safely(filename, map_location)


def register_safe_local_loader() -> None:
    """Makes :func:`load_checkpoint_safely` mmengine's loader for local checkpoint paths."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
