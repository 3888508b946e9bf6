"""Checkpoints are unpickled with torch's safe loader: a crafted one never runs its code.

The crafted checkpoint is a real torch zip checkpoint whose unpickling would call
``open(marker, 'w')`` and so create a file. Every entry point that loads a checkpoint
(``load_from``, ``--resume``, ``model.init_checkpoint``, ``tools/test.py``) must refuse it with
an error naming the file and the disallowed global, and the file must never appear.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

from conftest import opts, run_tool  # noqa: E402

from mvq_plugin.integrations.mm import UnsafeCheckpointError, load_checkpoint_safely  # noqa: E402

MVQ = 'configs/demo/resnet18_fashion-mnist_mvq.py'
TINY = dict(train_dataloader__dataset__indices=32, train_dataloader__batch_size=16,
            train_dataloader__num_workers=0, val_dataloader__dataset__indices=50,
            val_dataloader__batch_size=50, val_dataloader__num_workers=0,
            test_dataloader__dataset__indices=50, test_dataloader__batch_size=50,
            test_dataloader__num_workers=0, train_cfg__max_iters=2, train_cfg__val_interval=2,
            model__mvq__num_codewords=16, model__mvq__kmeans_iters=2)


class _CreatesFile:
    """Unpickling this calls ``open(path, 'w')``: the file appears if the code runs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


def _crafted(tmp_path):
    marker = tmp_path / 'pwned.txt'
    ckpt = tmp_path / 'crafted.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(64, 1, 7, 7)},
                'meta': {'note': _CreatesFile(str(marker))}}, ckpt)
    return ckpt, marker


def test_the_payload_is_live_without_safe_loading(tmp_path):
    """Control: the crafted file really runs code when loaded unsafely."""
    ckpt, marker = _crafted(tmp_path)
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_safe_loader_refuses_and_names_file_and_global(tmp_path):
    ckpt, marker = _crafted(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_safely(ckpt)
    msg = str(err.value)
    assert str(ckpt) in msg and 'open' in msg and err.value.globals
    assert all('open' in g for g in err.value.globals)
    assert not marker.exists()


def test_safe_loader_reads_plain_state_dicts(tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'w': torch.arange(4.0)}, 'meta': {'iter': 3, 'ok': (1, 'a')}},
               path)
    out = load_checkpoint_safely(path)
    assert torch.equal(out['state_dict']['w'], torch.arange(4.0)) and out['meta']['iter'] == 3
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_checkpoint_safely(tmp_path / 'missing.pth')


class _Getattr:
    """Unpickling this calls ``getattr(obj, name)``."""

    def __init__(self, obj, name: str) -> None:
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


def test_history_buffers_round_trip_with_their_statistics_methods(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('mvq_safe_load_test')
    hub.update_scalar('train/loss', 2.0)
    hub.update_scalar('train/loss', 1.0)
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict(), 'meta': {'seed': np.int64(3)}}, path)
    loaded = load_checkpoint_safely(path)
    buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.mean() == 1.5 and buf.current() == 1.0
    assert loaded['meta']['seed'] == 3


@pytest.mark.parametrize('obj, name', [(np.ndarray, 'tofile'), ('HistoryBuffer', '__init__'),
                                       ('HistoryBuffer', '__class__')])
def test_getattr_is_allowed_only_for_history_buffer_methods(tmp_path, obj, name):
    from mmengine.logging import HistoryBuffer
    obj = HistoryBuffer if obj == 'HistoryBuffer' else obj
    path = tmp_path / 'getattr.pth'
    torch.save({'state_dict': {}, 'x': _Getattr(obj, name)}, path)
    with pytest.raises(UnsafeCheckpointError, match=rf"getattr\(\w+, '{name}'\) is not allowed"):
        load_checkpoint_safely(path)
    torch.save({'x': _Getattr(HistoryBuffer, 'min')}, path)
    assert load_checkpoint_safely(path)['x'] is HistoryBuffer.min


@pytest.mark.slow
@pytest.mark.parametrize('entry', ['load_from', 'resume', 'init_checkpoint', 'test'])
def test_every_entry_point_refuses_a_crafted_checkpoint(tmp_path, entry):
    ckpt, marker = _crafted(tmp_path)
    work = str(tmp_path / 'work')
    if entry == 'load_from':
        proc = run_tool('train.py', MVQ, '--work-dir', work, *opts(**TINY, load_from=ckpt),
                        check=False)
    elif entry == 'resume':
        proc = run_tool('train.py', MVQ, '--work-dir', work, '--resume', str(ckpt),
                        *opts(**TINY), check=False)
    elif entry == 'init_checkpoint':
        proc = run_tool('train.py', MVQ, '--work-dir', work,
                        *opts(**TINY, model__init_checkpoint=ckpt), check=False)
    else:
        proc = run_tool('test.py', MVQ, str(ckpt), '--work-dir', work, *opts(**TINY),
                        check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert 'UnsafeCheckpointError' in out and f"refused to load checkpoint '{ckpt}'" in out
    assert 'open' in out.split('refused to load checkpoint', 1)[1].split('\n')[0]
    assert not marker.exists()
