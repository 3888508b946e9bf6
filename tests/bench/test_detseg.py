"""``tools/bench/detseg.py``: the plain-VQ baseline it trains is matched to MVQ's bits on the
real detector and segmenter configs (the rows of the table compare at equal size)."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mmcv_ops]


def _write_scalars(work, records, stamp='20261207_000000'):
    """``records`` as mmengine's ``LocalVisBackend`` logs them under ``work``."""
    import json

    path = work / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))


def _deeplab_dense(detseg, tmp_path):
    """A dense DeepLab-V3 row whose (empty) checkpoint is on disk."""
    checkpoint = tmp_path / 'dense.pth'
    checkpoint.write_bytes(b'')
    iters = detseg.dense_iters(detseg.CASES['deeplabv3']['dense'])
    return dict(iters=iters, checkpoint=str(checkpoint), seconds=1.0,
                curve=[dict(step=iters, mIoU=61.0)], final=dict(mIoU=61.0))


def test_vq_rows_match_mvq_bits_on_the_shipped_models():
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    import detseg  # tools/bench, on sys.path by conftest.py

    # MVQ 4:16 d=16 k=256 (19 bits per 16 weights) and 1:2 d=8 k=512: the closest plain VQ
    # in accounted bits, the margin to the baseline
    for case, d, k in (('mask_rcnn', 4, 32), ('deeplabv3', 4, 256)):
        vq, bits, target = detseg.vq_setting(detseg.CASES[case])
        assert vq.method == 'vq' and (vq.block_size, vq.num_codewords) == (d, k), case
        assert 0 <= bits / target - 1 <= 0.02, case


def test_report_decomposes_mvq_against_the_dense_control():
    import detseg

    hw = dict(macs=2.0e8, cycles=12345, energy_uj=10.0, baseline_macs=4.0e8,
              baseline_cycles=50000, baseline_energy_uj=40.0)

    def run(row, final, after_sparse=None):
        curve = [dict(step=300, mIoU=after_sparse)] if after_sparse else []
        compressed = row != 'dense control'
        return dict(row=row, seed=0, final=dict(mIoU=final, aAcc=90.0),
                    curve=curve + [dict(step=600, mIoU=final)], seconds=600.0,
                    hardware=hw if compressed else None, ratio=16.0 if compressed else None,
                    layers_ratio=19.0 if compressed else None)

    dense = dict(iters=4000, seconds=3600.0, curve=[dict(step=4000, mIoU=61.0)],
                 final=dict(mIoU=61.0, aAcc=92.0))
    result = dict(machine='M', command='c', budget=600, seeds=[0], cases=dict(deeplabv3=dict(
        dense=dense, vq=dict(label='vq d=4 k=256', bits=101, mvq_bits=100),
        rows={'dense control': [run('dense control', 61.5)], 'vq': [run('vq', 58.0)],
              'mvq': [run('mvq', 57.0, after_sparse=60.0)]})))
    text = detseg.markdown(result)
    assert '| dense | 61.0 | 92.0 | 1.0x | - | 400 | 50,000 | 40.0 | - | mIoU 72.9 |' in text
    assert ('| mvq | 57.0 [57.0, 57.0] | 90.0 [90.0, 90.0] | 16.0x | 19.0x | 200 | 12,345 | '
            '10.0 | 10 min | mIoU 66.5 at 19x |') in text
    assert 'pruning costs 1.5' in text and 'clustering net of recovery costs 3.0' in text
    assert 'MVQ loses to vq by 1.0 points of mIoU' in text


def test_dense_control_trains_with_the_mvq_configs_lr_and_schedule(tmp_path):
    import detseg
    from mmengine.config import Config

    case = detseg.CASES['deeplabv3']
    cfg = Config.fromfile(str(detseg.dense_control_config('deeplabv3', tmp_path / 'run', 600)))
    mvq = Config.fromfile(str(detseg.REPO / case['mvq']))
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'  # the dense config's optimizer
    assert cfg.optim_wrapper.optimizer.lr == mvq.optim_wrapper.optimizer.lr == 2e-4
    assert [dict(s) for s in cfg.param_scheduler] == [dict(s, end=600)
                                                      for s in mvq.param_scheduler]
    assert cfg.model.type == 'EncoderDecoder'  # the dense model, not MVQModel


