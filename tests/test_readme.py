"""The README as a newcomer runs it: every command's tool answers ``--help`` and knows each
option the README gives it, every config it names loads, every ``make`` target exists, every
pip extra exists, and the quick-start Python blocks (then the hardware-report and export
commands on the artifact they write) run as written."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / 'README.md').read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf'```{lang}\n(.*?)```', README, flags=re.S)


def commands() -> list[str]:
    """Every shell command of the README's bash blocks (continuations joined, comments cut)."""
    out = []
    for block in blocks('bash'):
        for cmd in block.replace('\\\n', ' ').splitlines():
            cmd = re.sub(r'\s+#.*$', '', cmd).strip()
            if cmd and not cmd.startswith('#'):
                out.append(cmd)
    return out


def tool_commands() -> list[list[str]]:
    return [shlex.split(c) for c in commands() if c.startswith('python tools/')]


def test_the_readme_is_short_and_its_commands_are_found():
    assert 100 <= len(README.splitlines()) <= 210
    tools = {argv[1] for argv in tool_commands()}
    assert {'tools/plan.py', 'tools/train.py', 'tools/test.py', 'tools/allocate.py',
            'tools/hw_report.py', 'tools/export.py'} <= tools


@pytest.mark.parametrize('tool', sorted({argv[1] for argv in tool_commands()}))
def test_each_tool_answers_help_and_knows_the_options_given(tool):
    proc = subprocess.run([sys.executable, tool, '--help'], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for argv in tool_commands():
        if argv[1] == tool:
            for opt in (a.split('=')[0] for a in argv[2:] if a.startswith('--')):
                assert opt in proc.stdout, f'{tool} has no option {opt} (README: {argv})'


def test_each_config_the_readme_names_loads():
    pytest.importorskip('mmengine')
    from mmengine.config import Config
    configs = sorted(set(re.findall(r'configs/[\w/.-]+\.py', README)))
    assert len(configs) >= 3
    for path in configs:
        if '/mmdet/' in path:
            pytest.importorskip('mmdet')
        cfg = Config.fromfile(str(REPO / path))
        assert cfg.model.type == 'mvq_plugin.MVQModel', path


def test_each_make_target_and_pip_extra_exists():
    makefile = (REPO / 'Makefile').read_text()
    for cmd in commands():
        if cmd.startswith('make '):
            target = cmd.split()[1]
            assert re.search(rf'^{re.escape(target)}:', makefile, flags=re.M), cmd
    setup = (REPO / 'setup.py').read_text()
    extras = set(re.findall(r"\.\[([\w,]+)\]", README))
    assert extras, 'the README names pip extras'
    for group in extras:
        for extra in group.split(','):
            assert f"'{extra}':" in setup, f'setup.py has no extra {extra!r}'


@pytest.mark.slow
def test_quick_starts_run_as_written(tmp_path, monkeypatch):
    """The Python blocks in order (a torchvision and a timm ResNet-18 at random init, the
    paper's preset with 10 k-means iterations), then the hardware-report and export commands
    on the artifact the first block wrote."""
    pytest.importorskip('timm')
    monkeypatch.chdir(tmp_path)
    for block in blocks('python'):
        exec(compile(block, 'README.md', 'exec'), {'__name__': 'readme'})
    assert (tmp_path / 'resnet18.mvq').is_file() and (tmp_path / 'timm_resnet18.mvq').is_file()
    runs = [argv for argv in tool_commands()
            if argv[1] in ('tools/hw_report.py', 'tools/export.py') and
            ('resnet18.mvq' in argv or '--timm' in argv)]
    assert len(runs) >= 4
    for argv in runs:
        if '--to' in argv and argv[argv.index('--to') + 1] == 'onnx':
            pytest.importorskip('onnxruntime')
        proc = subprocess.run([sys.executable, str(REPO / argv[1]), *argv[2:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
    assert (tmp_path / 'resnet18.onnx').is_file() and (tmp_path / 'resnet18_dense.pth').is_file()
    assert (tmp_path / 'work_dirs' / 'hw').is_dir()
