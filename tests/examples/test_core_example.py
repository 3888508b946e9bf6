"""``examples/core_fashion_mnist.py --fast``: the whole core flow on real Fashion-MNIST
(compress, fine-tune, save, load into a fresh model, to_dense, compare) in its own work dir."""
import json
import sys
from pathlib import Path

import pytest

from mvq_plugin.data.fashion_mnist import find_fashion_mnist

EXAMPLES = Path(__file__).resolve().parents[2] / 'examples'


@pytest.fixture(scope='module')
def example():
    try:
        find_fashion_mnist(None)
    except FileNotFoundError as err:
        pytest.skip(f'Fashion-MNIST not unpacked ({err}); `make setup` puts it in data/')
    sys.path.insert(0, str(EXAMPLES))
    try:
        import core_fashion_mnist
    finally:
        sys.path.remove(str(EXAMPLES))
    return core_fashion_mnist


@pytest.mark.slow
def test_fast_mode_runs_the_whole_flow(example, tmp_path):
    summary = example.main(['--fast', '--work-dir', str(tmp_path / 'ex'), '--threads', '1'])
    work = tmp_path / 'ex'
    assert json.loads((work / 'summary.json').read_text())['mvq_top1'] == summary['mvq_top1']
    assert (work / 'model.mvq').stat().st_size == summary['artifact_bytes'] > 0
    # The paper's layout, 4:16 along d=16 output channels: a quarter of the MACs stay.
    assert (summary['d'], summary['nm']) == (16, '4:16')
    assert summary['macs_effective'] < 0.5 * summary['macs_dense']
    assert summary['compression_ratio'] > 10
    assert summary['layers_compressed'] >= 5
    # Trained for 60 steps: well above chance (10 %), and the artifact is bit-exact.
    assert summary['dense_top1'] > 0.5 and summary['mvq_top1'] > 0.3
    assert summary['loaded_max_abs_diff'] == 0.0
    assert summary['loaded_top1'] == summary['mvq_top1']
    assert summary['to_dense_max_abs_diff'] < 1e-4
    assert summary['to_dense_top1'] == pytest.approx(summary['loaded_top1'], abs=0.002)
