#!/usr/bin/env python
"""Export a .mvq artifact as a dense state dict or as ONNX.

The command is ``mvq_plugin.cli.export`` (installed as ``mvq-export``);
this file runs it from a checkout. ``--help`` lists the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvq_plugin.cli.export import run  # noqa: E402

if __name__ == '__main__':
    run()
