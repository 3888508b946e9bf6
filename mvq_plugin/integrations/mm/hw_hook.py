"""``HardwareCostHook``: accelerator cycles and energy of the model being trained.

Thin by design (mmrazor's hook/estimator split): a
:class:`~mvq_plugin.hw.HardwareEstimator` does the work; the hook decides when, logs ``hw/*``
scalars to the logger and the visualizer backends, and writes the report files
(JSON, CSV, Markdown, PNG) under ``work_dir/<out_dir>/<tag>/``:

* ``before_run``: the dense model on the baseline array and the planned (or, when resumed,
  the real) MVQ model on the target array (tag ``planned``/``compressed``);
* once clustering has happened (it runs after :class:`~.hooks.MVQHook`, whose priority is
  higher) and after every validation: the real compressed model (``compressed``,
  ``val_<iter>``).
"""
from __future__ import annotations

import os.path as osp
from typing import Any, Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ...core import pending_layers, quantized_layers
from ...hw import HardwareEstimator, extract_workload
from .registry import HOOKS
from .tracing import tensor_forward, unwrap

__all__ = ['HardwareCostHook']

#: Scalars also shown in the text log (all of ``report.scalars()`` reach the visualizer).
LOGGED = ('hw/cycles', 'hw/energy_uj', 'hw/tops_per_w', 'hw/speedup', 'hw/energy_efficiency')


@HOOKS.register_module()
class HardwareCostHook(Hook):
    """Logs the analytical accelerator cost of the (planned, then compressed) model.

    Args:
        input_shape: ``(batch, C, H, W)`` the cost is computed for.
        arch: Target array preset or fields (``'mvq'``).
        baseline: Array the dense model runs on (``'ews'``; ``None``: no comparison).
        arch_overrides: :class:`~mvq_plugin.hw.ArrayConfig` fields for both (rows, cols...).
        table: Energy/area table (path or dict; default: the shipped 40 nm table).
        node_nm: Technology node.
        trace: ``'shape'`` traces a zero input of ``input_shape`` on meta tensors (classifiers,
            segmentors); ``'data'`` traces the first sample of the validation (or test)
            dataloader through the model's data preprocessor, with its data samples, for
            models whose tensor-mode forward needs them (two-stage detectors: the RoI heads
            then see the real number of proposals); ``input_shape`` is then ignored.
        every_val: Also report after every validation.
        out_dir: Folder under the work dir for the report files.
        formats: Report formats written.
    """

    priority = 'NORMAL'

    def __init__(self, input_shape: Sequence[int] = (1, 3, 224, 224), arch: Any = 'mvq',
                 baseline: Any = 'ews', arch_overrides: dict | None = None, table: Any = None,
                 node_nm: float | None = None, trace: str = 'shape', every_val: bool = True,
                 out_dir: str = 'hw',
                 formats: Sequence[str] = ('json', 'csv', 'md', 'png')) -> None:
        self.estimator = HardwareEstimator(arch=arch, input_shape=tuple(input_shape),
                                           baseline=baseline, table=table, node_nm=node_nm,
                                           arch_overrides=dict(arch_overrides or {}),
                                           forward_fn=tensor_forward())
        if trace not in ('shape', 'data'):
            raise ValueError(f"HardwareCostHook.trace={trace!r}; choose 'shape' or 'data'")
        self.trace = trace
        self._example: tuple[torch.Tensor, Any] | None = None
        self.every_val = every_val
        self.out_dir = out_dir
        self.formats = tuple(formats)
        self.last_scalars: dict[str, float] = {}
        self._awaiting = False

    def _model(self, runner) -> torch.nn.Module:
        return unwrap(runner.model)

    def _data_example(self, runner, model: torch.nn.Module) -> tuple[torch.Tensor, Any]:
        """First sample of the val (or test) dataloader, preprocessed: (inputs, samples)."""
        if self._example is None:
            loop = runner.val_loop if runner._val_loop is not None else runner.test_loop
            batch = next(iter(loop.dataloader))
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data.get('data_samples')
            self._example = (inputs[:1], samples[:1] if samples is not None else None)
        return self._example

    def _report(self, runner, tag: str) -> None:
        model = self._model(runner)
        plan = getattr(model, 'mvq_plan', None) if pending_layers(model) else None
        if self.trace == 'data':
            inputs, samples = self._data_example(runner, model)
            workload = extract_workload(
                model, example_inputs=inputs, plan=plan, trace='real',
                forward_fn=tensor_forward(samples=samples))
            report = self.estimator.estimate_workload(workload)
        else:
            report = self.estimator.estimate(model, plan=plan)
        scalars = report.scalars()
        self.last_scalars = scalars
        step = runner.iter
        # Everything goes to the visualizer backends; the text log shows the headline.
        runner.visualizer.add_scalars(scalars, step=step)
        for key in LOGGED:
            runner.message_hub.update_scalar(f'train/{key}', scalars[key])
        if is_main_process():
            report.write(osp.join(runner.work_dir, self.out_dir, tag), formats=self.formats)
        gains = report.gains().get('total', {}) if report.baseline is not None else {}
        runner.logger.info(
            f'HardwareCostHook[{tag}]: {scalars.get("hw/cycles", 0):,.0f} cycles, '
            f'{scalars.get("hw/energy_uj", 0):.1f} uJ per inference'
            + (f'; vs {report.baseline.arch.name}: {gains.get("energy_efficiency", 0):.2f}x '
               f'energy efficiency, {gains.get("speedup", 0):.2f}x speed'
               if gains else ''))

    def before_run(self, runner) -> None:
        model = self._model(runner)
        self._awaiting = bool(pending_layers(model))
        self._report(runner, 'planned' if self._awaiting else
                     ('compressed' if quantized_layers(model) else 'dense'))

    def before_train(self, runner) -> None:
        # MVQHook (higher priority) has clustered by now unless a sparse phase comes first.
        self.before_train_iter(runner, 0)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        if self._awaiting and not pending_layers(self._model(runner)):
            self._awaiting = False
            self._report(runner, 'compressed')

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if self.every_val and not pending_layers(self._model(runner)):
            self._report(runner, f'val_{runner.iter}')
