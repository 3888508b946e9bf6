"""MVQHook and HardwareCostHook in a real (small) mmengine Runner, in process."""
from __future__ import annotations

import json
import uuid

import pytest
import torch
from torch import nn

pytest.importorskip('mmengine')

from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import DATASETS, METRICS, MODELS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

import mvq_plugin as mvq  # noqa: E402
from mvq_plugin.core import pending_layers  # noqa: E402
from mvq_plugin.integrations.mm.scalars import read_scalars  # noqa: E402


@MODELS.register_module(force=True)
class ToyMVQNet(BaseModel):
    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 4)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        logits = self.fc(torch.relu(self.conv(torch.relu(self.stem(x)))).mean((2, 3)))
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, torch.stack(data_samples)))
        if mode == 'predict':
            return [(lg.argmax(), t) for lg, t in zip(logits, data_samples)]
        return logits


@DATASETS.register_module(force=True)
class ToyMVQData(Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 8, 8, generator=g)
        self.y = torch.randint(0, 4, (n, ), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


@METRICS.register_module(force=True)
class ToyMVQAccuracy(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results += [float(p == t) for p, t in data_samples]

    def compute_metrics(self, results):
        return dict(acc=sum(results) / len(results))


def _runner(work_dir, hooks, max_iters=4, mvq_extra=None, **model_kw):
    loader = dict(dataset=dict(type='ToyMVQData'), batch_size=8, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    return Runner(
        model=dict(type='mvq_plugin.MVQModel', model=dict(type='ToyMVQNet'),
                   mvq=dict(num_codewords=8, block_size=8, n=2, m=4, kmeans_iters=5,
                            min_params=0,
                            vector_axis='in_channel', codebook_scale='maxabs',
                            **(mvq_extra or {})),
                   **model_kw),
        work_dir=str(work_dir), experiment_name=f'toy_{uuid.uuid4().hex[:8]}',
        train_dataloader=loader, val_dataloader=loader, val_evaluator=dict(type='ToyMVQAccuracy'),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=max_iters),
        val_cfg=dict(), optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        custom_hooks=hooks, default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                                               by_epoch=False, interval=2)),
        default_scope='mmengine', randomness=dict(seed=0))


def test_hooks_log_scalars_and_write_reports(tmp_path):
    runner = _runner(tmp_path, [
        dict(type='mvq_plugin.MVQHook', allow_random_init=True, codebook_quant_start_iter=2),
        dict(type='mvq_plugin.HardwareCostHook', input_shape=(1, 3, 8, 8), arch='mvq',
             baseline='ews', arch_overrides=dict(rows=8, cols=8))])
    runner.train()
    model = runner.model
    assert pending_layers(model) == []
    assert all(q.codebook_quant for q in mvq.quantized_layers(model).values())
    records = read_scalars(tmp_path)
    ratio = [r['mvq/compression_ratio'] for r in records if 'mvq/compression_ratio' in r]
    assert ratio and ratio == pytest.approx(
        [mvq.compression_stats(model).compression_ratio] * len(ratio))
    assert {'mvq/rel_error/conv', 'mvq/rel_error/fc'} <= {k for r in records for k in r}
    hw = [r for r in records if 'hw/sparsity_only/speedup' in r]
    # planned (before_run), compressed (after clustering), after validation
    assert len(hw) == 3
    assert all(r['hw/sparsity_only/speedup'] > 0 for r in hw)
    assert any('hw/energy_efficiency' in r for r in records)
    for tag in ('planned', 'compressed', 'val_4'):
        assert (tmp_path / 'hw' / tag / 'hw_report.json').is_file(), tag
    assert (tmp_path / 'model.mvq').is_file()
    report = json.loads((tmp_path / 'mvq_report.json').read_text())
    assert set(report['layer_errors']) == {'conv', 'fc'}
    assert report['artifact']['bytes'] == (tmp_path / 'model.mvq').stat().st_size


def test_without_dense_weights_refuses_to_cluster(tmp_path):
    runner = _runner(tmp_path, [dict(type='mvq_plugin.MVQHook')])
    with pytest.raises(RuntimeError, match='no dense weights were loaded'):
        runner.train()


