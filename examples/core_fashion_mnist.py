"""MVQ end to end on real data with the plain-PyTorch core, no framework: the whole flow.

1. trains a small ResNet on the real Fashion-MNIST (or reuses the dense checkpoint of an
   earlier run in the same work dir);
2. compresses it with the paper's MVQ (``mvq.MVQConfig()``: sub-vectors of d=16 output
   channels, 4:16 pruning; k=256 here, the small layers have too few sub-vectors for 512);
3. fine-tunes the codebooks (int8 fake quantization in the last 30 % of the steps);
4. saves the ``.mvq`` artifact, loads it into a freshly built model and checks that it
   computes exactly what the fine-tuned model computes;
5. bakes the loaded model into plain layers (``mvq.to_dense``) and compares again;
6. prints dense vs compressed test accuracy, the compression ratio, the bits and the MACs, and
   writes ``summary.json`` and the artifact into its own work dir.

    python examples/core_fashion_mnist.py                      # ~10 min on 2 cores
    python examples/core_fashion_mnist.py --fast               # ~1 min: a subset, few steps

``--fast`` (what the example's test runs) trains on 4,096 images for 60 steps, fine-tunes for
30 with k=16: it shows every step works, not accuracy.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import mvq_plugin as mvq
from mvq_plugin.data import load_fashion_mnist

logger = logging.getLogger('mvq_plugin.demo')
MEAN, STD = 72.94, 90.02  # Fashion-MNIST pixel statistics (0-255)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, projection shortcut when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class SmallResNet(nn.Module):
    """A ResNet for 28x28 grey images: 3x3 stem, three stride-2 stages, GAP, FC."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*[BasicBlock(widths[i], widths[i + 1], 2)
                                      for i in range(len(widths) - 1)])
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() - MEAN) / STD


def batches(images, labels, batch_size, gen=None, augment=False):
    order = torch.randperm(len(labels), generator=gen) if gen is not None else \
        torch.arange(len(labels))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        x = normalise(images[idx])
        if augment:  # random horizontal flip
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x[flip] = x[flip].flip(-1)
        yield x, labels[idx]


