"""Writes the real-pixel canvas sets used by the detection/segmentation configs and tests.

    python tools/make_canvas_data.py [--out data] [--train 200] [--val 50] [--seed 0]
    python tools/make_canvas_data.py --hard --train 3000 --val 300

``data/canvas_coco`` (COCO instance segmentation) and ``data/canvas_seg`` (semantic
segmentation), built from real Fashion-MNIST items (see ``mvq_plugin.data.canvas``); with
``--hard``, ``data/canvas_coco_hard`` and ``data/canvas_seg_hard`` from the harder layout
(``mvq_plugin.data.canvas.HARD``: free placement with occlusion, 1-8 items of 16-72 px,
distractor shapes, 160x160) that the detection/segmentation benchmark trains on.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mvq_plugin.data.canvas import HARD, CanvasSpec, make_coco_instances, make_semantic_seg


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='data')
    p.add_argument('--train', type=int, default=200)
    p.add_argument('--val', type=int, default=50)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--hard', action='store_true',
                   help='the harder layout (canvas_*_hard): occlusion, clutter, scale range')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    out = Path(args.out)
    spec, suffix = (HARD, '_hard') if args.hard else (CanvasSpec(), '')
    coco = make_coco_instances(out / f'canvas_coco{suffix}', args.train, args.val, spec,
                               seed=args.seed)
    seg = make_semantic_seg(out / f'canvas_seg{suffix}', args.train, args.val, spec,
                            seed=args.seed)
    logging.info('wrote %s and %s (%d train / %d val canvases each)', coco, seg, args.train,
                 args.val)


if __name__ == '__main__':
    main()
