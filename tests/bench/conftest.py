"""The benchmarks' helper modules (``tools/bench/common.py``, ``matching.py``,
``imagenet_photos.py``) are imported as modules: their folder goes on ``sys.path``, as it is for
a script run from it. The scripts themselves run as a user runs them (subprocess)."""
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / 'tools' / 'bench'
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
