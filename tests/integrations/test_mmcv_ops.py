"""The one rule behind every detection/segmentation entry point: mmcv's compiled ops or one line.

The lite set-up (mmcv-lite) is emulated by replacing the two facts the rule reads (which mmcv
distributions are installed, whether ``mmcv._ext`` exists); the tools are run as a user runs
them, in a subprocess that first installs the same emulation.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mvq_plugin.integrations import mmcv_ops
from mvq_plugin.integrations.mmcv_ops import (
    MMCVOpsMissing,
    exit_on_missing_ops,
    mmcv_ops_problem,
    require_mmcv_ops,
    require_mmcv_ops_for,
)

REPO = Path(__file__).resolve().parents[2]


def _emulate(monkeypatch, dists: tuple[str, ...], ext: bool) -> None:
    monkeypatch.setattr(mmcv_ops, '_installed', lambda dist: dist in dists)
    monkeypatch.setattr(mmcv_ops, '_has_compiled_ops', lambda: ext)


@pytest.mark.parametrize('dists, ext, problem', [
    (('mmcv',), True, None),
    (('mmcv-lite',), False, 'this environment has mmcv-lite (the lite set-up: no compiled ops)'),
    (('mmcv', 'mmcv-lite'), True, 'both mmcv and mmcv-lite are installed'),
    (('mmcv',), False, 'the installed mmcv was built without its ops'),
    ((), False, 'mmcv is not installed'),
])
def test_each_state_is_named(monkeypatch, dists, ext, problem):
    _emulate(monkeypatch, dists, ext)
    found = mmcv_ops_problem()
    assert found == problem if problem is None else found.startswith(problem)


def test_lite_environment_refuses_detection_and_segmentation_scopes_only(monkeypatch):
    _emulate(monkeypatch, ('mmcv-lite',), False)
    for ok in ('mmpretrain', 'mmengine', {'default_scope': 'mmpretrain'}, {}):
        require_mmcv_ops_for(ok)  # classification and the core need no ops
    with pytest.raises(MMCVOpsMissing) as err:
        require_mmcv_ops_for({'default_scope': 'mmseg'})
    line = str(err.value)
    assert '\n' not in line
    assert line.startswith("default_scope='mmseg' (detection/segmentation) needs mmcv's compiled "
                           'ops, but this environment has mmcv-lite')
    assert '`make setup-ops`' in line and 'about 25 min on 2 AVX2 cores' in line


def test_bad_config_is_named():
    with pytest.raises(TypeError, match=r"config=42: expected an OpenMMLab config .* 'mmdet'"):
        require_mmcv_ops_for(42)


def test_exit_on_missing_ops_gives_one_line_and_passes_results(monkeypatch):
    @exit_on_missing_ops
    def main(scope):
        require_mmcv_ops_for(scope)
        return 7

    _emulate(monkeypatch, ('mmcv-lite',), False)
    assert main('mmpretrain') == 7
    with pytest.raises(SystemExit) as stop:
        main('mmdet')
    assert str(stop.value.code).startswith("error: default_scope='mmdet' (detection/segmentation)")
    _emulate(monkeypatch, ('mmcv',), True)
    assert main('mmdet') == 7


@pytest.mark.mmcv_ops
def test_this_environment_has_the_ops():
    """What `make test` sets up: the compiled mmcv, alone."""
    assert mmcv_ops_problem() is None
    require_mmcv_ops('the ops set-up')


LITE = textwrap.dedent('''
    import runpy, sys
    from mvq_plugin.integrations import mmcv_ops
    mmcv_ops._installed = lambda dist: dist == 'mmcv-lite'
    mmcv_ops._has_compiled_ops = lambda: False
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name='__main__')
''')


@pytest.mark.slow
@pytest.mark.parametrize('tool, args', [
    ('plan.py', ['configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py']),
    ('train.py', ['configs/demo/deeplabv3_r50-d8_canvas_mvq.py']),
    ('hw_report.py', ['--config', 'configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py',
                      '--input-shape', '1', '3', '128', '128']),
])
def test_tools_stop_with_one_line_before_mmdet_builds_anything(tool, args, tmp_path):
    proc = subprocess.run([sys.executable, '-c', LITE, str(REPO / 'tools' / tool), *args,
                           *(['--work-dir', str(tmp_path)] if tool == 'train.py' else [])],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith('error: default_scope=') and '`make setup-ops`' in lines[-1]
    assert 'Traceback' not in proc.stderr and 'mmcv._ext' not in proc.stderr
    assert not any(tmp_path.iterdir())
