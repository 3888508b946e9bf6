"""The MVQ schedule exists once: three front ends, one result.

One tiny schedule (prune, sparse phase, cluster, codebook phase with the int8 switch, BN
re-estimation, distillation on, data-aware settings) runs through

* ``run_recipe`` (the plain PyTorch loop, one optimizer per phase),
* ``MVQHook`` in a real mmengine ``Runner`` (mmengine's optimizer over the whole run),
* ``timm_train.train``, the library loop ``tools/train_timm.py`` drives (one optimizer over
  the whole run, as timm's factories build it),

on the same model, batches and seeds. Plain SGD (no momentum, no weight decay, a constant
learning rate) makes the three optimizers the same arithmetic, so the three runs must cross
the same boundaries at the same iterations and end with the same masks, assignments and
codebooks.
"""
from __future__ import annotations

import uuid

import pytest
import torch
from torch import nn

pytest.importorskip('mmengine')

from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import DATASETS, MODELS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

import mvq_plugin as mvq  # noqa: E402
from mvq_plugin.core import MVQRecipe, MVQSchedule, run_recipe  # noqa: E402

N, BATCH, ITERS, SPARSE, QUANT_START, CALIB, LR = 48, 8, 8, 3, 5, 2, 0.05
CFG = dict(num_codewords=8, block_size=8, n=2, m=8, kmeans_iters=6, min_params=0,
           importance='activation', kmeans_weights='activation')
DISTILL = dict(logits_weight=1.0, temperature=2.0)
EXPECTED_EVENTS = [('pruned', 0), ('sparse_end', SPARSE), ('clustered', SPARSE),
                   ('codebook_quant', QUANT_START), ('trained', ITERS),
                   ('bn_recalibrated', ITERS)]


class Core(nn.Module):
    """Stem conv (kept dense as the first conv), a 3x3 conv with BN, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 8)  # 8 outputs: one out_channel sub-vector (4 classes used)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(torch.relu(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


@MODELS.register_module(force=True)
class EquivalenceNet(BaseModel):
    """The same ``Core`` as an mmengine model (its layers under ``net.``)."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor=data_preprocessor)
        self.net = Core()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.net(torch.stack(inputs) if isinstance(inputs, list) else inputs)
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(logits, torch.stack(data_samples)))
        return logits


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 3, 8, 8, generator=g)
    y = (x.mean((2, 3)) @ torch.randn(3, 4, generator=g)).argmax(1)
    return x, y


@DATASETS.register_module(force=True)
class EquivalenceData(Dataset):
    def __init__(self):
        self.x, self.y = _data()

    def __len__(self):
        return N

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=self.y[i])


def _batch(step: int):
    x, y = _data()
    i = (step * BATCH) % N
    return x[i:i + BATCH], y[i:i + BATCH]


def _dense_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Core().state_dict()


def _state(model: nn.Module, prefix: str = '') -> dict[str, dict[str, torch.Tensor]]:
    return {name[len(prefix):]: dict(mask=q.mask.clone(), assignments=q.assignments.clone(),
                                     codebook=q.codebook.detach().clone(),
                                     quant=torch.tensor(q.codebook_quant))
            for name, q in mvq.quantized_layers(model).items()}


def _run_recipe():
    model = Core()
    model.load_state_dict(_dense_state())
    recipe = MVQRecipe(iters=ITERS, sparse_iters=SPARSE, quant_iters=ITERS - QUANT_START,
                       lr=LR, momentum=0.0, weight_decay=0.0, lr_schedule='constant',
                       distill=dict(DISTILL, logits_module='fc', features={'conv': 0.5}),
                       calib_batches=CALIB,
                       bn_recalib=True)
    result = run_recipe(model, mvq.MVQConfig(**CFG), recipe, _batch,
                        calib=[_batch(i)[0] for i in range(CALIB)])
    return result.events, _state(model), model


