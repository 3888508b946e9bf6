"""``tools/bench/detseg.py``: the plain-VQ baseline it trains is matched to MVQ's bits on the
real detector and segmenter configs (the rows of the table compare at equal size)."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.mmcv_ops]


def test_vq_rows_match_mvq_bits_on_the_shipped_models():
    pytest.importorskip('mmdet')
    pytest.importorskip('mmseg')
    import detseg  # tools/bench, on sys.path by conftest.py

    # MVQ 4:16 d=16 k=256 (19 bits per 16 weights) and 1:2 d=8 k=512: the closest plain VQ
    # in accounted bits, the margin to the baseline
    for case, d, k in (('mask_rcnn', 4, 32), ('deeplabv3', 4, 256)):
        vq, bits, target = detseg.vq_setting(detseg.CASES[case])
        assert vq.method == 'vq' and (vq.block_size, vq.num_codewords) == (d, k), case
        assert 0 <= bits / target - 1 <= 0.02, case
