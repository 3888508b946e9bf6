"""The build path of ``tools/setup_env.sh``, driven with stub ``python3``/``pip`` executables.

The real path builds mmcv from its sdist (25 minutes on 2 cores) and runs only when no wheel
is cached, so neither CI (warm cache) nor a developer machine ever executes it. The stubs
record the working directory and arguments of every call, build nothing, and let the test
check that a relative ``VENV`` (what the Makefile passes), a relative cache and a relative data
dir work from inside the unpacked sdist.
"""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'tools' / 'setup_env.sh'
DATA_FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
              't10k-labels-idx1-ubyte')

# `python3 -m venv DIR` creates DIR/bin/pip and DIR/bin/python; both record "cwd|argv0|args".
PYTHON3_STUB = r'''#!/usr/bin/env bash
set -e
echo "$PWD|$0|$*" >> "$STUB_LOG"
[ "$1" = -m ] && [ "$2" = venv ] || exit 0
mkdir -p "$3/bin"
cp "$STUB_DIR/pip" "$3/bin/pip"
cp "$STUB_DIR/python" "$3/bin/python"
'''

PIP_STUB = r'''#!/usr/bin/env bash
set -e
echo "$PWD|$0|$*" >> "$STUB_LOG"
arg_after() { local want="$1"; shift; while [ "$#" -gt 1 ]; do
  [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
case "$1" in
  download)
    d="$(arg_after -d "$@")"; src="$(mktemp -d)"
    mkdir -p "$src/mmcv-2.1.0"
    echo "extra_compile_args = ['-std=c++14']" > "$src/mmcv-2.1.0/setup.py"
    tar -czf "$d/mmcv-2.1.0.tar.gz" -C "$src" mmcv-2.1.0 ;;
  wheel)
    echo "compiling in $PWD"
    echo "SETUP: $(cat setup.py)" >> "$STUB_LOG"
    if [ -n "${STUB_FAIL_BUILD:-}" ]; then echo "error: fake compiler failure"; exit 3; fi
    sleep "${STUB_BUILD_SECONDS:-0}"
    w="$(arg_after -w "$@")"; mkdir -p "$w"
    touch "$w/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl" ;;
esac
'''

PYTHON_STUB = '#!/usr/bin/env bash\necho "$PWD|$0|$*" >> "$STUB_LOG"\n'


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run_setup(tmp_path: Path, **extra_env: str) -> tuple[subprocess.CompletedProcess, list]:
    stubs = tmp_path / 'stubs'
    stubs.mkdir()
    _executable(stubs / 'python3', PYTHON3_STUB)
    _executable(stubs / 'pip', PIP_STUB)
    _executable(stubs / 'python', PYTHON_STUB)
    data = tmp_path / 'data' / 'fashion_mnist'
    data.mkdir(parents=True)
    for name in DATA_FILES:
        (data / name).write_bytes(b'\x00' * 16)
    log = tmp_path / 'stub.log'
    env = dict(os.environ, STUB_LOG=str(log), STUB_DIR=str(stubs), PYTHON=str(stubs / 'python3'),
               VENV='.venv', XDG_CACHE_HOME='cache', MVQ_DATA_DIR='data', **extra_env)
    proc = subprocess.run(['bash', str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    calls = [line.split('|', 2) for line in log.read_text().splitlines() if '|' in line]
    return proc, calls


def test_relative_venv_builds_mmcv_from_inside_the_sdist(tmp_path):
    proc, calls = _run_setup(tmp_path)
    assert proc.returncode == 0, proc.stderr
    venv = tmp_path / '.venv'
    # every call into the venv used its absolute path, wherever it ran
    venv_calls = [c for c in calls if '/.venv/' in c[1]]
    assert venv_calls and all(c[1].startswith(str(venv) + '/bin/') for c in venv_calls)
    wheel_calls = [c for c in venv_calls if c[2].startswith('wheel ')]
    assert len(wheel_calls) == 1
    cwd, pip, args = wheel_calls[0]
    assert cwd.endswith('/mmcv-2.1.0') and cwd != str(tmp_path)
    assert pip == str(venv / 'bin' / 'pip')
    assert '--no-build-isolation' in args
    # the C++ standard was raised before the build, and the wheel is cached per torch version
    setup_lines = [c for c in (tmp_path / 'stub.log').read_text().splitlines()
                   if c.startswith('SETUP:')]
    assert setup_lines == ["SETUP: extra_compile_args = ['-std=c++20']"]
    wheels = tmp_path / 'cache' / 'mvq_plugin' / 'wheels' / 'torch-2.14.1'
    assert [p.name for p in wheels.iterdir()] == ['mmcv-2.1.0-cp311-cp311-linux_x86_64.whl']
    # the cached wheel is what gets installed, the stamp is written, the build log is kept
    installs = [c[2] for c in venv_calls if c[2].startswith('install ')]
    assert any(str(wheels / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl') in a for a in installs)
    assert (venv / '.mvq_stamp').read_text().strip()
    build_log = tmp_path / 'cache' / 'mvq_plugin' / 'mmcv-2.1.0-torch-2.14.1-build.log'
    assert 'compiling in' in build_log.read_text()
    # the user is told up front that a long one-time build is coming
    assert 'one-time build of mmcv 2.1.0' in proc.stderr and 'about 25 min' in proc.stderr


def test_second_run_with_the_stamp_does_not_rebuild(tmp_path):
    proc, calls = _run_setup(tmp_path)
    assert proc.returncode == 0, proc.stderr
    env = dict(os.environ, STUB_LOG=str(tmp_path / 'stub2.log'), STUB_DIR=str(tmp_path / 'stubs'),
               PYTHON=str(tmp_path / 'stubs' / 'python3'), VENV='.venv', XDG_CACHE_HOME='cache',
               MVQ_DATA_DIR='data')
    again = subprocess.run(['bash', str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert 'environment up to date' in again.stderr
    assert not (tmp_path / 'stub2.log').exists()


def test_failed_build_shows_the_log_tail_and_caches_nothing(tmp_path):
    proc, _ = _run_setup(tmp_path, STUB_FAIL_BUILD='1')
    assert proc.returncode == 3
    assert 'mmcv build failed (exit 3)' in proc.stderr
    assert 'error: fake compiler failure' in proc.stderr
    wheels = tmp_path / 'cache' / 'mvq_plugin' / 'wheels' / 'torch-2.14.1'
    assert not list(wheels.glob('*.whl'))
    assert not (tmp_path / '.venv' / '.mvq_stamp').exists()


def test_heartbeat_of_a_long_build_before_any_compile_step(tmp_path):
    """A build that has logged no ninja step yet gets heartbeats and still succeeds."""
    proc, _ = _run_setup(tmp_path, MVQ_HEARTBEAT_S='1', STUB_BUILD_SECONDS='3')
    assert proc.returncode == 0, proc.stderr
    assert 'compile step [0/?]' in proc.stderr
    wheels = tmp_path / 'cache' / 'mvq_plugin' / 'wheels' / 'torch-2.14.1'
    assert len(list(wheels.glob('*.whl'))) == 1


def test_arguments_are_refused(tmp_path):
    proc = subprocess.run(['bash', str(SCRIPT), '--fast'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and '--fast' in proc.stderr
