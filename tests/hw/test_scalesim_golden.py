"""The dense WS closed form against SCALE-Sim 3.0.0 (golden numbers in data/).

Regenerate the goldens with ``tools/bench/scalesim_golden.py`` in a SCALE-Sim venv.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from mvq_plugin import hw

GOLDEN = Path(__file__).parent / 'data' / 'scalesim_golden.json'


def _records():
    return json.loads(GOLDEN.read_text())['records']


def _gemm(rec):
    # SCALE-Sim's ofmap size: ceil((H - kh + s) / s)
    s = rec['stride']
    oh = -(-(rec['ifmap_h'] - rec['filter_h'] + s) // s)
    ow = -(-(rec['ifmap_w'] - rec['filter_w'] + s) // s)
    return rec['filter_h'] * rec['filter_w'] * rec['channels'], rec['num_filter'], oh * ow


def test_golden_coverage():
    recs = _records()
    arrays = {(r['array_rows'], r['array_cols']) for r in recs}
    per_array = {a: [r for r in recs if (r['array_rows'], r['array_cols']) == a] for a in arrays}
    full = [a for a, layers in per_array.items() if len(layers) >= 12]
    assert len(full) >= 2                                   # >= 12 shapes on >= 2 arrays
    assert any(r != c for r, c in arrays)                   # and a non-square one
    for arr in full:
        layers = per_array[arr]
        shapes = [_gemm(r) for r in layers]
        R, C = arr
        assert any(sr < R and sc < C for sr, sc, _ in shapes)          # smaller than the array
        assert any(sr % R and sc % C for sr, sc, _ in shapes)          # not multiples
        assert any(r['stride'] > 1 for r in layers)
        assert any(r['filter_h'] == 1 and r['ifmap_h'] > 1 for r in layers)   # a 1x1 conv
        assert any(r['layer'] == 'r18_fc' for r in layers)
        assert all(r['stall_cycles'] == 0 for r in layers)


@pytest.mark.parametrize('rec', _records(), ids=lambda r: f"{r['array_rows']}x{r['array_cols']}-"
                                                          f"{r['layer']}")
def test_closed_form_matches_scalesim(rec):
    sr, sc, t = _gemm(rec)
    R, C = rec['array_rows'], rec['array_cols']
    assert int(hw.ws_cycles(sr, sc, t, R, C)) == rec['total_cycles']
    acc = hw.ws_sram_accesses(sr, sc, t, R, C)
    assert int(acc['sram_ifmap_reads']) == rec['sram_ifmap_reads']
    assert int(acc['sram_filter_reads']) == rec['sram_filter_reads']
    assert int(acc['sram_ofmap_writes']) == rec['sram_ofmap_writes']


def test_ws_preset_reproduces_scalesim_through_topology(tmp_path):
    """The full path (topology CSV -> workload -> 'ws' preset) is exact, utilization too."""
    recs = _records()
    for arr in sorted({(r['array_rows'], r['array_cols']) for r in recs}):
        layers = [r for r in recs if (r['array_rows'], r['array_cols']) == arr]
        csv = tmp_path / f'topo_{arr[0]}x{arr[1]}.csv'
        lines = ['Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,'
                 'Num Filter,Strides,']
        lines += [f"{r['layer']},{r['ifmap_h']},{r['ifmap_w']},{r['filter_h']},{r['filter_w']},"
                  f"{r['channels']},{r['num_filter']},{r['stride']}," for r in layers]
        csv.write_text('\n'.join(lines) + '\n')
        report = hw.estimate(csv, arch='ws', rows=arr[0], cols=arr[1])
        L = report.layers
        np.testing.assert_array_equal(L['cycles'], [r['total_cycles'] for r in layers])
        np.testing.assert_array_equal(L['sram_ifmap_reads'],
                                      [r['sram_ifmap_reads'] for r in layers])
        np.testing.assert_array_equal(L['sram_filter_reads'],
                                      [r['sram_filter_reads'] for r in layers])
        np.testing.assert_array_equal(L['sram_ofmap_writes'],
                                      [r['sram_ofmap_writes'] for r in layers])
        np.testing.assert_allclose(100 * L['utilization'],
                                   [r['overall_util_pct'] for r in layers], rtol=1e-9)
        np.testing.assert_allclose(100 * L['mapping_efficiency'],
                                   [r['mapping_efficiency_pct'] for r in layers], rtol=1e-9)
