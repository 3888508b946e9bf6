"""``tools/setup_env.sh`` and the Makefile's set-up stages, driven with stub ``python3``/``pip``.

The real ops path builds mmcv from its sdist (25 minutes on 2 cores) and runs only when no wheel
is cached, so neither CI (warm cache) nor a developer machine ever executes it. The stubs
record the working directory and arguments of every call, build nothing, and let the test
check that a relative ``VENV`` (what the Makefile passes), a relative cache and a relative data
dir work from inside the unpacked sdist. The stub ``pip`` also keeps the venv's mmcv
distributions (``mmcv``, ``mmcv-lite``) in a file, which the stub ``python`` reports when the
script asks, so the lite -> ops switch can be followed; a file ``<site>.both`` appears if the
two are ever installed at once.
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
touch "$STUB_SITE"
has() { grep -qx "$1" "$STUB_SITE"; }
add() { has "$1" || echo "$1" >> "$STUB_SITE"
        if has mmcv && has mmcv-lite; then touch "$STUB_SITE.both"; fi; }
del() { grep -vx "$1" "$STUB_SITE" > "$STUB_SITE.tmp" || true; mv "$STUB_SITE.tmp" "$STUB_SITE"; }
case "$1" in
  install)
    for a in "$@"; do case "$a" in
      */mmcv-2.1.0-*.whl) add mmcv ;;
      */requirements/mmcv_lite.txt) add mmcv-lite ;;
    esac; done ;;
  uninstall)
    shift; for a in "$@"; do case "$a" in -*) ;; *) del "$a" ;; esac; done ;;
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

# Answers the script's question "which mmcv distributions are installed" from the stub site.
PYTHON_STUB = r'''#!/usr/bin/env bash
echo "$PWD|$0|$*" >> "$STUB_LOG"
case "$*" in
  *importlib.metadata*)
    out=''; for n in mmcv mmcv-lite; do
      grep -qx "$n" "$STUB_SITE" 2>/dev/null && out="$out $n"; done
    echo "${out# }" ;;
esac
'''


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _env(tmp_path: Path, log: str, **extra_env: str) -> dict:
    """The stubs and a ready data dir (made once per ``tmp_path``), and the environment."""
    stubs = tmp_path / 'stubs'
    if not stubs.is_dir():
        stubs.mkdir()
        _executable(stubs / 'python3', PYTHON3_STUB)
        _executable(stubs / 'pip', PIP_STUB)
        _executable(stubs / 'python', PYTHON_STUB)
        data = tmp_path / 'data' / 'fashion_mnist'
        data.mkdir(parents=True)
        for name in DATA_FILES:
            (data / name).write_bytes(b'\x00' * 16)
    env = {k: v for k, v in os.environ.items()
           if k not in ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MVQ_STAGE')}
    env.update(STUB_LOG=str(tmp_path / log), STUB_DIR=str(stubs),
               STUB_SITE=str(tmp_path / 'site.txt'), PYTHON=str(stubs / 'python3'),
               VENV='.venv', XDG_CACHE_HOME='cache', MVQ_DATA_DIR='data')
    env.update(extra_env)
    return env


def _calls(tmp_path: Path, log: str) -> list:
    path = tmp_path / log
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split('|', 2) for line in lines if '|' in line]


def _run_setup(tmp_path: Path, log: str = 'stub.log',
               **extra_env: str) -> tuple[subprocess.CompletedProcess, list]:
    proc = subprocess.run(['bash', str(SCRIPT)], cwd=tmp_path,
                          env=_env(tmp_path, log, **extra_env), capture_output=True, text=True,
                          timeout=120)
    return proc, _calls(tmp_path, log)


def _run_make(tmp_path: Path, target: str, log: str) -> tuple[subprocess.CompletedProcess, list]:
    """``make TARGET`` in the repository with the venv, cache and data under ``tmp_path``."""
    env = _env(tmp_path, log, XDG_CACHE_HOME=str(tmp_path / 'cache'),
               MVQ_DATA_DIR=str(tmp_path / 'data'))
    proc = subprocess.run(['make', '-s', '-C', str(ROOT), target, f'VENV={tmp_path / ".venv"}'],
                          env=env, capture_output=True, text=True, timeout=120)
    return proc, _calls(tmp_path, log)


def _site(tmp_path: Path) -> list[str]:
    """The mmcv distributions the stub venv holds."""
    assert not (tmp_path / 'site.txt.both').exists(), 'mmcv and mmcv-lite were installed at once'
    return sorted((tmp_path / 'site.txt').read_text().split())


def _stage(tmp_path: Path) -> str:
    """The stage the stamp records (after the hash)."""
    return (tmp_path / '.venv' / '.mvq_stamp').read_text().split()[1]


def _pip(calls: list, verb: str) -> list[str]:
    return [c[2] for c in calls if c[1].endswith('/bin/pip') and c[2].split()[0] == verb]


def test_relative_venv_builds_mmcv_from_inside_the_sdist(tmp_path):
    proc, calls = _run_setup(tmp_path, MVQ_STAGE='ops')
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
    assert _stage(tmp_path) == 'ops' and _site(tmp_path) == ['mmcv']
    build_log = tmp_path / 'cache' / 'mvq_plugin' / 'mmcv-2.1.0-torch-2.14.1-build.log'
    assert 'compiling in' in build_log.read_text()
    # the user is told up front that a long one-time build is coming
    assert 'one-time build of mmcv 2.1.0' in proc.stderr and 'about 25 min' in proc.stderr


def test_second_run_with_the_stamp_does_not_rebuild(tmp_path):
    proc, calls = _run_setup(tmp_path, MVQ_STAGE='ops')
    assert proc.returncode == 0, proc.stderr
    again, _ = _run_setup(tmp_path, 'stub2.log', MVQ_STAGE='ops')
    assert again.returncode == 0, again.stderr
    assert 'environment up to date' in again.stderr
    assert not (tmp_path / 'stub2.log').exists()


def test_failed_build_shows_the_log_tail_and_caches_nothing(tmp_path):
    proc, _ = _run_setup(tmp_path, MVQ_STAGE='ops', STUB_FAIL_BUILD='1')
    assert proc.returncode == 3
    assert 'mmcv build failed (exit 3)' in proc.stderr
    assert 'error: fake compiler failure' in proc.stderr
    wheels = tmp_path / 'cache' / 'mvq_plugin' / 'wheels' / 'torch-2.14.1'
    assert not list(wheels.glob('*.whl'))
    assert not (tmp_path / '.venv' / '.mvq_stamp').exists()


def test_heartbeat_of_a_long_build_before_any_compile_step(tmp_path):
    """A build that has logged no ninja step yet gets heartbeats and still succeeds."""
    proc, _ = _run_setup(tmp_path, MVQ_STAGE='ops', MVQ_HEARTBEAT_S='1', STUB_BUILD_SECONDS='3')
    assert proc.returncode == 0, proc.stderr
    assert 'compile step [0/?]' in proc.stderr
    wheels = tmp_path / 'cache' / 'mvq_plugin' / 'wheels' / 'torch-2.14.1'
    assert len(list(wheels.glob('*.whl'))) == 1


def test_arguments_are_refused(tmp_path):
    proc = subprocess.run(['bash', str(SCRIPT), '--fast'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and '--fast' in proc.stderr


def test_unknown_stage_is_refused_naming_the_allowed_ones(tmp_path):
    proc, calls = _run_setup(tmp_path, MVQ_STAGE='full')
    assert proc.returncode == 2
    assert 'MVQ_STAGE=full' in proc.stderr and 'lite' in proc.stderr and 'ops' in proc.stderr
    assert calls == [] and not (tmp_path / '.venv').exists()


def test_lite_stage_installs_mmcv_lite_and_builds_nothing(tmp_path):
    """The default stage (``make setup``, ``make demo``): no sdist, no wheel, mmcv-lite."""
    proc, calls = _run_setup(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _pip(calls, 'download') == [] and _pip(calls, 'wheel') == []
    installs = _pip(calls, 'install')
    assert any(a.endswith(str(ROOT / 'requirements' / 'mmcv_lite.txt')) for a in installs)
    assert not any('.whl' in a for a in installs)
    assert not (tmp_path / 'cache' / 'mvq_plugin' / 'wheels').exists()
    assert _site(tmp_path) == ['mmcv-lite'] and _stage(tmp_path) == 'lite'
    # the lite import check leaves out mmcv.ops, mmdet and mmseg
    checks = [c[2] for c in calls if c[1].endswith('/bin/python') and 'import torch' in c[2]]
    assert checks == ['-c import torch, mmcv, mmpretrain, timm, mvq_plugin']
    # the user learns what detection/segmentation need, and what it costs
    assert "'make setup-ops'" in proc.stderr and 'about 25 min' in proc.stderr


def test_make_demo_then_make_test_replaces_mmcv_lite_and_a_rerun_changes_nothing(tmp_path):
    demo, calls = _run_make(tmp_path, 'demo', 'demo.log')
    assert demo.returncode == 0, demo.stderr
    assert _site(tmp_path) == ['mmcv-lite'] and _stage(tmp_path) == 'lite'
    assert [c[2] for c in calls if c[1].endswith('/bin/python')][-1].startswith('tools/demo.py')
    # lite -> ops: `make test` builds the wheel and uninstalls mmcv-lite before installing it
    test, calls = _run_make(tmp_path, 'test', 'test.log')
    assert test.returncode == 0, test.stderr
    pip_calls = [c[2] for c in calls if c[1].endswith('/bin/pip')]
    uninstall = [i for i, a in enumerate(pip_calls) if a.startswith('uninstall ')]
    wheel_install = [i for i, a in enumerate(pip_calls)
                     if a.startswith('install ') and 'mmcv-2.1.0-' in a]
    assert len(uninstall) == 1 and len(wheel_install) == 1
    assert pip_calls[uninstall[0]] == 'uninstall -q -y mmcv-lite'
    assert uninstall[0] < wheel_install[0]
    assert not any('mmcv_lite.txt' in a for a in pip_calls)
    assert _site(tmp_path) == ['mmcv'] and _stage(tmp_path) == 'ops'
    assert 'replacing mmcv-lite by the compiled mmcv' in test.stderr
    assert any(c[2].endswith('mmcv.ops, mmdet, mmseg') for c in calls)
    assert [c[2] for c in calls if c[1].endswith('/bin/python')][-1] == '-m pytest -q'
    # a second `make test` changes nothing: no pip call at all, the same stamp
    stamp = (tmp_path / '.venv' / '.mvq_stamp').read_text()
    again, calls = _run_make(tmp_path, 'test', 'again.log')
    assert again.returncode == 0, again.stderr
    assert 'environment up to date' in again.stderr and 'ops stage' in again.stderr
    assert [c[2] for c in calls] == ['-m pytest -q']
    assert _site(tmp_path) == ['mmcv']
    assert (tmp_path / '.venv' / '.mvq_stamp').read_text() == stamp


def test_make_demo_on_an_ops_environment_keeps_the_compiled_mmcv(tmp_path):
    test, _ = _run_make(tmp_path, 'test', 'test.log')
    assert test.returncode == 0, test.stderr
    assert _site(tmp_path) == ['mmcv'] and _stage(tmp_path) == 'ops'
    demo, calls = _run_make(tmp_path, 'demo', 'demo.log')
    assert demo.returncode == 0, demo.stderr
    assert [c for c in calls if c[1].endswith('/bin/pip')] == []
    assert [c[2] for c in calls][-1].startswith('tools/demo.py')
    assert _site(tmp_path) == ['mmcv'] and _stage(tmp_path) == 'ops'
    # with a stale stamp (a requirements file changed) the lite set-up reinstalls the stack and
    # still keeps the compiled mmcv: no mmcv-lite, no uninstall, no rebuild
    (tmp_path / '.venv' / '.mvq_stamp').write_text('0000000000000000 ops\n')
    demo, calls = _run_make(tmp_path, 'demo', 'demo2.log')
    assert demo.returncode == 0, demo.stderr
    assert 'keeping the compiled mmcv' in demo.stderr
    pip_calls = [c[2] for c in calls if c[1].endswith('/bin/pip')]
    assert pip_calls and not any('mmcv' in a for a in pip_calls)
    assert _site(tmp_path) == ['mmcv'] and _stage(tmp_path) == 'ops'


def test_ops_stage_repairs_mmcv_and_mmcv_lite_installed_together(tmp_path):
    """Both distributions write mmcv/: the ops stage removes both, then installs the wheel."""
    (tmp_path / 'site.txt').write_text('mmcv\nmmcv-lite\n')
    proc, calls = _run_setup(tmp_path, MVQ_STAGE='ops')
    assert proc.returncode == 0, proc.stderr
    pip_calls = [c[2] for c in calls if c[1].endswith('/bin/pip')]
    removed = pip_calls.index('uninstall -q -y mmcv mmcv-lite')
    assert removed < next(i for i, a in enumerate(pip_calls) if 'mmcv-2.1.0-' in a)
    assert _site(tmp_path) == ['mmcv'] and _stage(tmp_path) == 'ops'