@torch.no_grad()
def evaluate(model: nn.Module, images, labels, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for x, y in batches(images, labels, batch_size):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / len(labels)


def train(model, images, labels, *, steps, lr, batch_size, seed, param_groups=None,
          on_step=None, log_every=100):
    gen = torch.Generator().manual_seed(seed)
    groups = param_groups if param_groups is not None else model.parameters()
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.15)
    model.train()
    step, start = 0, time.perf_counter()
    while step < steps:
        for x, y in batches(images, labels, batch_size, gen, augment=True):
            if on_step is not None:
                on_step(step)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % log_every == 0 or step == steps:
                logger.info('step %d/%d loss %.4f (%.1fs)', step, steps, loss.item(),
                            time.perf_counter() - start)
            if step == steps:
                break


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/example_core')
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--dense-steps', type=int, default=700,
                        help='dense training steps (batch 128; 469 = one epoch)')
    parser.add_argument('--finetune-steps', type=int, default=300)
    parser.add_argument('--k', type=int, default=256)
    parser.add_argument('--method', default='mvq', choices=['mvq', 'vq', 'prune_vq'])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--fast', action='store_true',
                        help='4,096 training images, 60 + 30 steps, k=16 (a smoke run)')
    args = parser.parse_args(argv)
    if args.fast:
        args.dense_steps, args.finetune_steps, args.k = 60, 30, 16
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    train_x, train_y = load_fashion_mnist('train', args.data_root)
    test_x, test_y = load_fashion_mnist('test', args.data_root)
    if args.fast:
        train_x, train_y, test_x, test_y = train_x[:4096], train_y[:4096], test_x[:1000], \
            test_y[:1000]
    logger.info('Fashion-MNIST: %d train, %d test images', len(train_y), len(test_y))

    model = SmallResNet()
    tag = '_fast' if args.fast else ''
    dense_ckpt = work / f'dense_seed{args.seed}_steps{args.dense_steps}{tag}.pth'
    t0 = time.perf_counter()
    if dense_ckpt.exists():
        model.load_state_dict(torch.load(dense_ckpt, weights_only=True))
        logger.info('reusing dense checkpoint %s', dense_ckpt)
    else:
        train(model, train_x, train_y, steps=args.dense_steps, lr=0.1, batch_size=128,
              seed=args.seed)
        tmp = dense_ckpt.with_suffix('.tmp')
        torch.save(model.state_dict(), tmp)
        tmp.rename(dense_ckpt)
    dense_acc = evaluate(model, test_x, test_y)
    t_dense = time.perf_counter() - t0
    logger.info('dense top-1 %.4f', dense_acc)

    # The paper's MVQ (MVQConfig's defaults) at k codewords.
    cfg = mvq.MVQConfig(method=args.method, num_codewords=args.k, seed=args.seed,
                        kmeans_iters=30)
    logger.info('plan:\n%s', mvq.plan(model, cfg))
    t0 = time.perf_counter()
    report = mvq.compress(model, cfg)
    t_compress = time.perf_counter() - t0
    clustered_acc = evaluate(model, test_x, test_y)
    logger.info('after clustering (no fine-tuning) top-1 %.4f', clustered_acc)

    quant_from = int(args.finetune_steps * 0.7)
    t0 = time.perf_counter()
    train(model, train_x, train_y, steps=args.finetune_steps, lr=0.01, batch_size=128,
          seed=args.seed + 1, param_groups=mvq.codebook_param_groups(model, 5e-4),
          on_step=lambda s: s == quant_from and mvq.set_codebook_quant(model, True))
    t_finetune = time.perf_counter() - t0
    mvq_acc = evaluate(model, test_x, test_y)
    stats = mvq.compression_stats(model, normalise(test_x[:1]))

    # Save, load into a freshly built model, bake to plain layers: the same numbers each time.
    artifact = work / 'model.mvq'
    info = mvq.save(model, artifact)
    fresh = SmallResNet()
    mvq.load(fresh, artifact)
    x = normalise(test_x[:256])
    with torch.no_grad():
        out_trained, out_loaded = model.eval()(x), fresh.eval()(x)
        loaded_acc = evaluate(fresh, test_x, test_y)
        mvq.to_dense(fresh)
        out_dense = fresh(x)
        dense_acc_baked = evaluate(fresh, test_x, test_y)
    loaded_diff = float((out_loaded - out_trained).abs().max())
    baked_diff = float((out_dense - out_loaded).abs().max())

    summary = dict(
        method=args.method, k=args.k, d=cfg.block_size, nm=f'{cfg.n}:{cfg.m}', fast=args.fast,
        dense_top1=dense_acc, clustered_top1=clustered_acc, mvq_top1=mvq_acc,
        loaded_top1=loaded_acc, to_dense_top1=dense_acc_baked,
        loaded_max_abs_diff=loaded_diff, to_dense_max_abs_diff=baked_diff,
        compression_ratio=stats.compression_ratio, bits=stats.bits,
        bits_by_part=dict(indices=stats.bits_indices, masks=stats.bits_masks,
                          codebooks=stats.bits_codebooks, uncompressed=stats.bits_uncompressed),
        dense_bytes_fp32=4 * stats.params_total, compressed_bytes=stats.bytes,
        artifact=str(artifact), artifact_bytes=info.total_bytes,
        macs_dense=stats.macs_dense, macs_effective=stats.macs_effective,
        layers_compressed=stats.num_compressed_layers,
        seconds=dict(dense=t_dense, compress=t_compress, finetune=t_finetune),
        per_layer=report.records())
    (work / 'summary.json').write_text(json.dumps(summary, indent=2))
    lines = [
        '',
        '=== MVQ with the core API (Fashion-MNIST, SmallResNet) ===',
        f'dense top-1              : {dense_acc:.2%}',
        f'MVQ top-1, no fine-tune  : {clustered_acc:.2%}',
        f'MVQ top-1, fine-tuned    : {mvq_acc:.2%}  ({args.method}, k={args.k}, '
        f'd={cfg.block_size} {cfg.vector_axis}, N:M={cfg.n}:{cfg.m}, int8 codebooks)',
        f'artifact                 : {artifact} ({info.total_bytes:,} B); loaded into a fresh '
        f'model: top-1 {loaded_acc:.2%}, max |diff| {loaded_diff:.2g}',
        f'to_dense                 : top-1 {dense_acc_baked:.2%}, max |diff| {baked_diff:.2g}',
        f'compression ratio        : {stats.compression_ratio:.1f}x '
        f'({4 * stats.params_total:,} B fp32 -> {stats.bytes:,.0f} B)',
        f'bits                     : {stats.bits:,} = indices {stats.bits_indices:,} + masks '
        f'{stats.bits_masks:,} + codebooks {stats.bits_codebooks:,} + uncompressed '
        f'{stats.bits_uncompressed:,}',
        f'MACs                     : {stats.macs_dense:,} dense -> {stats.macs_effective:,} '
        f'effective ({stats.macs_effective / stats.macs_dense:.0%})',
        f'time (s)                 : dense {t_dense:.0f}, compress {t_compress:.1f}, '
        f'fine-tune {t_finetune:.0f}',
        f'summary                  : {work / "summary.json"}',
    ]
    logger.info('\n'.join(lines))
    return summary


if __name__ == '__main__':
    main()