def test_rows_of_the_committed_report_are_not_trained_again(tmp_path, monkeypatch):
    """A fresh checkout has no work dirs: the report under ``--out`` carries the finished rows,
    and the dense model is not retrained when no row needs its checkpoint."""
    import json

    import detseg

    def no_training(*args, **kwargs):
        raise AssertionError('a kept row was trained again')

    monkeypatch.setattr(detseg, 'train_mm', no_training)
    iters = detseg.dense_iters(detseg.CASES['deeplabv3']['dense'])
    dense = dict(iters=iters, checkpoint=str(tmp_path / 'gone.pth'), seconds=1.0,
                 curve=[dict(step=iters, mIoU=61.0)], final=dict(mIoU=61.0))
    row = dict(row='vq', seed=0, final=dict(mIoU=58.0), curve=[], seconds=2.0, hardware=None)
    other = dict(dense=dict(dense, curve=[], final=dict(bbox=0.5)), rows={})
    (tmp_path / 'detseg.json').write_text(json.dumps(dict(
        budget=600, cases=dict(deeplabv3=dict(dense=dense, rows=dict(vq=[row])),
                               mask_rcnn=other))))
    assert detseg.kept_rows(tmp_path / 'detseg.json', 300) == {}  # another budget: nothing
    result = detseg.main(['--cases', 'deeplabv3', '--rows', 'vq', '--seeds', '0', '--budget', '600',
                          '--work-dir', str(tmp_path / 'work'), '--out', str(tmp_path)])
    entry = result['cases']['deeplabv3']
    assert entry['dense'] == dense and entry['rows'] == dict(vq=[row])
    # a case not run this time stays in the report as it was
    assert result['cases']['mask_rcnn'] == other
    assert '| vq | 58.0' in (tmp_path / 'detseg.md').read_text()


def test_hardware_of_a_row_is_its_last_validations_report(tmp_path):
    import json

    import detseg

    for tag, cycles in (('planned', 1), ('compressed', 2), ('val_200', 3), ('val_1000', 5),
                        ('val_400', 4)):
        (tmp_path / 'hw' / tag).mkdir(parents=True)
        report = dict(arch=dict(name='EWS-CMS'), totals=dict(cycles=cycles, energy_uj=1.0,
                                                            macs=10),
                      baseline=dict(arch=dict(name='EWS'), totals=dict(cycles=9, energy_uj=2.0,
                                                                       macs=20)))
        (tmp_path / 'hw' / tag / 'hw_report.json').write_text(json.dumps(report))
    hw = detseg._hardware(tmp_path)
    assert hw == dict(arch='EWS-CMS', cycles=5, energy_uj=1.0, baseline='EWS',
                      baseline_cycles=9, baseline_energy_uj=2.0, macs=10, baseline_macs=20)
    assert detseg._hardware(tmp_path / 'none') is None


def test_validation_steps_are_the_iterations_they_followed(tmp_path):
    """mmdet logs validations at the epoch (``step`` 0 in an iteration-based loop), mmseg at
    the iteration: both read back as the training iteration each validation followed, over a
    resumed run's two logs."""
    import detseg

    _write_scalars(tmp_path, [dict(lr=0.01, loss=2.0, time=1.0, step=50),
                              dict(lr=0.01, loss=1.5, time=1.0, step=100),
                              {'coco/bbox_mAP': 0.254, 'coco/segm_mAP': 0.26, 'step': 0}])
    _write_scalars(tmp_path, [dict(lr=0.005, loss=1.0, time=1.0, step=150),
                              {'coco/bbox_mAP': 0.392, 'step': 0}], stamp='20261207_010000')
    keys = dict(bbox='coco/bbox_mAP', segm='coco/segm_mAP')
    assert detseg._val(tmp_path, keys) == [dict(step=100, bbox=25.4, segm=26.0),
                                           dict(step=150, bbox=39.2)]
    seg = tmp_path / 'seg'
    _write_scalars(seg, [dict(lr=0.01, time=1.0, step=50), dict(mIoU=40.5, step=60)])
    assert detseg._val(seg, dict(mIoU='mIoU')) == [dict(step=60, mIoU=40.5)]


def test_rows_trained_at_once_share_the_cores_and_report_in_order(tmp_path, monkeypatch):
    """``--jobs 2``: two rows train at once, each with half the cores; a row that finishes
    first does not move ahead of an earlier seed in the report."""
    import json
    import os
    import threading
    import time

    import detseg

    calls, lock = [], threading.Lock()

    def fake_training(config, run, options, resume=False, threads=0):
        seed = next(int(o.split('=')[1]) for o in options if o.startswith('randomness.seed='))
        time.sleep(0.3 if seed == 0 else 0.0)  # seed 1 finishes first
        _write_scalars(run, [dict(mIoU=50.0 + seed, aAcc=90.0, step=600)])
        with lock:
            calls.append((run.name, threads))
        return 5.0

    monkeypatch.setattr(detseg, 'train_mm', fake_training)
    monkeypatch.setattr(detseg, '_ensure_data', lambda case: None)
    dense = _deeplab_dense(detseg, tmp_path)
    (tmp_path / 'detseg.json').write_text(json.dumps(dict(
        budget=600, cases=dict(deeplabv3=dict(dense=dense, rows={})))))
    result = detseg.main(['--cases', 'deeplabv3', '--rows', 'dense control', 'vq', '--seeds', '0',
                          '1', '--budget', '600', '--jobs', '2', '--work-dir',
                          str(tmp_path / 'work'), '--out', str(tmp_path)])
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert sorted(calls) == sorted((f'deeplabv3_{r}_s{s}', threads)
                                   for r in ('dense_control', 'vq') for s in (0, 1))
    rows = result['cases']['deeplabv3']['rows']
    assert list(rows) == ['dense control', 'vq']
    assert [[x['seed'] for x in runs] for runs in rows.values()] == [[0, 1], [0, 1]]
    assert [x['final']['mIoU'] for x in rows['vq']] == [50.0, 51.0]
    assert all(x['jobs'] == 2 and x['seconds'] == 5.0 for runs in rows.values() for x in runs)
    assert 'Rows trained 2 at a time' in (tmp_path / 'detseg.md').read_text()


