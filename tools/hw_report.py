#!/usr/bin/env python
"""Hardware-cost report of a network, config or .mvq artifact on the accelerator model.

The command is ``mvq_plugin.cli.hw_report`` (installed as ``mvq-hw-report``);
this file runs it from a checkout. ``--help`` lists the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mvq_plugin.cli.hw_report import run  # noqa: E402

if __name__ == '__main__':
    run()
