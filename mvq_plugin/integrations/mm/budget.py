"""``MVQModel(budget=...)``: per-layer MVQ settings chosen by :func:`mvq_plugin.allocate`
when the model is built.

A config names the budget next to its MVQ settings (``configs/_base_/mvq/mvq_budget.py``)::

    mvq_budget = dict(bytes='1.5MiB', choices=dict(nm=['2:8', '4:8', 'none']),
                      calib_batches=2, cache='work_dirs/mvq_sensitivity.json')
    model = dict(_delete_=True, type='mvq_plugin.MVQModel', model={{_base_.model}},
                 mvq={{_base_.mvq_cfg}}, budget={{_base_.mvq_budget}},
                 calib_dataloader={{_base_.train_dataloader}},
                 init_checkpoint='work_dirs/dense/iter_1200.pth')

The allocation measures the dense weights, so they must be there when the model is built
(``init_checkpoint``; ``load_from`` is read by the runner after the optimizer exists). The
calibration batches are the first ``calib_batches`` of ``calib_dataloader`` (built without
shuffling and without workers, so a second run sees the same batches and reuses the
``cache``), put through the model's own data preprocessor, and run with ``mode='tensor'``.
Testing the trained model (``artifact=``) builds the layers the artifact stores, with no new
allocation.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
from typing import Any, Mapping

from torch import nn

from ...allocation import Allocation, Budget, allocate
from ...core import MVQConfig

__all__ = ['allocate_for_budget', 'artifact_config', 'BUDGET_KEYS']

logger = logging.getLogger('mvq_plugin')

#: Keys of ``budget`` besides the :class:`~mvq_plugin.allocation.Budget` fields.
BUDGET_KEYS = ('choices', 'calib_batches', 'cache', 'objective')


def _tensor_forward(model: nn.Module, inputs: Any) -> Any:
    return model(inputs, mode='tensor')


def calibration_inputs(model: nn.Module, dataloader: Mapping[str, Any], count: int) -> list:
    """The first ``count`` batches of ``dataloader`` (no shuffle, no workers), preprocessed."""
    from mmengine.runner import Runner

    cfg = copy.deepcopy(dict(dataloader))
    cfg.update(num_workers=0, persistent_workers=False,
               sampler=dict(type='DefaultSampler', shuffle=False))
    loader = Runner.build_dataloader(cfg, seed=0)
    out = []
    for batch in itertools.islice(loader, count):
        out.append(model.data_preprocessor(batch, False)['inputs'])
    if len(out) < count:
        raise ValueError(f'budget.calib_batches={count} but calib_dataloader yields only '
                         f'{len(out)} batch(es)')
    return out


def artifact_config(path: str) -> MVQConfig:
    """The MVQ settings an artifact was saved with (what a budget chose for it)."""
    from ...io import read_header

    stored = read_header(path).get('config')
    if stored is None:
        raise ValueError(f'model.artifact={path!r} stores no MVQ settings, so the layers a '
                         'budget chose cannot be rebuilt; drop model.budget to load it')
    return MVQConfig.from_dict(stored)


def allocate_for_budget(model: nn.Module, cfg: MVQConfig, budget: Mapping[str, Any], *,
                        calib_dataloader: Mapping[str, Any] | None,
                        has_dense_weights: bool) -> tuple[MVQConfig, Allocation]:
    """``cfg`` refined for ``budget`` on an upstream OpenMMLab model holding dense weights.

    Args:
        model: The upstream model, dense weights loaded.
        cfg: The config's MVQ settings (the base of the allocation).
        budget: :class:`~mvq_plugin.allocation.Budget` fields plus :data:`BUDGET_KEYS`.
        calib_dataloader: The dataloader config the calibration batches come from.
        has_dense_weights: Whether ``init_checkpoint`` was loaded.

    Returns:
        The refined config and the :class:`~mvq_plugin.allocation.Allocation`.
    """
    if not isinstance(budget, Mapping):
        raise ValueError(f'model.budget={budget!r} must be a dict such as '
                         "dict(bytes='1.5MiB', calib_batches=2)")
    values = dict(budget)
    extra = {k: values.pop(k) for k in BUDGET_KEYS if k in values}
    the_budget = Budget.from_any(values)
    if not has_dense_weights:
        raise ValueError('model.budget needs model.init_checkpoint=<dense checkpoint>: the '
                         'allocation measures the dense weights when the model is built '
                         '(load_from is read by the runner, too late)')
    if calib_dataloader is None:
        raise ValueError('model.budget needs model.calib_dataloader (e.g. '
                         '{{_base_.train_dataloader}}) for its calibration batches')
    count = extra.get('calib_batches', 2)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f'model.budget.calib_batches={count!r} must be an integer >= 1')
    calib = calibration_inputs(model, calib_dataloader, count)
    if the_budget.wants_hw and the_budget.input_shape is None:
        the_budget = dataclasses.replace(the_budget,
                                         input_shape=(1, *map(int, calib[0].shape[1:])))
    alloc = allocate(model, the_budget, choices=extra.get('choices'), calib=calib, base=cfg,
                     forward_fn=_tensor_forward, cache=extra.get('cache'),
                     objective=extra.get('objective', 'output'))
    logger.info('MVQ allocation for %s (%s):\n%s', type(model).__name__,
                the_budget.to_dict(), alloc)
    return alloc.config(), alloc

