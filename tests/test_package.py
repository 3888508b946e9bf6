"""The package's shape: no import cycle, dependencies one way, no module importing another's
private names, files split along concepts (not too long), a light top-level import, no test
that loads a script by path."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / 'mvq_plugin'
TESTS = Path(__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _import_graph() -> dict[str, set[str]]:
    """``{module: modules of mvq_plugin it imports}``, function-level imports included.

    ``from .pkg import name`` counts as importing ``pkg.name`` when that is a module, else
    the package ``pkg`` itself (its ``__init__``).
    """
    modules = {_module_name(p): p for p in PKG.rglob('*.py')}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == '__init__.py'
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split('.') if is_pkg else name.split('.')[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = '.'.join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ''
                for alias in node.names:
                    sub = f'{target}.{alias.name}'
                    edges.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_the_checker_finds_a_cycle():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c', 'a']]
    assert _cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_cycle_inside_the_package():
    graph = _import_graph()
    assert 'mvq_plugin.core.accounting' in graph and graph['mvq_plugin.core.staged']
    assert _cycles(graph) == []


def test_dependencies_point_one_way():
    """core imports nothing else of the package; io and hw never import integrations nor
    allocation; allocation (over core and hw) never imports io or integrations."""
    graph = _import_graph()
    for name, edges in graph.items():
        if name.startswith('mvq_plugin.core'):
            assert all(e.startswith('mvq_plugin.core') or e == 'mvq_plugin.version'
                       for e in edges), (name, edges)
        if name.startswith(('mvq_plugin.io', 'mvq_plugin.hw')):
            assert not any(e.startswith(('mvq_plugin.integrations', 'mvq_plugin.allocation'))
                           for e in edges), (name, edges)
        if name.startswith('mvq_plugin.allocation'):
            assert all(e.startswith(('mvq_plugin.allocation', 'mvq_plugin.core',
                                     'mvq_plugin.hw')) for e in edges), (name, edges)


def _private_imports(modules: dict[str, Path]) -> list[tuple[str, str]]:
    """``(module, imported name)`` for every ``from X import _name`` of one module of the
    package from another (relative or absolute; dunder names such as ``__version__`` are
    public), function-level imports included."""
    found = []
    for name, path in sorted(modules.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if not node.level and not (node.module or '').split('.')[0] == PKG.name:
                continue  # another package's private names are its business
            found += [(name, a.name) for a in node.names
                      if a.name.startswith('_') and not a.name.startswith('__')]
    return found


def test_the_checker_finds_private_imports(tmp_path):
    src = {'a': 'from .b import _hidden, public, __version__\n',
           'b': 'def f():\n    from mvq_plugin.core.x import _inner as y\n',
           'c': 'from numpy._core import _private\nimport mvq_plugin._ok_as_module\n'
                'from . import b\n'}
    modules = {}
    for key, text in src.items():
        modules[f'mvq_plugin.{key}'] = tmp_path / f'{key}.py'
        modules[f'mvq_plugin.{key}'].write_text(text)
    assert _private_imports(modules) == [('mvq_plugin.a', '_hidden'),
                                         ('mvq_plugin.b', '_inner')]


def test_no_module_imports_another_modules_private_names():
    """A name another module needs is public (and listed in ``__all__``), or lives in the
    module that owns its concept."""
    modules = {_module_name(p): p for p in PKG.rglob('*.py')}
    assert _private_imports(modules) == []


def test_no_file_over_600_lines():
    """400 lines is the guide; files split along concepts, not to meet a count, so a module
    whose concept needs more may grow up to 600."""
    sizes = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in PKG.rglob('*.py')}
    assert {k: v for k, v in sizes.items() if v > 600} == {}


def test_import_mvq_plugin_pulls_in_neither_mmengine_nor_timm():
    code = ('import sys, mvq_plugin, mvq_plugin.hw, mvq_plugin.io; '
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'mmengine', 'timm', 'mmcv', "
            "'mmdet', 'mmseg', 'mmpretrain'}))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == '[]'


def test_no_test_loads_a_script_by_path():
    offenders = {str(p.relative_to(TESTS)) for p in TESTS.rglob('*.py')
                 if p != Path(__file__) and 'spec_from_file_location' in p.read_text()}
    assert offenders == set()
