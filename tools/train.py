"""Train (or fine-tune with MVQ) any mmpretrain / mmdet / mmseg config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

The OpenMMLab ``tools/train.py`` interface; the config's ``default_scope`` selects the
upstream package, and ``mvq_plugin`` registers its parts on import.
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
    p = argparse.ArgumentParser(description='Train a model (with MVQ) through mmengine')
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs, checkpoints and the artifact go')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CKPT, or the latest checkpoint of the work dir')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys, e.g. train_cfg.max_iters=10')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


@exit_on_missing_ops
def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_config(args)
    require_mmcv_ops_for(cfg)  # mmdet/mmseg scopes: one line, before they are imported
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
