"""``tools/bench/cuda_check.py`` as a user runs it: it skips cleanly without a GPU, and every
comparison it makes passes CPU against CPU (the same code the GPU run executes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools/bench/cuda_check.py'


def _run(*args, timeout=600):
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_default_run_skips_or_checks_cuda():
    res = _run('--steps', '2', '--kmeans-iters', '3')
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    if torch.cuda.is_available():
        assert res.stdout.count(' ok ') == 2
    else:
        assert 'cuda_check: skipped, no CUDA device' in res.stdout
        assert 'kmeans' not in res.stdout


@pytest.mark.slow
def test_cpu_self_check_compares_everything(tmp_path):
    out = tmp_path / 'check.json'
    res = _run('--device', 'cpu', '--steps', '2', '--kmeans-iters', '3', '--out', str(out))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads(out.read_text())
    km, ft = data['kmeans'], data['finetune']
    assert km['ok'] and km['assignments_identical'] and km['codebook_max_abs_diff'] == 0
    assert km['n'] == 200_000 and km['k'] == 256
    assert ft['ok'] and ft['steps'] == 2 and ft['layers'] == 20
    assert ft['loss_max_abs_diff'] == 0 and ft['codebook_max_abs_diff'] == 0
    assert ft['cpu_s_per_step'] > 0 and ft['ratio_cpu_over_device'] > 0
