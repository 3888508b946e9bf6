"""The README's results table is the one ``tools/readme_results.py`` generates from
``docs/results/*.json``: a number changed in either place alone fails here."""
import json
import shutil
from pathlib import Path

import pytest
import readme_table  # tools/bench/readme_table.py (conftest puts the folder on sys.path)

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / 'docs' / 'results'


def test_readme_table_matches_the_results_files():
    text = (REPO / 'README.md').read_text()
    assert readme_table.readme_section(text) == readme_table.render(RESULTS), (
        'README.md and docs/results disagree: run python tools/readme_results.py')


def test_every_row_cites_a_known_machine_a_command_and_an_existing_report():
    rows = readme_table.rows(RESULTS)
    assert len(rows) >= 6
    for row in rows:
        machines = [m.strip() for m in row.machine.split(',')]
        assert all(m in readme_table.MACHINES or m == '-' for m in machines), row
        assert row.command.startswith('python ') or row.command.startswith('make '), row
        for link in row.report.split('](')[1:]:
            assert (REPO / link.split(')')[0]).is_file(), (row.what, link)
    doc = (REPO / 'docs' / 'benchmarks.md').read_text()
    assert all(f'| {mid} |' in doc for mid in readme_table.MACHINES)


def test_a_changed_number_changes_the_table(tmp_path):
    results = tmp_path / 'results'
    shutil.copytree(RESULTS, results)
    before = readme_table.render(results)
    demo = json.loads((results / 'demo_summary.json').read_text())
    demo['mvq_top1'] = 12.34
    (results / 'demo_summary.json').write_text(json.dumps(demo))
    after = readme_table.render(results)
    assert '12.34% MVQ' in after and after != before
    readme = tmp_path / 'README.md'
    readme.write_text(f'# x\n\n{before}\n\ntail\n')
    spliced = readme_table.splice(readme.read_text(), after)
    assert spliced == f'# x\n\n{after}\n\ntail\n'


def test_machine_lines_map_to_ids():
    assert readme_table.machine_id('AMD EPYC, 2 cores, AVX2, 2 torch threads') == 'M1'
    assert readme_table.machine_id('AMD EPYC, 2 cores, AVX-512, 2 torch threads') == 'M2'
    assert readme_table.machine_id('Intel(R) Xeon(R) Processor, 1 torch threads, AVX-512') == 'M3'
    with pytest.raises(ValueError, match="machine line 'Apple M2' names none"):
        readme_table.machine_id('Apple M2')
    with pytest.raises(ValueError, match='no results table markers'):
        readme_table.readme_section('# a README without the table')


def test_detection_segmentation_row_names_each_base_config_and_what_is_still_to_run(tmp_path):
    results = tmp_path / 'results'
    shutil.copytree(RESULTS, results)
    rows = {row: [dict(final=dict(mIoU=m), ratio=16.9, layers_ratio=19.0)]
            for row, m in (('vq', 55.25), ('mvq', 54.0))}
    (results / 'detseg.json').write_text(json.dumps(dict(
        machine='AMD EPYC, 2 cores, AVX2, 2 torch threads', command='python tools/bench/x.py',
        cases=dict(deeplabv3=dict(dense=dict(final=dict(mIoU=58.0)), rows=rows)))))
    (results / 'detseg.md').write_text('x\n')
    row = next(r for r in readme_table.rows(results) if r.what.startswith('Detection'))
    assert row.result == ('Mask R-CNN R18-FPN: still to run; DeepLab-V3 MobileNetV2 '
                          '(`_base_/mvq/mvq_deeplabv3.py`), mIoU: dense 58.0, '
                          'vq 55.2 at 16.9x (19.0x by Eq. 7), mvq 54.0 at 16.9x (19.0x by Eq. 7)')
    assert row.machine == 'M1'
