"""``tools/demo.py`` checks its arguments before anything runs (run as a user runs it)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize('args,message', [
    (['--dense-iters', '40'], '--dense-iters 40: must be > 50'),
    (['--sparse-iters', '300'], '--sparse-iters 300: must be in [0, --mvq-iters=250)'),
    (['--width', '12'], '--width 12: must be a multiple of 8'),
    (['--d', '12'], 'M must divide d'),
    (['--nm', '3-8'], "invalid nm_pattern value: '3-8'"),
])
def test_bad_arguments_stop_with_one_line(args, message, tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / 'tools' / 'demo.py'), '--work-dir',
                          str(tmp_path), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and message in res.stderr, res.stderr[-2000:]
    assert not any(tmp_path.iterdir())  # nothing ran
