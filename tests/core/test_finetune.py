"""Plain-PyTorch fine-tuning helpers: trainable selection, BN re-estimation, distillation."""
import copy

import pytest
import torch
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.core.finetune import (
    distill,
    evaluate,
    kl_per_image,
    recalibrate_bn,
    set_trainable,
)

CFG = mvq.MVQConfig(num_codewords=16, kmeans_iters=3, kmeans_init='random')


def _compressed(model: nn.Module) -> nn.Module:
    mvq.compress(model, CFG)
    return model


def test_set_trainable_selects_codebooks_bn_and_biases(tiny_net):
    model = _compressed(tiny_net)
    count = set_trainable(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    books = {f'{n}.parametrizations.weight.0.codebook' for n in mvq.quantized_layers(model)}
    assert books <= trainable
    assert {'bn.weight', 'bn.bias', 'stem.bias', 'fc.bias'} <= trainable
    assert 'stem.weight' not in trainable and 'dw.weight' not in trainable
    assert not any(n.endswith('.original') for n in trainable)
    assert count == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_recalibrate_bn_is_the_plain_average_of_the_batches(tiny_net):
    model = _compressed(tiny_net)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 3, 8, 8, generator=g) * 3 + 1 for _ in range(3)]
    feats = []
    hook = model.bn.register_forward_hook(lambda m, i, o: feats.append(i[0].detach()))
    assert recalibrate_bn(model, batches) == 3
    hook.remove()
    means = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, means, rtol=1e-5, atol=1e-6)
    assert not model.training and model.bn.momentum == 0.1
    with pytest.raises(ValueError, match='no calibration batches'):
        recalibrate_bn(model, [])


def test_kl_per_image_matches_the_definition():
    t, s = torch.randn(5, 7), torch.randn(5, 7)
    expected = nn.functional.kl_div(s.log_softmax(1), t.log_softmax(1), log_target=True,
                                    reduction='none').sum(1)
    torch.testing.assert_close(kl_per_image(t, s), expected)
    assert torch.allclose(kl_per_image(t, t), torch.zeros(5), atol=1e-6)


def test_distill_lowers_the_kl_to_the_teacher_and_refreezes(tiny_net):
    teacher = tiny_net.eval()
    student = _compressed(copy.deepcopy(teacher))
    g = torch.Generator().manual_seed(2)
    xs = [torch.randn(8, 3, 8, 8, generator=g) for _ in range(4)]
    with torch.no_grad():
        ts = [teacher(x) for x in xs]
    losses = distill(student, lambda step: (xs[step % 4], ts[step % 4]), steps=40, lr=0.01)
    assert len(losses) == 40
    assert sum(losses[-4:]) < 0.7 * sum(losses[:4])
    assert not any(p.requires_grad for p in student.parameters())
    with pytest.raises(ValueError, match='steps=0'):
        distill(student, lambda step: (xs[0], ts[0]), steps=0, lr=0.01)


def test_evaluate_counts_top1():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    assert evaluate(model, [(x[:2], y[:2]), (x[2:], y[2:])]) == 75.0
    with pytest.raises(ValueError, match='no labelled batches'):
        evaluate(model, [])
