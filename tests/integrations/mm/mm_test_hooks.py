"""A test-only hook: every rank dumps its MVQ state after training (for the DDP test)."""
from __future__ import annotations

import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from mvq_plugin.core import quantized_layers


@HOOKS.register_module()
class DumpMVQStateHook(Hook):
    """Writes ``mvq_state_rank{r}.pt`` (codebooks, assignments, masks) into the work dir."""

    priority = 'LOWEST'

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {name: dict(codebook=q.codebook.detach().clone(),
                            assignments=q.assignments.clone(), mask=q.mask.clone())
                 for name, q in quantized_layers(model).items()}
        torch.save(state, osp.join(runner.work_dir, f'mvq_state_rank{get_rank()}.pt'))
