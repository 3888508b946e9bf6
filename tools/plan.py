#!/usr/bin/env python
"""Print the MVQ plan of an OpenMMLab config (every layer, compressed or dense and why).

The command is ``mvq_plugin.cli.plan`` (installed as ``mvq-plan``);
this file runs it from a checkout. ``--help`` lists the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvq_plugin.cli.plan import run  # noqa: E402

if __name__ == '__main__':
    run()
