"""``tools/bench/paper_tables.py`` end to end on a tiny budget (run as a user runs it).

Checks the structure and the accounting of what it writes, not accuracy: Table 1's two cases;
rows at equal bits (A and B store no mask, so they land at the same ratio; D prunes and takes
fewer MACs); sparse reconstruction makes total and mask SSE equal; a rerun keeps every
finished row (resumable).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('mmpretrain')

ROOT = Path(__file__).resolve().parents[2]
ROWS = ['dense control (same budget)', 'A: dense W, VQ k1024 d8, dense recon',
        'B: sparse W, VQ k1024 d8, dense recon', 'D: MVQ (SR-STE)']


@pytest.mark.slow
def test_tiny_paper_tables_run(tmp_path):
    from mvq_plugin.data import find_fashion_mnist

    find_fashion_mnist()  # `make test` unpacks it; a missing set is a failure, not a skip
    cmd = [sys.executable, str(ROOT / 'tools/bench/paper_tables.py'), '--width', '16',
           '--dense-iters', '60', '--budget', '4', '--kmeans-iters', '2', '--seeds', '0',
           '--threads', '1', '--rows', *ROWS, '--work-dir', str(tmp_path / 'work'),
           '--out', str(tmp_path / 'out')]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    data = json.loads((tmp_path / 'out/paper_tables.json').read_text())
    assert set(data['table1']) == {'important 25 % replaced', 'unimportant 75 % replaced'}
    rows = {name: runs[0] for name, runs in data['rows'].items()}
    assert list(rows) == ROWS
    a, b, d = rows[ROWS[1]], rows[ROWS[2]], rows[ROWS[3]]
    assert a['bits'] == b['bits']  # B's dense reconstruction stores no mask, like A
    assert a['macs'] == b['macs'] == a['macs_dense'] > d['macs']
    assert d['sse_total'] == pytest.approx(d['sse_mask'])  # sparse reconstruction
    assert b['sse_total'] > b['sse_mask']  # dense reconstruction of sparse weights
    assert [e[0] for e in d['events']][:3] == ['pruned', 'sparse_end', 'clustered']
    assert 'Table 3' in (tmp_path / 'out/paper_tables.md').read_text()
    rows_dir = tmp_path / 'work' / 'rows'
    stamps = {p.name: p.stat().st_mtime_ns for p in rows_dir.iterdir()}
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and '== ' not in again.stdout  # nothing ran again
    assert {p.name: p.stat().st_mtime_ns for p in rows_dir.iterdir()} == stamps
