"""Evaluate a checkpoint or a ``.mvq`` artifact with any mmpretrain / mmdet / mmseg config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
                         [--launcher ...]

A ``.mvq`` CHECKPOINT is loaded by the model builder (``model.artifact``); an mmengine
checkpoint of an MVQ run restores the compressed state. Neither ever clusters.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mvq_plugin.integrations.mm  # noqa: F401  (registers the parts, safe checkpoint loading)
from mvq_plugin.integrations.mm.launch import setup_cpu_distributed
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops, require_mmcv_ops_for


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='Test a (compressed) model through mmengine')
    p.add_argument('config')
    p.add_argument('checkpoint', help='mmengine checkpoint (.pth) or MVQ artifact (.mvq)')
    p.add_argument('--work-dir')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


@exit_on_missing_ops
def main(argv=None) -> dict:
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} not found')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.checkpoint.endswith('.mvq'):
        if cfg.model.get('type') != 'mvq_plugin.MVQModel':
            raise ValueError(f'{args.checkpoint} is an MVQ artifact but the config model type '
                             f"is {cfg.model.get('type')!r}, not 'mvq_plugin.MVQModel'")
        cfg.model.artifact = args.checkpoint
        cfg.model.init_checkpoint = None
        cfg.load_from = None
    else:
        cfg.load_from = args.checkpoint
    require_mmcv_ops_for(cfg)  # mmdet/mmseg scopes: one line, before they are imported
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
