"""The paper's sparse tile: resource counts equal Table 2; which tile a model maps to."""
import math

import pytest

from mvq_plugin import hw
from mvq_plugin.hw.workload import LayerWorkload, Workload


@pytest.mark.parametrize('h', [1, 4, 64])
@pytest.mark.parametrize('d,n,m', [(16, 4, 16), (8, 2, 8), (16, 8, 16)])
def test_sparse_tile_counts_equal_table2(h, d, n, m):
    arch = hw.get_arch('EWS-CMS', sparse_block=d, sparse_n=n, sparse_m=m)
    q = n * d // m
    res = hw.tile_resources(arch, height=h)
    b_w, b_psum, depth = 8, 32, 16
    assert (res.kind, res.height, res.width) == ('out_channel', h, d)
    assert res.multipliers == h * q
    assert res.adders == h * d
    assert res.weight_rf_bits + res.mask_rf_bits == \
        h * q * depth * b_w + h * q * depth * int(math.log2(d))
    assert res.lzc == h * q
    assert res.demux_bits == h * q * b_psum
    assert res.mux_bits == h * q * b_w
    assert res.parallelism == 2 * h * d


def test_dense_ews_tile_counts_equal_table2():
    res = hw.tile_resources(hw.get_arch('EWS', sparse_block=16), height=4)
    assert (res.multipliers, res.adders, res.weight_rf_bits) == (64, 64, 4 * 16 * 16 * 8)
    assert (res.lzc, res.demux_bits, res.mux_bits, res.parallelism) == (0, 0, 0, 128)


def test_array_resources_of_the_paper_arrays():
    assert hw.array_resources(hw.get_arch('EWS-CMS_64x64')).multipliers == 1024   # Table 9
    assert hw.array_resources(hw.get_arch('EWS-CMS_16x16')).multipliers == 64
    assert hw.array_resources(hw.get_arch('EWS_32x32')).multipliers == 1024


def _wl(axis):
    lay = LayerWorkload('c', 'conv', 64, 64, (3, 3), (1, 1), 1, (8, 8), (8, 8))
    return Workload('n', [lay]).with_compression(16, 512, 4, 16, predicate=lambda x: True,
                                                 vector_axis=axis)


def test_model_maps_to_the_tile_of_its_layout():
    arch = hw.get_arch('mvq', sparse_block=16, sparse_n=4, sparse_m=16)
    assert hw.resolve_tile(_wl('out_channel'), arch).sparse_tile == 'out_channel'
    assert hw.resolve_tile(_wl('in_channel'), arch).sparse_tile == 'in_channel'
    assert hw.resolve_tile(_wl(None), arch).sparse_tile == 'in_channel'
    rep = hw.estimate(_wl('out_channel'), arch=arch)
    assert rep.arch.sparse_tile == 'out_channel'
    assert ('sparse tile', 'out_channel') in rep.summary_rows()


def test_a_layer_laid_out_for_the_other_tile_runs_dense():
    arch = hw.get_arch('EWS-CMS_16x16')
    fits = hw.cost_workload(_wl('out_channel'), arch)
    other = hw.cost_workload(_wl('in_channel'), arch)
    assert fits.total('macs') == pytest.approx(fits.total('dense_macs') / 4)
    assert other.total('macs') == other.total('dense_macs')
    assert other.layers['passes'][0] == 4


def test_paper_settings_carry_the_paper_memory_system():
    small, big = hw.get_arch('EWS-CMS_16x16'), hw.get_arch('EWS-CMS_64x64')
    assert (small.ifmap_sram_kb, big.ifmap_sram_kb, big.l2_kb) == (128, 256, 2048)
    assert (big.clock_mhz, big.weight_load_bw_bits, big.cost_table) == (300.0, 64, 'paper-40nm')
    assert hw.load_table(big.cost_table).mac_int8 == pytest.approx(0.298)
    with pytest.raises(ValueError, match="unknown paper setting 'EWS-X'"):
        hw.paper_setting('EWS-X')
    with pytest.raises(ValueError, match="sparse_tile='diag'"):
        big.with_(sparse_tile='diag')
