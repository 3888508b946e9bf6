"""Whether mmcv's compiled ops are installed: the one rule behind every detection and
segmentation entry point.

The set-up has two stages (docs/install.md). *Lite* installs ``mmcv-lite``, mmcv without its
compiled ops: enough for mmpretrain, timm, the core, the allocation, hardware and export
tools and ``make demo``. *Ops* installs mmcv built with its CPU ops in place of ``mmcv-lite``;
mmdet and mmseg need those ops as soon as they build a model. On a lite environment a
detection or segmentation entry point stops here with one line that says what to run, instead
of a ``ModuleNotFoundError: mmcv._ext`` from deep inside mmdet.

Standard library only: importing this module imports neither mmcv nor mmengine.
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

__all__ = ['OPS_SCOPES', 'SETUP_HINT', 'MMCVOpsMissing', 'mmcv_ops_problem', 'require_mmcv_ops',
           'require_mmcv_ops_for', 'exit_on_missing_ops']

#: The ``default_scope`` values whose models need mmcv's compiled ops.
OPS_SCOPES = ('mmdet', 'mmseg')

#: What to run, and how long it takes (tools/setup_env.sh measures the same build).
SETUP_HINT = ('run `make setup-ops` (mmcv built once with its CPU ops: about 25 min on 2 AVX2 '
              'cores, 7-13 min with AVX-512, then cached; about a minute after that); pip '
              'users: docs/install.md')

_F = TypeVar('_F', bound=Callable[..., Any])


class MMCVOpsMissing(RuntimeError):
    """mmcv's compiled ops are needed and this environment lacks them (a one-line message)."""


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _has_compiled_ops() -> bool:
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ImportError:  # mmcv itself missing (or its own imports failing)
        return False


def mmcv_ops_problem() -> str | None:
    """``None`` when mmcv's compiled ops are installed, else what is wrong, in words."""
    lite, full = _installed('mmcv-lite'), _installed('mmcv')
    if lite and full:
        return ('both mmcv and mmcv-lite are installed (they write the same package; '
                'never both)')
    if _has_compiled_ops():
        return None
    if lite:
        return 'this environment has mmcv-lite (the lite set-up: no compiled ops)'
    if full:
        return 'the installed mmcv was built without its ops'
    return 'mmcv is not installed'


def require_mmcv_ops(what: str) -> None:
    """Raises :class:`MMCVOpsMissing` naming ``what`` unless mmcv's compiled ops are installed.

    Args:
        what: The command or config that needs the ops (the start of the message).
    """
    problem = mmcv_ops_problem()
    if problem is not None:
        raise MMCVOpsMissing(f"{what} needs mmcv's compiled ops, but {problem}: {SETUP_HINT}")


def require_mmcv_ops_for(config: Any) -> None:
    """:func:`require_mmcv_ops` for a config whose ``default_scope`` is in :data:`OPS_SCOPES`.

    Args:
        config: An OpenMMLab config (``mmengine.config.Config`` or a dict; no
            ``default_scope`` means mmengine's) or the scope name itself.
    """
    if isinstance(config, str):
        scope = config
    elif isinstance(config, Mapping) or callable(getattr(config, 'get', None)):
        scope = config.get('default_scope') or 'mmengine'  # a dict or mmengine's Config
    else:
        raise TypeError(f'config={config!r}: expected an OpenMMLab config (a mapping with '
                        f"'default_scope') or a scope name such as {OPS_SCOPES[0]!r}")
    if scope in OPS_SCOPES:
        require_mmcv_ops(f'default_scope={scope!r} (detection/segmentation)')


def exit_on_missing_ops(main: _F) -> _F:
    """Decorates a command-line ``main``: :class:`MMCVOpsMissing` ends the program with its one
    line (exit status 1) instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except MMCVOpsMissing as err:
            raise SystemExit(f'error: {err}') from None

    return wrapper  # type: ignore[return-value]
