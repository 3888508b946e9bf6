import pytest
from torch import nn

from mvq_plugin import MVQConfig


@pytest.mark.parametrize('kwargs, words', [
    (dict(n=5, m=4), ['n=5', '[1, 4]']),
    (dict(n=2, m=3, block_size=8), ['m=3', 'block_size=8']),
    (dict(num_codewords=1), ['num_codewords=1', '>= 2']),
    (dict(codebook_bits=4), ['codebook_bits=4', '[8, 16, 32]']),
    (dict(method='pq'), ["method='pq'", 'mvq']),
    (dict(vector_axis='rows'), ["vector_axis='rows'", 'spatial']),
    (dict(kmeans_init='foo'), ["kmeans_init='foo'"]),
    (dict(importance='grad'), ["importance='grad'", 'taylor']),
    (dict(tol=-1.0), ['tol=-1.0']),
    (dict(kmeans_iters=-1), ['kmeans_iters=-1']),
    (dict(exclude=['(']), ["'('", 'regex']),
    (dict(exclude='fc'), ["exclude='fc'"]),
    (dict(overrides={'fc': {'blocksize': 4}}), ['blocksize', 'allowed fields']),
    (dict(overrides={'fc': {'n': 3, 'm': 2}}), ['n=3']),
    (dict(type_overrides={'Linear': {'num_codewords': 0}}), ['num_codewords=0']),
    (dict(min_params=-3), ['min_params=-3']),
])
def test_bad_values_name_field_value_and_range(kwargs, words):
    with pytest.raises(ValueError) as err:
        MVQConfig(**kwargs)
    for w in words:
        assert w in str(err.value)


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match=r"\['codewords'\]"):
        MVQConfig.from_dict({'codewords': 4})
    cfg = MVQConfig.from_dict({'num_codewords': 4})
    assert cfg.num_codewords == 4
    assert MVQConfig.from_dict(cfg.to_dict()) == cfg


def test_vq_does_not_need_m_to_divide_d():
    cfg = MVQConfig(method='vq', block_size=9)
    assert not cfg.prunes and cfg.block_size == 9


def test_resolution_order_name_beats_type_beats_global():
    cfg = MVQConfig(num_codewords=256,
                    type_overrides={'Linear': {'num_codewords': 64, 'block_size': 4, 'm': 4}},
                    overrides={r'head\.fc': {'num_codewords': 16}})
    lin = nn.Linear(8, 8)
    assert cfg.for_layer('conv', nn.Conv2d(8, 8, 1)).num_codewords == 256
    assert cfg.for_layer('other', lin).num_codewords == 64
    got = cfg.for_layer('head.fc', lin)
    assert (got.num_codewords, got.block_size) == (16, 4)
    # fullmatch, not search
    assert cfg.for_layer('head.fc2', lin).num_codewords == 64
    assert cfg.for_layer('x', nn.LazyLinear(3)).num_codewords == 64  # subclass of Linear
