import math

import pytest
import torch

from mvq_plugin.core import decode_mask, encode_mask, mask_code_bits, nm_mask


@pytest.mark.parametrize('n, m', [(1, 4), (2, 4), (2, 8), (4, 8), (3, 16), (8, 8)])
def test_keeps_exactly_n_most_important_per_group(n, m):
    scores = torch.randn(50, 16).abs()
    mask = nm_mask(scores, n, m)
    groups, gscores = mask.reshape(-1, m), scores.reshape(-1, m)
    assert torch.all(groups.sum(1) == n)
    kept_min = torch.where(groups, gscores, torch.full_like(gscores, math.inf)).min(1).values
    dropped_max = torch.where(groups, torch.full_like(gscores, -math.inf), gscores).max(1).values
    assert torch.all(kept_min >= dropped_max)


def test_ties_go_to_lower_index():
    mask = nm_mask(torch.ones(1, 8), 2, 8)
    assert mask.tolist() == [[True, True, False, False, False, False, False, False]]


def test_mask_along_input_channel_layout():
    # A 2:4 mask on sub-vectors W.permute(0,2,3,1) groups consecutive input channels.
    w = torch.zeros(1, 4, 1, 1)
    w[0, :, 0, 0] = torch.tensor([0.1, -3.0, 2.0, 0.5])
    mask = nm_mask(w.permute(0, 2, 3, 1).reshape(-1, 4).abs(), 2, 4)
    assert mask.tolist() == [[False, True, True, False]]


def test_code_bits():
    assert mask_code_bits(2, 8) == 5     # C(8,2) = 28
    assert mask_code_bits(2, 4) == 3     # C(4,2) = 6
    assert mask_code_bits(1, 2) == 1
    assert mask_code_bits(8, 16) == 14   # C(16,8) = 12870
    assert mask_code_bits(4, 4) == 0


@pytest.mark.parametrize('m', range(1, 17))
def test_code_round_trip_every_nm_up_to_16(m):
    for n in range(1, m + 1):
        total = math.comb(m, n)
        codes = torch.arange(total)
        masks = decode_mask(codes, n, m)
        assert masks.reshape(-1, m).sum(1).eq(n).all()
        assert torch.equal(encode_mask(masks, n, m), codes)
        assert len({tuple(r) for r in masks.reshape(-1, m).tolist()}) == total
        assert int(codes.max()) < 2 ** mask_code_bits(n, m) or total == 1


def test_encode_rejects_wrong_count():
    with pytest.raises(ValueError, match='keeps 3 elements, not n=2'):
        encode_mask(torch.tensor([True, True, True, False]), 2, 4)
    with pytest.raises(ValueError, match='out of range'):
        decode_mask(torch.tensor([6]), 2, 4)
    with pytest.raises(ValueError, match='invalid N:M pattern 5:4'):
        nm_mask(torch.ones(4), 5, 4)
