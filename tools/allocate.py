#!/usr/bin/env python
"""Choose per-layer MVQ settings of an OpenMMLab config's model for a budget.

The command is ``mvq_plugin.cli.allocate`` (installed as ``mvq-allocate``);
this file runs it from a checkout. ``--help`` lists the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvq_plugin.cli.allocate import run  # noqa: E402

if __name__ == '__main__':
    run()
