"""Writes the real-pixel canvas sets used by the detection/segmentation configs and tests.

    python tools/make_canvas_data.py [--out data] [--train 200] [--val 50] [--seed 0]

``data/canvas_coco`` (COCO instance segmentation) and ``data/canvas_seg`` (semantic
segmentation), built from real Fashion-MNIST items (see ``mvq_plugin.data.canvas``).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mvq_plugin.data.canvas import make_coco_instances, make_semantic_seg


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='data')
    p.add_argument('--train', type=int, default=200)
    p.add_argument('--val', type=int, default=50)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    out = Path(args.out)
    coco = make_coco_instances(out / 'canvas_coco', args.train, args.val, seed=args.seed)
    seg = make_semantic_seg(out / 'canvas_seg', args.train, args.val, seed=args.seed)
    logging.info('wrote %s and %s (%d train / %d val canvases each)', coco, seg, args.train,
                 args.val)


if __name__ == '__main__':
    main()