def _run_hook(tmp_path):
    torch.save({'state_dict': {f'net.{k}': v for k, v in _dense_state().items()}},
               tmp_path / 'dense.pth')
    loader = dict(dataset=dict(type='EquivalenceData'), batch_size=BATCH, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    runner = Runner(
        model=dict(type='mvq_plugin.MVQModel', model=dict(type='EquivalenceNet'), mvq=CFG,
                   init_checkpoint=str(tmp_path / 'dense.pth'), sparse_finetune=True),
        work_dir=str(tmp_path / 'work'), experiment_name=f'eq_{uuid.uuid4().hex[:8]}',
        train_dataloader=loader, train_cfg=dict(by_epoch=False, max_iters=ITERS),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=LR, momentum=0.0, weight_decay=0.0)),
        custom_hooks=[dict(type='mvq_plugin.MVQHook', sparse_finetune_iters=SPARSE,
                           codebook_quant_start_iter=QUANT_START, calib_batches=CALIB,
                           bn_recalib=True, distill=dict(DISTILL, logits_module='net.fc',
                                                         features={'net.conv': 0.5}),
                           report='eq_report')],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                           interval=ITERS)),
        default_scope='mmengine', randomness=dict(seed=0))
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'MVQHook')
    events = [(e.name, e.iteration) for e in hook.schedule.events]
    return events, _state(runner.model, 'net.'), runner


def _run_timm_loop():
    from mvq_plugin.integrations import timm as mvq_timm
    from mvq_plugin.integrations.timm_train import train

    model = Core()
    model.load_state_dict(_dense_state())
    mvq_timm.prepare_model(model, CFG, train_dense=True)
    schedule = MVQSchedule(model, sparse_iters=SPARSE, codebook_quant_start=QUANT_START,
                           calib=[_batch(i)[0] for i in range(CALIB)],
                           distill=dict(DISTILL, logits_module='fc', features={'conv': 0.5}),
                           bn_recalib=True,
                           seed=model.mvq_config.seed)
    optimizer = torch.optim.SGD(mvq_timm.param_groups(model), lr=LR, momentum=0.0)
    loader = [_batch(i) for i in range(ITERS)]
    result = train(model, schedule, loader, optimizer, epochs=1)
    return result.events, _state(model), model


@pytest.mark.slow
def test_three_front_ends_run_one_schedule(tmp_path):
    pytest.importorskip('timm')
    recipe_events, recipe_state, _ = _run_recipe()
    hook_events, hook_state, _ = _run_hook(tmp_path)
    timm_events, timm_state, _ = _run_timm_loop()
    assert recipe_events == EXPECTED_EVENTS
    assert hook_events == EXPECTED_EVENTS
    assert timm_events == EXPECTED_EVENTS
    assert sorted(recipe_state) == sorted(hook_state) == sorted(timm_state) == ['conv', 'fc']
    for name, ref in recipe_state.items():
        for other in (hook_state[name], timm_state[name]):
            assert torch.equal(ref['mask'], other['mask']), name
            assert torch.equal(ref['assignments'], other['assignments']), name
            assert bool(ref['quant']) and bool(other['quant'])
            torch.testing.assert_close(other['codebook'], ref['codebook'], rtol=1e-4,
                                       atol=1e-5)
        # the codebook phase trained the codewords away from their k-means values
        assert ref['mask'].float().mean() == pytest.approx(0.25)


@pytest.mark.slow
def test_every_front_end_records_its_config_in_the_artifact(tmp_path):
    """``mvq.save`` after ``run_recipe`` and after the mm hook: the header carries the config
    the run used, and loading into a fresh model reproduces the outputs bit for bit."""
    from mvq_plugin.io import read_header

    used = mvq.MVQConfig(**CFG).to_dict()
    x = _batch(0)[0]
    _, _, model = _run_recipe()
    mvq.save(model, tmp_path / 'recipe.mvq')
    assert read_header(tmp_path / 'recipe.mvq')['config'] == used
    fresh = Core()
    mvq.load(fresh, tmp_path / 'recipe.mvq')
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x), model.eval()(x))

    _, _, runner = _run_hook(tmp_path)
    artifact = tmp_path / 'work' / 'model.mvq'  # written by the hook after training
    assert read_header(artifact)['config'] == used
    fresh_mm = EquivalenceNet()
    mvq.load(fresh_mm, artifact)
    with torch.no_grad():
        assert torch.equal(fresh_mm.eval()(x), runner.model.eval()(x))
