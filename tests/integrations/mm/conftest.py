"""Helpers for the OpenMMLab tests: run the real tools as a user would, in subprocesses.

Each run is its own process (mmengine's logger, message hub and visualizer are
process-wide singletons keyed by run name), with ``torch`` limited to the CI's 2 threads.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvq_plugin.integrations.mm.scalars import read_scalars as scalars  # noqa: F401

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


def run_tool(tool: str, *args: str, nproc: int | None = None, timeout: int = 900,
             check: bool = True) -> subprocess.CompletedProcess:
    """Runs ``tools/<tool>`` from the repository root; returns the completed process."""
    env = dict(os.environ, OMP_NUM_THREADS='2', MKL_NUM_THREADS='2', PYTHONHASHSEED='0',
               PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    if tool.endswith('.sh'):
        cmd = ['bash', str(REPO / 'tools' / tool), *args]
        env['PYTHON'] = sys.executable
        env['PORT'] = str(29500 + os.getpid() % 1000)
    else:
        cmd = [sys.executable, str(REPO / 'tools' / tool), *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(cmd)} failed ({proc.returncode}):\n'
                             f'{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}')
    return proc


def opts(**kv) -> list[str]:
    """``--cfg-options`` arguments from keyword pairs (``__`` stands for ``.``)."""
    return ['--cfg-options'] + [f'{k.replace("__", ".")}={v}' for k, v in kv.items()]


@pytest.fixture(scope='session')
def canvas_root(tmp_path_factory) -> Path:
    """Tiny real-pixel canvas sets (8 train / 4 val images each)."""
    from mvq_plugin.data.canvas import CanvasSpec, make_coco_instances, make_semantic_seg
    root = tmp_path_factory.mktemp('canvas')
    make_coco_instances(root / 'coco', 8, 4, CanvasSpec(), seed=0)
    make_semantic_seg(root / 'seg', 8, 4, CanvasSpec(), seed=0)
    return root
