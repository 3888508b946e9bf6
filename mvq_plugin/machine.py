"""The machine a figure was measured on, in one line (for benchmark and demo reports)."""
from __future__ import annotations

import os
import platform
import subprocess

import torch

__all__ = ['describe_machine']


def describe_machine() -> str:
    """CPU model, the widest vector ISA (AVX-512 / AVX2), cores, torch threads and version.

    A kernel limit set through ``ATEN_CPU_CAPABILITY`` (e.g. ``avx2`` on an AVX-512 CPU, to
    stand in for an AVX2 machine) is named too.
    """
    name = platform.processor() or platform.machine()
    try:
        info = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        name = next((ln.split(':', 1)[1].strip() for ln in info.splitlines()
                     if ln.startswith('Model name')), name)
        flags = next((ln for ln in info.splitlines() if ln.startswith('Flags')), '')
        isa = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'
    except OSError:
        isa = '?'
    limit = os.environ.get('ATEN_CPU_CAPABILITY')
    if limit:
        isa += f' (torch kernels limited to {limit})'
    return (f'{name}, {os.cpu_count()} cores, {isa}, {torch.get_num_threads()} torch threads, '
            f'torch {torch.__version__}')
