"""Calibration statistics and the data-aware (activation) mask and clustering."""
import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core.blocking import to_subvectors
from mvq_plugin.core.calibration import collect_input_stats, element_importance
from mvq_plugin.core.nm import nm_mask


def test_input_stats_are_per_channel_second_moments(tiny_net):
    x = torch.randn(4, 3, 8, 8) * torch.tensor([1., 2., 3.])[:, None, None]
    stats = collect_input_stats(tiny_net, ['stem', 'fc'], [x[:2], x[2:]])
    assert torch.allclose(stats['stem'], (x ** 2).mean((0, 2, 3)), rtol=1e-5)
    assert stats['fc'].shape == (32,)
    with pytest.raises(ValueError, match='no batches'):
        collect_input_stats(tiny_net, ['stem'], [])
    with pytest.raises(ValueError, match="'nope' is not a module"):
        collect_input_stats(tiny_net, ['nope'], [x])


def test_grouped_conv_maps_weights_to_their_input_channels():
    stats = torch.arange(8, dtype=torch.float32)  # C_in = 8, groups = 2: 4 channels each
    h = element_importance((6, 4, 1, 1), stats, groups=2)
    assert h[0, :, 0, 0].tolist() == [0, 1, 2, 3]      # output 0..2 read channels 0..3
    assert h[5, :, 0, 0].tolist() == [4, 5, 6, 7]      # output 3..5 read channels 4..7
    with pytest.raises(ValueError, match='channels'):
        element_importance((6, 4, 1, 1), stats, groups=1)


def _scaled_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 1), nn.Conv2d(16, 16, 3, padding=1))
    return net


def test_activation_mask_follows_input_channel_norms():
    net = _scaled_net()
    scale = torch.ones(16)
    scale[:8] = 10.0  # the first 8 input channels of net[1] carry 10x the signal
    x = torch.randn(8, 3, 6, 6)
    feats = torch.randn(8, 16, 6, 6) * scale[None, :, None, None]

    def forward(model, batch):  # net[1] sees features whose channel norms differ 10x
        return model[1](model[0](batch) * 0 + feats)

    cfg = mvq.MVQConfig(num_codewords=16, block_size=8, n=2, m=8, importance='activation',
                        skip_first_conv=True, kmeans_iters=5, vector_axis='in_channel')
    mvq.compress(net, cfg, calib=[x, x], forward_fn=forward)
    q = mvq.quantized_layers(net)['1']
    w = net[1].parametrizations.weight.original
    stats = collect_input_stats(_scaled_net(), ['1'], [x, x], forward)  # same statistics
    h = to_subvectors(element_importance(tuple(w.shape), stats['1']), 8, 'in_channel')
    expected = nm_mask(to_subvectors(w, 8, 'in_channel').abs() * h.sqrt(), 2, 8)
    assert torch.equal(q.mask, expected)
    magnitude = nm_mask(to_subvectors(w, 8, 'in_channel').abs(), 2, 8)
    assert not torch.equal(q.mask, magnitude)  # the statistics changed the choice


def test_data_aware_settings_need_calibration(tiny_net):
    for fields in (dict(importance='activation'), dict(kmeans_weights='activation')):
        cfg = mvq.MVQConfig(num_codewords=8, block_size=8, n=2, m=8, **fields)
        with pytest.raises(ValueError, match='needs calibration data'):
            mvq.compress(tiny_net, cfg)
        assert not mvq.quantized_layers(tiny_net)  # nothing changed
    with pytest.raises(ValueError, match="kmeans_weights='bogus'"):
        mvq.MVQConfig(kmeans_weights='bogus')


def test_weighted_clustering_lowers_the_weighted_error(tiny_net):
    x = [torch.randn(4, 3, 8, 8) for _ in range(2)]
    # in_channel: the elements of a sub-vector read different input channels, so the
    # weights differ inside a sub-vector (out_channel elements share one input channel)
    base = dict(num_codewords=16, block_size=8, n=2, m=8, kmeans_iters=20,
                vector_axis='in_channel', kmeans_stop='objective')
    plain, aware = TinyNetPair(tiny_net)
    mvq.compress(plain, mvq.MVQConfig(**base))
    mvq.compress(aware, mvq.MVQConfig(**base, kmeans_weights='activation'), calib=x)
    stats = collect_input_stats(tiny_net, ['conv'], x)
    w = tiny_net.conv.weight.detach()
    h = element_importance(tuple(w.shape), stats['conv'])

    def weighted_err(model):
        return float((h * (model.conv.weight.detach() - w) ** 2).sum())

    assert torch.equal(mvq.quantized_layers(plain)['conv'].mask,
                       mvq.quantized_layers(aware)['conv'].mask)  # same (magnitude) mask
    assert weighted_err(aware) < weighted_err(plain)


def TinyNetPair(net):
    import copy
    return copy.deepcopy(net), copy.deepcopy(net)
