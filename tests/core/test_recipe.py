"""The MVQ recipe in plain PyTorch: phases, budget, self-distillation, clear errors."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mvq_plugin as mvq
from mvq_plugin.core.blocking import to_subvectors
from mvq_plugin.core.distill import DistillConfig, Distiller, feature_loss, kd_loss, make_teacher
from mvq_plugin.core.finetune import evaluate
from mvq_plugin.core.recipe import MVQRecipe, finetune_dense, run_recipe


def _task(seed=0, n=256):
    """A learnable 10-class task for TinyNet: the label is set by the input's mean colour."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=g)
    y = (x.mean((2, 3)) @ torch.randn(3, 10, generator=g)).argmax(1)
    return x, y


def _trained(net, x, y, steps=150):
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


CFG = dict(num_codewords=16, block_size=8, n=2, m=8, kmeans_iters=10, vector_axis='in_channel')


def test_recipe_runs_every_phase_and_stores_what_it_computes(tiny_net):
    x, y = _task()
    net = _trained(tiny_net, x, y)
    dense_w = net.conv.weight.detach().clone()
    dense_bytes = sum(t.numel() * t.element_size()
                      for t in list(net.parameters()) + list(net.buffers()))

    def batches(step):
        i = (step * 32) % 256
        return x[i:i + 32], y[i:i + 32]

    recipe = MVQRecipe(iters=40, sparse_iters=20, quant_iters=10, distill=True,
                       calib_batches=2, bn_recalib=True, lr=0.01)
    res = run_recipe(net, mvq.MVQConfig(**CFG, importance='activation',
                                        kmeans_weights='activation'), recipe, batches,
                     evaluate=lambda m: evaluate(m, [(x, y)]), calib=[x[:64], x[64:128]])
    assert list(res.top1) == ['dense', 'pruned', 'sparse_finetuned', 'clustered', 'finetuned',
                              'bn_recalibrated']
    assert len(res.losses) == 40
    assert res.teacher_bytes == dense_bytes
    # the sparse phase trained the kept dense weights; the pruned ones got no gradient (only
    # weight decay shrank them)
    q = mvq.quantized_layers(net)['conv']
    original = to_subvectors(net.conv.parametrizations.weight.original.detach(), 8, 'in_channel')
    before = to_subvectors(dense_w, 8, 'in_channel')
    assert (original != before)[q.mask].float().mean() > 0.5
    shrink = original[~q.mask] / before[~q.mask]
    assert bool(((shrink > 0.9) & (shrink <= 1.0)).all())
    assert all(layer.codebook_quant for layer in mvq.quantized_layers(net).values())
    assert res.compression_ratio > 1 and res.bits == mvq.compression_stats(net).bits
    assert res.top1['sparse_finetuned'] > res.top1['pruned'] + 20  # the sparse phase learns
    assert res.top1['finetuned'] > 50
    assert set(res.seconds) >= {'calibrate', 'sparse', 'cluster', 'codebook', 'bn'}


def test_equal_budget_dense_control(tiny_net):
    x, y = _task(1)
    net = _trained(tiny_net, x, y, steps=50)
    before = evaluate(net, [(x, y)])
    res = finetune_dense(copy.deepcopy(net), MVQRecipe(iters=30, lr=0.01),
                         lambda s: (x, y), evaluate=lambda m: evaluate(m, [(x, y)]))
    assert len(res.losses) == 30 and res.top1['dense'] == pytest.approx(before)
    assert res.losses[-1] < res.losses[0]


def test_recipe_errors_name_the_value():
    with pytest.raises(ValueError, match='sparse_iters=50 is longer than the whole run'):
        MVQRecipe(iters=40, sparse_iters=50)
    with pytest.raises(ValueError, match='quant_iters=30 is longer than the codebook phase'):
        MVQRecipe(iters=40, sparse_iters=20, quant_iters=30)
    with pytest.raises(ValueError, match='bn_recalib=True needs calibration data'):
        MVQRecipe(iters=10, bn_recalib=True)
    with pytest.raises(ValueError, match='temperature'):
        MVQRecipe(iters=10, distill=dict(temperature=0))
    with pytest.raises(ValueError, match="unknown distill setting"):
        MVQRecipe(iters=10, distill=dict(temp=2))


def test_calibration_requested_without_data(tiny_net):
    recipe = MVQRecipe(iters=4)
    with pytest.raises(ValueError, match='needs calibration data'):
        run_recipe(tiny_net, mvq.MVQConfig(**CFG, importance='activation'), recipe,
                   lambda s: (torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match='needs calibration data'):
        run_recipe(copy.deepcopy(tiny_net), mvq.MVQConfig(**CFG),
                   MVQRecipe(iters=4, calib_batches=2), lambda s: None, calib=None)


def test_distillation_without_teacher_is_an_error(tiny_net):
    with pytest.raises(ValueError, match='needs a teacher'):
        Distiller(tiny_net, None, DistillConfig())
    with pytest.raises(ValueError, match="module 'neck' is not in the student"):
        Distiller(tiny_net, make_teacher(tiny_net), DistillConfig(features={'neck': 1.0}))


def test_teacher_is_frozen_dense_and_outside_the_student(tiny_net):
    x, _ = _task()
    mvq.core.prepare(tiny_net, mvq.MVQConfig(**CFG))
    teacher = make_teacher(tiny_net)
    assert not mvq.quantized_layers(teacher) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    tiny_net.eval()
    assert torch.allclose(teacher(x[:4]), tiny_net(x[:4]))
    keys = set(tiny_net.state_dict())
    dist = Distiller(tiny_net, teacher, DistillConfig(features={'conv': 0.5}))
    assert set(tiny_net.state_dict()) == keys  # nothing of the teacher is saved
    out = tiny_net(x[:4])
    terms = dist.losses(x[:4], out)
    assert terms['kd'].item() == pytest.approx(0.0, abs=1e-6)  # same function
    assert terms['feat/conv'].item() == pytest.approx(0.0, abs=1e-6)
    dist.close()


def test_kd_and_feature_losses():
    s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    p_t = torch.softmax(t / 2, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / 2, 1))).sum()
    assert kd_loss(s, t, 2.0).item() == pytest.approx(4 * kl.item(), rel=1e-5)
    dense = torch.randn(2, 5, 3, 3)
    assert kd_loss(dense, dense, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    a, b = torch.ones(2, 3), 2 * torch.ones(2, 3)
    assert feature_loss((a, [a]), (b, [b])).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match='tensors'):
        feature_loss((a,), (b, b))
