"""What a user of an OpenMMLab config reaches for besides training: a plan file from
``tools/allocate.py --out`` given to ``MVQModel(allocation=...)``, and ``tools/export.py
--config`` (an artifact exported through the config's own model)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.config import Config  # noqa: E402

import mvq_plugin as mvq  # noqa: E402
from mvq_plugin.integrations.mm.config_model import build_model_from_config  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DENSE = 'configs/demo/resnet18_fashion-mnist_dense.py'
MVQ = 'configs/demo/resnet18_fashion-mnist_mvq.py'
#: Width 16: the demo's ResNet-18 small enough to cluster in seconds.
NARROW = {'backbone.base_channels': 16, 'backbone.stem_channels': 16, 'head.in_channels': 128}


def _options(prefix: str) -> dict:
    return {f'{prefix}.{k}': v for k, v in NARROW.items()}


def test_mvq_model_applies_an_allocation_file(tmp_path):
    plan_file = tmp_path / 'plan.json'
    plan_file.write_text(json.dumps({
        'exclude': ['^backbone\\.layer1\\.0\\.conv1$'],
        'overrides': {re.escape('backbone.layer4.1.conv2'): {'num_codewords': 32}}}))
    cfg = Config.fromfile(str(REPO / MVQ))
    cfg.model.allocation = str(plan_file)
    model, _ = build_model_from_config(cfg)
    layers = {lp.name: lp for lp in model.mvq_plan.compressed}
    assert 'backbone.layer1.0.conv1' not in layers and 'backbone.layer1.0.conv2' in layers
    assert layers['backbone.layer4.1.conv2'].config.num_codewords == 32
    assert layers['backbone.layer4.1.conv1'].config.num_codewords == 256  # the config's own
    cfg.model.budget = dict(bytes='1MiB')
    with pytest.raises(ValueError, match='either budget= .* or allocation='):
        build_model_from_config(cfg)


@pytest.mark.slow
def test_export_from_a_config(tmp_path):
    """The dense export through the upstream config or the MVQ config is an mmengine
    checkpoint the upstream model loads strictly, computing what the artifact computes."""
    dense, _ = build_model_from_config(str(REPO / DENSE), _options('model'))
    torch.manual_seed(0)
    mvq.compress(dense, mvq.MVQConfig(block_size=16, num_codewords=16, n=4, m=16,
                                      kmeans_iters=2))
    mvq.set_codebook_quant(dense, True)
    mvq.save(dense, tmp_path / 'r.mvq')
    x = torch.randn(2, 1, 28, 28)
    expected = dense.eval()(x)
    for config, prefix in ((DENSE, 'model'), (MVQ, 'model.model')):
        out = tmp_path / f'{prefix}.pth'
        proc = subprocess.run(
            [sys.executable, str(REPO / 'tools' / 'export.py'), str(tmp_path / 'r.mvq'),
             str(out), '--config', config, '--to', 'dense', '--cfg-options',
             *[f'{k}={v}' for k, v in _options(prefix).items()]],
            cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ckpt = torch.load(out, weights_only=True)
        assert ckpt['meta']['arch'] == f'config:{Path(config).name}'
        plain, _ = build_model_from_config(str(REPO / DENSE), _options('model'))
        plain.load_state_dict(ckpt['state_dict'])   # strict: the upstream keys exactly
        torch.testing.assert_close(plain.eval()(x), expected, rtol=0, atol=1e-4)
