"""The paper's hardware figures beside the model (mvq_plugin.hw.paper)."""
import pytest

from mvq_plugin import hw
from mvq_plugin.hw import paper
from mvq_plugin.hw.zoo import resnet18_workload


@pytest.mark.slow
def test_resnet18_workload_matches_traced_model():
    torchvision = pytest.importorskip('torchvision')
    traced = hw.extract_workload(torchvision.models.resnet18(), (1, 3, 224, 224))
    built = resnet18_workload()
    key = lambda lay: (lay.name, lay.sr, lay.sc, lay.t, lay.groups, lay.stride)  # noqa: E731
    assert [key(x) for x in traced] == [key(x) for x in built]
    assert built.macs == 1_814_073_344


def test_published_values_agree_with_the_papers_text():
    fig19 = paper.PUBLISHED['fig19']
    # section 7.5: EWS-CMS +53.3% .. +137.9% over EWS, WS-CMS +28.5% .. +114.2% over WS
    gains = [c / e - 1 for c, e in zip(fig19['EWS-CMS'], fig19['EWS'])]
    assert gains[0] == pytest.approx(0.533, abs=0.01) and gains[-1] == pytest.approx(1.379,
                                                                                      abs=0.01)
    ws = [c / e - 1 for c, e in zip(fig19['WS-CMS'], fig19['WS'])]
    assert ws[0] == pytest.approx(0.285, abs=0.005) and ws[-1] == pytest.approx(1.142, abs=0.005)
    # Fig. 20 averages: +46% (WS-CMS over WS) and +90% (EWS-CMS over EWS)
    f20 = paper.PUBLISHED['fig20']
    wsc = [v for net in f20.values() for v in net['WS-CMS']]
    ewsc = [c / e for net in f20.values() for c, e in zip(net['EWS-CMS'], net['EWS'])]
    assert sum(wsc) / len(wsc) == pytest.approx(1.46, abs=0.01)
    assert sum(ewsc) / len(ewsc) == pytest.approx(1.90, abs=0.01)
    # Fig. 17: EWS-CMS 1.2-1.8x faster than EWS at 64x64
    speed = [v['EWS-CMS'] / v['EWS'] for v in paper.PUBLISHED['fig17'].values()]
    assert min(speed) == pytest.approx(1.15, abs=0.01) and max(speed) == pytest.approx(1.83,
                                                                                         abs=0.01)


def test_area_model_on_table7():
    wl = resnet18_workload()
    for setting, sizes in paper.PUBLISHED['table7'].items():
        for size, pub in zip(hw.arch.PAPER_SIZES, sizes):
            ours = hw.cost_workload(wl, hw.get_arch(f'{setting}_{size}x{size}')).area
            ratio = ours['accelerator'] * 1e-6 / pub
            expected = {'WS': (0.70, 0.80), 'EWS': (0.98, 1.06), 'EWS-CM': (1.0, 1.1),
                        'EWS-CMS': (1.15, 1.3)}[setting]
            assert expected[0] <= ratio <= expected[1], (setting, size, ratio)


@pytest.mark.slow
def test_side_by_side_figures():
    pytest.importorskip('torchvision')
    pytest.importorskip('timm')
    workloads = paper.paper_workloads()
    effects = paper.switch_effects(workloads)
    rows = {(r['figure'], r['item']): r for r in paper.compare(workloads, effects)}
    # the EWS bars of Fig. 19 are the only fitted numbers (static power)
    for size in (16, 32, 64):
        assert rows['fig19', f'EWS {size}x{size}']['ratio'] == pytest.approx(1.0, abs=0.01)
    assert rows['fig15', 'resnet18 64x64']['ours'] == pytest.approx(4.08, abs=0.02)
    assert rows['fig19', 'EWS-CMS 64x64']['ours'] == pytest.approx(5.52, abs=0.02)
    assert rows['fig17', 'resnet18 EWS']['ours'] == pytest.approx(1.39, abs=0.01)
    # AlexNet at batch 1 is FC-weight-load bound; the conv-only switch explains Table 9
    t9 = rows['table9', 'mvq64_alexnet_75']
    assert t9['ratio'] < 0.5 and t9['note'].startswith('conv_only')
    assert effects['conv_only']['table9', 'mvq64_alexnet_75'] == pytest.approx(5.41, abs=0.02)
    within = sum(1 for r in rows.values() if abs(r['ratio'] - 1) <= 0.15)
    assert within == 36 and len(rows) == 90