def test_sparse_phase_then_clustering(tmp_path):
    runner = _runner(tmp_path, [dict(type='mvq_plugin.MVQHook', allow_random_init=True,
                                     sparse_finetune_iters=2)], sparse_finetune=True)
    stages = []
    from mmengine.hooks import Hook

    class StageSpy(Hook):
        priority = 'LOWEST'

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            stages.append(sorted(set(mvq.core.layer_stages(runner.model).values())))

    runner.register_hook(StageSpy())
    original = runner.model.conv.parametrizations.weight.original.detach().clone()
    runner.train()
    assert stages == [[1], [1], [2], [2]]
    # The dense weights trained during the sparse phase before clustering.
    assert not torch.equal(runner.model.conv.parametrizations.weight.original, original)


def test_hook_arguments_are_checked():
    from mvq_plugin.integrations.mm import MVQHook
    with pytest.raises(ValueError, match="backend='cuda'; choose one of"):
        MVQHook(backend='cuda')
    with pytest.raises(ValueError, match='codebook_quant_start_iter=-1'):
        MVQHook(codebook_quant_start_iter=-1)
    with pytest.raises(ValueError, match='bn_recalib=True needs calibration data'):
        MVQHook(bn_recalib=True)



def test_full_recipe_in_the_hook(tmp_path):
    """Sparse phase, self-distillation (logits + a feature) and data-aware settings."""
    runner = _runner(
        tmp_path, [dict(type='mvq_plugin.MVQHook', allow_random_init=True,
                        sparse_finetune_iters=2, calib_batches=2,
                        distill=dict(logits_module='fc', features={'conv': 0.5}))],
        mvq_extra=dict(importance='activation', kmeans_weights='activation'),
        sparse_finetune=True)
    seen = []
    from mmengine.hooks import Hook

    class LossSpy(Hook):
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            seen.append(sorted(outputs))

    runner.register_hook(LossSpy())
    keys = set(runner.model.state_dict())
    runner.train()
    assert len(seen) == 4 and all({'loss_kd', 'loss_feat_conv'} <= set(s) for s in seen), seen
    assert pending_layers(runner.model) == []
    assert 'forward' not in runner.model.__dict__  # the distillation forward is gone
    assert set(runner.model.state_dict()) == keys  # no teacher in the model
    ckpt = torch.load(tmp_path / 'iter_4.pth', weights_only=False)
    assert set(ckpt['state_dict']) == keys


def test_data_aware_settings_need_calib_batches(tmp_path):
    runner = _runner(tmp_path, [dict(type='mvq_plugin.MVQHook', allow_random_init=True)],
                     mvq_extra=dict(kmeans_weights='activation'))
    with pytest.raises(ValueError, match='calib_batches >= 1'):
        runner.train()
    long = _runner(tmp_path / 'long', [dict(type='mvq_plugin.MVQHook', allow_random_init=True,
                                             sparse_finetune_iters=4)], sparse_finetune=True)
    with pytest.raises(ValueError, match=r'sparse_finetune_iters=4 is not shorter than the run '
                                         r'\(max_iters=4\)'):
        long.train()
    from mvq_plugin.integrations.mm import MVQHook
    with pytest.raises(ValueError, match='calib_batches=-1'):
        MVQHook(calib_batches=-1)
    with pytest.raises(ValueError, match='temperature'):
        MVQHook(distill=dict(temperature=-1))


def test_checkpoints_of_older_runs_resume_with_their_quantize_key():
    """Runs before the rename saved ``checkpoint['mvq']['quantize']``; resuming one switches
    the codebook quantization on as ``codebook_quant`` does."""
    from types import SimpleNamespace

    from mvq_plugin.integrations.mm import MVQHook

    for key in ('quantize', 'codebook_quant'):
        model = ToyMVQNet()
        mvq.compress(model, mvq.MVQConfig(num_codewords=8, block_size=8, n=2, m=4, kmeans_iters=2,
                                          min_params=0))
        assert not any(q.codebook_quant for q in mvq.quantized_layers(model).values())
        hook = MVQHook()
        hook.after_load_checkpoint(SimpleNamespace(model=model),
                                   {'mvq': {key: True, 'layer_errors': {'conv': 0.1}}})
        assert all(q.codebook_quant for q in mvq.quantized_layers(model).values()), key
        assert hook.layer_errors == {'conv': 0.1}
