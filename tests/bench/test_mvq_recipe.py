"""``tools/bench/mvq_recipe.py`` end to end on a tiny budget (run as a user runs it).

Checks the structure of what the benchmark writes, not accuracy: every requested row with its
stages, bits matched within 2 %, the decomposition adding up, the dense control present.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmpretrain')

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_benchmark_run(tmp_path):
    from mvq_plugin.data import find_fashion_mnist

    find_fashion_mnist()  # `make test` unpacks it; a missing set is a failure, not a skip
    cmd = [sys.executable, str(ROOT / 'tools/bench/mvq_recipe.py'), '--dense-iters', '30',
           '--budget', '6', '--kmeans-iters', '2', '--seeds', '0', '--points', '1',
           '--rows', 'vq', 'mvq 2:8 one-shot', 'mvq 2:8 + sparse + KD + data-aware',
           'mvq 4:8 + sparse', 'mvq 4:8 + sparse (in_channel)', '--kd-cost-steps', '4',
           '--threads', '1',
           '--work-dir', str(tmp_path / 'work'), '--out', str(tmp_path / 'out')]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((tmp_path / 'out/mvq_recipe.json').read_text())
    (point,) = data['summary']['points']
    rows = point['rows']
    assert list(rows) == ['vq', 'mvq 2:8 one-shot', 'mvq 2:8 + sparse + KD + data-aware',
                          'mvq 4:8 + sparse', 'mvq 4:8 + sparse (in_channel)']
    assert data['meta']['layout'] == 'paper' and data['meta']['sparse_method'] == 'srste'
    runs = {r['row']: r for r in data['runs']}
    assert runs['mvq 2:8 one-shot']['config']['vector_axis'] == 'out_channel'
    assert runs['mvq 4:8 + sparse (in_channel)']['config']['vector_axis'] == 'in_channel'
    assert (tmp_path / 'out/mvq_recipe_fig13.png').stat().st_size > 10_000
    for key in ('4:8', 'vq'):
        assert abs(point['bits'][key] / point['bits']['2:8'] - 1) <= 0.02
    sparse = rows['mvq 2:8 + sparse + KD + data-aware']
    assert set(sparse['columns']) == {'pruned', 'sparse_finetuned', 'clustered', 'finetuned'}
    assert set(rows['vq']['columns']) == {'pruned', 'clustered', 'finetuned'}
    for row in rows.values():
        d = row['decomposition']
        assert d['pruning'] + d['clustering'] - d['recovered'] == pytest.approx(d['net'])
    assert rows['vq']['macs'] == point['macs']['dense'] > 3 * rows['mvq 2:8 one-shot']['macs']
    assert sparse['teacher_bytes'] > 0 and rows['vq']['teacher_bytes'] == 0
    assert data['summary']['dense_control']['n'] == 1
    cost = data['meta']['kd_cost']
    assert cost['teacher_bytes'] == sparse['teacher_bytes'] and cost['ratio'] > 0
    text = (tmp_path / 'out/mvq_recipe.md').read_text()
    assert 'Reading' in text and 'dense control' in text and 'MVQ 2:8' in text
    assert '![top-1 against compression ratio](mvq_recipe_fig13.png)' in text
    assert 'Layout (4:8): out_channel' in text
    # the second run reuses every cached result
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0
    assert json.loads((tmp_path / 'out/mvq_recipe.json').read_text())['meta']['cached'] == 6
