#!/usr/bin/env python
"""Write the weight stream of a ``.mvq`` artifact for the paper's weight loader.

Example::

    python tools/hw_stream.py work_dirs/mvq/model.mvq --array 64x64 --out work_dirs/stream

writes, per compressed layer, the codebook image (``k x d`` int8) and the (index, mask-code)
pairs in L2 order aligned to the array, and ``manifest.json`` (layer, shapes, d, k, N:M, files,
offsets, bytes, folds, L2 slices); see :mod:`mvq_plugin.hw.stream`.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _array(text: str) -> tuple[int, int]:
    match = re.fullmatch(r'(\d+)x(\d+)', text)
    if not match:
        raise argparse.ArgumentTypeError(f'--array {text!r} must be ROWSxCOLS, e.g. 64x64')
    return int(match.group(1)), int(match.group(2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n', 2)[2])
    p.add_argument('artifact', help='a .mvq file (out_channel sub-vectors, int8 codebooks)')
    p.add_argument('--array', type=_array, default=(64, 64), help='ROWSxCOLS (default 64x64)')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--l2-kb', type=float, default=2048, help='L2 slice size (default 2048)')
    p.add_argument('--groups', nargs='*', default=[], metavar='NAME=G',
                   help='groups of grouped convs (the artifact does not store them)')
    args = p.parse_args(argv)
    from mvq_plugin.hw.stream import stream_layers, write_stream
    from mvq_plugin.io.codec import read_artifact
    groups = {}
    for item in args.groups:
        name, _, g = item.partition('=')
        if not g.isdigit():
            p.error(f'--groups {item!r} must be NAME=G with an integer G')
        groups[name] = int(g)
    layers = stream_layers(read_artifact(args.artifact).layers, array=args.array,
                           groups=groups, l2_kb=args.l2_kb)
    manifest = write_stream(layers, args.out)
    print(f'{len(layers)} layers -> {manifest}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