def test_a_row_at_its_own_lr_is_trained_again_and_the_other_rows_stay(tmp_path, monkeypatch):
    """``--rows vq --lr vq=0.0005``: the kept vq row (trained at the MVQ config's lr) is
    trained again at 0.0005 with the config's cosine floor ratio, into its own work dir; the
    report keeps the dense control row and labels the vq row with its lr."""
    import json

    import detseg

    calls = []

    def fake_training(config, run, options, resume=False, threads=0):
        calls.append((run.name, options))
        _write_scalars(run, [dict(lr=0.0005, time=1.0, step=600),
                             dict(mIoU=59.5, aAcc=90.0, step=600)])
        return 7.0

    monkeypatch.setattr(detseg, 'train_mm', fake_training)
    monkeypatch.setattr(detseg, '_ensure_data', lambda case: None)
    dense = _deeplab_dense(detseg, tmp_path)
    control = dict(row='dense control', seed=0, final=dict(mIoU=61.5), curve=[], seconds=2.0,
                   hardware=None)
    vq = dict(row='vq', seed=0, final=dict(mIoU=0.0), curve=[], seconds=2.0, hardware=None)
    (tmp_path / 'detseg.json').write_text(json.dumps(dict(budget=600, cases=dict(
        deeplabv3=dict(dense=dense, rows={'dense control': [control], 'vq': [vq]})))))
    result = detseg.main(['--cases', 'deeplabv3', '--rows', 'vq', '--lr', 'vq=0.0005',
                          '--seeds', '0', '--budget', '600', '--work-dir',
                          str(tmp_path / 'work'), '--out', str(tmp_path)])
    [(name, options)] = calls
    assert name == 'deeplabv3_vq_s0_lr0.0005'
    assert 'optim_wrapper.optimizer.lr=0.0005' in options
    floor = float(next(o for o in options if o.startswith('param_scheduler.0.eta_min='))
                  .split('=')[1])
    assert floor == pytest.approx(0.0005 * detseg.case_eta_ratio('deeplabv3'))
    rows = result['cases']['deeplabv3']['rows']
    assert rows['dense control'] == [control]
    assert rows['vq'][0]['lr'] == 0.0005 and rows['vq'][0]['final']['mIoU'] == 59.5
    assert '| vq (lr 0.0005) | 59.5' in (tmp_path / 'detseg.md').read_text()


@pytest.mark.parametrize('text', ['vq', 'vq=fast', 'vq=0', 'dense=0.1', '=0.1'])
def test_a_bad_lr_names_the_value_and_what_is_allowed(text):
    import argparse

    import detseg

    with pytest.raises(argparse.ArgumentTypeError, match=r"expected ROW=LR, ROW one of"):
        detseg.parse_lr(text)
    assert detseg.parse_lr('dense control=0.002') == ('dense control', 0.002)


def test_a_missing_dense_checkpoint_is_trained_again_while_a_row_needs_it(tmp_path, monkeypatch):
    """A fresh checkout's report carries the dense row but not its checkpoint: a row not yet
    run trains the dense model again first."""
    import json

    import detseg

    checkpoint = tmp_path / 'retrained.pth'
    dense_calls = []

    def fake_dense(name, case, work, kept=None):
        dense_calls.append(kept)
        if kept is not None:
            return kept
        checkpoint.write_bytes(b'')
        return dict(kept_dense, checkpoint=str(checkpoint))

    def fake_training(config, run, options, resume=False, threads=0):
        assert f'load_from={checkpoint}' in options
        _write_scalars(run, [dict(mIoU=58.0, step=600)])
        return 3.0

    monkeypatch.setattr(detseg, 'run_dense', fake_dense)
    monkeypatch.setattr(detseg, 'train_mm', fake_training)
    monkeypatch.setattr(detseg, '_ensure_data', lambda case: None)
    kept_dense = dict(iters=10, checkpoint=str(tmp_path / 'gone.pth'), seconds=1.0, curve=[],
                      final=dict(mIoU=61.0))
    (tmp_path / 'detseg.json').write_text(json.dumps(dict(
        budget=600, cases=dict(deeplabv3=dict(dense=kept_dense, rows={})))))
    result = detseg.main(['--cases', 'deeplabv3', '--rows', 'vq', '--seeds', '0', '--budget',
                          '600', '--work-dir', str(tmp_path / 'work'), '--out', str(tmp_path)])
    assert dense_calls == [kept_dense, None]  # the kept row first, then trained again
    assert result['cases']['deeplabv3']['rows']['vq'][0]['final']['mIoU'] == 58.0
