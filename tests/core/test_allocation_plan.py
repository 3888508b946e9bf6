"""An allocation applied over a config (``with_allocation``): from a file, a dict or an object;
bad input named."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core.allocation_plan import read_allocation, with_allocation

PLAN = {'exclude': ['^conv1$'], 'overrides': {'conv2': {'num_codewords': 16, 'n': 4, 'm': 8}},
        'predicted': {'bits': 1.0}}


def _net():
    torch.manual_seed(0)
    return nn.ModuleDict(dict(
        conv1=nn.Conv2d(16, 32, 3), conv2=nn.Conv2d(32, 32, 3), conv3=nn.Conv2d(32, 16, 3)))


def test_file_dict_and_object_give_the_same_config(tmp_path):
    path = tmp_path / 'plan.json'
    path.write_text(json.dumps(PLAN))
    base = mvq.MVQConfig(exclude=['^conv3$'], overrides={'conv2': {'num_codewords': 64}})
    configs = [with_allocation(base, src) for src in
               (str(path), path, PLAN, SimpleNamespace(**{k: PLAN[k] for k in
                                                          ('exclude', 'overrides')}))]
    assert all(c == configs[0] for c in configs)
    cfg = configs[0]
    assert cfg.exclude == ['^conv3$', '^conv1$']   # the base's rules first, then the plan's
    assert cfg.overrides == {'conv2': {'num_codewords': 16, 'n': 4, 'm': 8}}  # the plan wins
    assert base.exclude == ['^conv3$']              # the base is not changed


def test_compress_reads_the_plan():
    the_plan = mvq.plan(_net(), with_allocation(mvq.MVQConfig(num_codewords=32), PLAN))
    layers = {lp.name: lp for lp in the_plan.compressed}
    assert sorted(layers) == ['conv2', 'conv3']
    assert (layers['conv2'].config.num_codewords, layers['conv2'].config.n) == (16, 4)
    assert layers['conv3'].config.num_codewords == 32
    net = _net()
    report = mvq.compress(net, mvq.MVQConfig(num_codewords=32, kmeans_iters=2), allocation=PLAN)
    assert sorted(lp.name for lp in report.plan.compressed) == ['conv2', 'conv3']
    assert mvq.quantized_layers(net)['conv2'].codebook.shape[0] == 16


def test_bad_allocations_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="allocation file '.*nope.json' does not exist"):
        read_allocation(str(tmp_path / 'nope.json'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"exclude": [')
    with pytest.raises(ValueError, match="allocation file '.*bad.json' is not JSON"):
        read_allocation(bad)
    with pytest.raises(ValueError, match='needs a list "exclude" and a dict "overrides"'):
        read_allocation({'layers': []})
    with pytest.raises(ValueError, match='overrides=None'):
        read_allocation(SimpleNamespace(exclude=[]))
