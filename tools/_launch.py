"""Runs ``tools/train.py`` in a subprocess for the demo and the benchmarks (private helper).

One process per run: mmengine's logger, message hub and visualizer are process-wide.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]


def run_train(config: str | Path, work_dir: str | Path, options: Sequence[str] = (), *,
              threads: int = 0, log: str | Path | None = None, resume: bool = False) -> float:
    """``python tools/train.py CONFIG --work-dir DIR --cfg-options ...``; returns its wall time.

    Args:
        config: Config file (relative to the repository root, or absolute).
        work_dir: The run's work dir.
        options: ``--cfg-options`` items.
        threads: ``OMP_NUM_THREADS`` of the run (0: inherited; fewer threads than cores avoids
            OpenMP spin-waiting on a shared machine).
        log: Write the run's output to this file instead of the console (appended to).
        resume: Continue from the work dir's last checkpoint, if it has one
            (``tools/train.py --resume``).

    Raises:
        RuntimeError: The run failed (with the end of its output).
    """
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), '--work-dir',
           str(work_dir)]
    if resume and (Path(work_dir) / 'last_checkpoint').is_file():
        cmd += ['--resume']
    if options:
        cmd += ['--cfg-options', *map(str, options)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print('$', shlex.join(cmd), flush=True)
    start = time.perf_counter()
    if log is None:
        proc = subprocess.run(cmd, cwd=REPO, env=env)
        tail = ''
    else:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, 'a') as fh:
            proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        tail = Path(log).read_text()[-4000:]
    if proc.returncode:
        raise RuntimeError(f'{shlex.join(cmd)} failed ({proc.returncode})'
                           + (f'; end of {log}:\n{tail}' if log else ''))
    return time.perf_counter() - start
