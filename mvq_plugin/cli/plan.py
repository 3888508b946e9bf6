"""Print the MVQ plan of an OpenMMLab config: every conv/linear layer by name, compressed or
kept dense with the reason. Use the names for ``exclude``/``overrides`` patterns.

    mvq-plan CONFIG [--cfg-options k=v ...] [--d 8 --k 256 --nm 2:8]
    python tools/plan.py CONFIG ...            (the same, from a checkout)

An MVQ config (``type='mvq_plugin.MVQModel'``) prints its own plan; an upstream config is
planned with ``--d/--k/--nm``. Only the model is built: no data, no checkpoint, no download.
"""
from __future__ import annotations

import argparse
import logging

from mmengine.config import DictAction

import mvq_plugin as mvq
from mvq_plugin.core.config import nm_pattern
from mvq_plugin.integrations.mm.config_model import build_model_from_config
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops


@exit_on_missing_ops
def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog='mvq-plan', description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    p.add_argument('--d', type=int, default=16, help='sub-vector length (upstream configs)')
    p.add_argument('--k', type=int, default=512, help='codewords (upstream configs)')
    p.add_argument('--nm', type=nm_pattern, default='4:16', help='N:M pattern (upstream configs)')
    args = p.parse_args(argv)
    logging.getLogger('mvq_plugin').setLevel(logging.WARNING)  # the table is the output
    model, _ = build_model_from_config(args.config, args.cfg_options)
    the_plan = getattr(model, 'mvq_plan', None)
    if the_plan is None:
        n, m = args.nm
        the_plan = mvq.plan(model, mvq.MVQConfig(block_size=args.d, num_codewords=args.k,
                                                 n=n, m=m))
    text = (f'{the_plan}\nplanned: {the_plan.model_bits(model):,} bits, '
            f'{the_plan.compression_ratio(model):.2f}x vs fp32 (whole model, every other '
            f'parameter at 32 bits); {the_plan.layers_ratio:.2f}x over the compressed layers '
            f'(the paper\'s Eq. 7)')
    print(text)
    return text


def run() -> None:
    """Console entry point ``mvq-plan``."""
    main()
