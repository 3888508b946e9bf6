"""Choose per-layer MVQ settings of an OpenMMLab config's model for a budget, and print them.

    mvq-allocate CONFIG --bytes 1.5MiB [--checkpoint DENSE.pth] [--out plan.json]
    mvq-allocate CONFIG --energy-ratio 0.5 --hw mvq_64x64 [--bytes 2MiB]
        [--cycles-ratio 0.6] [--calib-batches 2] [--cache sens.json] [--out plan.json]

(``python tools/allocate.py ...`` from a checkout is the same command.)

The model is built from the config, the dense checkpoint loaded, and each layer's choices
measured on the first calibration batches of the config's dataloader
(:func:`mvq_plugin.allocate`); the table lists every layer's choice, distortion and costs.
``--out`` writes the allocation (``exclude``/``overrides``, predicted and smallest costs), which
``MVQModel(allocation='plan.json')`` in a config and ``mvq_plugin.compress(model, cfg,
allocation='plan.json')`` apply as they are. A budget no plan meets exits with the smallest
reachable cost.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from mmengine.config import DictAction

from mvq_plugin.allocation import InfeasibleBudget
from mvq_plugin.integrations.mm.allocate_config import allocate_from_config
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='mvq-allocate', description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--checkpoint', help='dense checkpoint (default: model.init_checkpoint)')
    size = p.add_mutually_exclusive_group()
    size.add_argument('--bytes', help="accounted size, e.g. '1.5MiB', '900kB'")
    size.add_argument('--bits', type=float)
    energy = p.add_mutually_exclusive_group()
    energy.add_argument('--energy-ratio', type=float, help='of the dense model on --baseline')
    energy.add_argument('--energy-pj', type=float)
    cycles = p.add_mutually_exclusive_group()
    cycles.add_argument('--cycles-ratio', type=float)
    cycles.add_argument('--cycles', type=float)
    p.add_argument('--hw', help="array preset, e.g. 'mvq', 'mvq_64x64'")
    p.add_argument('--baseline', help="array of the dense reference (default 'ews')")
    p.add_argument('--input-shape', type=int, nargs='+', help='one inference, e.g. 1 3 224 224')
    p.add_argument('--calib-batches', type=int)
    p.add_argument('--cache', help='sensitivity cache (JSON) reused by the next budget')
    p.add_argument('--out', help='write the allocation as JSON')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return p.parse_args(argv)


@exit_on_missing_ops
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.getLogger('mvq_plugin').setLevel(logging.WARNING)  # the table is the output
    budget = {k: v for k, v in dict(
        bytes=args.bytes, bits=args.bits, energy_ratio=args.energy_ratio,
        energy_pj=args.energy_pj, cycles_ratio=args.cycles_ratio, cycles=args.cycles,
        hw=args.hw, baseline=args.baseline, calib_batches=args.calib_batches,
        cache=args.cache,
        input_shape=tuple(args.input_shape) if args.input_shape else None).items()
        if v is not None}
    try:
        alloc, _ = allocate_from_config(args.config, checkpoint=args.checkpoint, budget=budget,
                                        options=args.cfg_options)
    except InfeasibleBudget as err:
        print(f'error: {err}', file=sys.stderr)
        raise SystemExit(2) from None
    print(alloc)
    result = alloc.to_dict()
    if args.out:
        with open(args.out, 'w') as fh:
            json.dump(result, fh, indent=1)
        print(f'allocation written to {args.out} (give it to MVQModel(allocation=...) or '
              'mvq_plugin.compress(..., allocation=...))')
    return result


def run() -> None:
    """Console entry point ``mvq-allocate``."""
    main()
