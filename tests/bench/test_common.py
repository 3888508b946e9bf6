"""The benchmarks' shape: shared helper modules (``tools/bench/common.py``, the README table's
``readme_table.py`` and two fixtures), no bench script importing another, the bench-only fixtures
outside the installed package; and the helpers."""
import ast
import importlib.util
import json
import shlex
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / 'tools' / 'bench'
#: Runs in SCALE-Sim's own venv (standard library only), so it imports nothing of the project.
STANDALONE = {'scalesim_golden'}


def _is_script(path: Path) -> bool:
    return "if __name__ == '__main__':" in path.read_text()


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports of a file (function-level ones included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split('.')[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split('.')[0])
    return names


def test_no_bench_script_imports_another_and_every_one_uses_common():
    files = sorted(BENCH.glob('*.py'))
    scripts = {p.stem for p in files if _is_script(p)}
    helpers = {p.stem for p in files} - scripts
    assert {'mvq_recipe', 'allocate', 'kmeans'} <= scripts
    assert helpers == {'common', 'matching', 'imagenet_photos', 'readme_table'}
    offenders = {p.stem: sorted(_imported_modules(p) & scripts) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}
    without_common = {s for s in scripts - STANDALONE
                      if 'common' not in _imported_modules(BENCH / f'{s}.py')}
    assert without_common == set()


def test_bench_only_fixtures_are_not_in_the_package():
    for name in ('mvq_plugin.core.matching', 'mvq_plugin.data.imagenet_photos'):
        assert importlib.util.find_spec(name) is None, name


def test_command_line_is_the_command_to_type():
    import common
    line = common.command_line(BENCH / 'mvq_recipe.py', ['--rows', 'mvq 2:8 one-shot', '--x'])
    assert line == "python tools/bench/mvq_recipe.py --rows 'mvq 2:8 one-shot' --x"
    assert shlex.split(line)[3] == 'mvq 2:8 one-shot'
    outside = common.command_line('/elsewhere/b.py', [])
    assert outside == 'python /elsewhere/b.py'


def test_stat_fmt_stat_and_reports(tmp_path):
    import common
    s = common.stat([90.0, 91.5, 92.25])
    assert s == dict(mean=pytest.approx(91.25), min=90.0, max=92.25, n=3)
    assert common.fmt_stat(s) == '91.25 [90.00, 92.25]'
    assert common.fmt_stat(None) == '-'
    md = common.write_report(tmp_path / 'out' / 'bench.v2', dict(a=1, path=tmp_path), '# B')
    assert md == tmp_path / 'out' / 'bench.v2.md' and md.read_text() == '# B\n'
    data = json.loads((tmp_path / 'out' / 'bench.v2.json').read_text())
    assert data == dict(a=1, path=str(tmp_path))


def test_timing_helpers():
    import common
    calls = []
    out, seconds = common.best_of(lambda: calls.append(1) or len(calls), 3)
    assert out == 3 and seconds >= 0 and len(calls) == 3
    assert common.timed(lambda: 'x')[0] == 'x'
    line = common.describe_machine()
    assert 'torch threads' in line and 'cores' in line


def test_helpers_import_without_the_scripts():
    # importing the helpers runs no benchmark and pulls in no bench script
    import common  # noqa: F401
    import matching  # noqa: F401
    assert not {'mvq_recipe', 'allocate', 'kmeans'} & set(sys.modules)
