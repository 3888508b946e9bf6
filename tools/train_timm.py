#!/usr/bin/env python
"""Fine-tune an MVQ-compressed timm model with timm's own factories.

The model comes from ``timm.create_model`` (dense weights from ``--pretrained-file``, never a
download), is compressed with :func:`mvq_plugin.integrations.timm.compress_model`, and is fine-tuned
with timm's ``create_dataset``/``create_loader``, ``create_optimizer_v2`` (codewords in a
group without weight decay) and ``create_scheduler_v2``. The run writes to ``--output``:

* ``model.mvq``: the compact artifact (``mvq_plugin.save``); load it into a fresh model with
  ``mvq_plugin.integrations.timm.load_model(MODEL, PATH, **timm_kwargs)``;
* ``report.json``: arguments, the plan (every layer, with the reason for each dense one),
  per-layer clustering error, compression stats (bits by part, ratio, MACs), per-step losses,
  per-epoch summaries and accuracies (dense, after clustering, after fine-tuning with the
  codebooks rounded to their storage precision, i.e. what the artifact computes);
* ``train.log``.

Examples::

    # Fashion-MNIST (real IDX files, $MVQ_DATA_DIR/fashion_mnist or data/fashion_mnist)
    python tools/train_timm.py --model resnet18 --data fashion_mnist --img-size 32 \\
        --epochs 2 --subset 5000 --k 256 --d 8 --nm 2:8 --output work_dirs/timm_r18_fmnist

    # an ImageFolder tree with train/ and val/ sub-folders, from a local dense checkpoint
    python tools/train_timm.py --model resnet50 --data /data/imagenette \\
        --pretrained-file resnet50_a1_in1k.safetensors --pretrained-num-classes 1000 \\
        --classifier-k 1024 --classifier-d 4 --classifier-nm 1:4 --epochs 5 \\
        --output work_dirs/timm_r50
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
from timm.data import create_dataset, create_loader, resolve_data_config  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402
from timm.scheduler import create_scheduler_v2  # noqa: E402

import mvq_plugin  # noqa: E402
from mvq_plugin.core import compression_stats, set_codebook_quant  # noqa: E402
from mvq_plugin.integrations import timm as mvq_timm  # noqa: E402

logger = logging.getLogger('mvq_plugin')


class ImageTensorDataset(Dataset):
    """uint8 ``(N, 1, H, W)`` images as PIL images, for timm's transforms.

    ``create_loader`` sets :attr:`transform`, as it does on timm's own datasets.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mode: str = 'RGB') -> None:
        self.images, self.labels, self.mode = images, labels, mode
        self.transform = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.images[index, 0].numpy(), mode='L')
        if self.mode != 'L':
            img = img.convert(self.mode)
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])


class SubsetDataset(Dataset):
    """A fixed subset of a timm dataset that forwards ``transform`` to it."""

    def __init__(self, base: Dataset, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    @property
    def transform(self):
        return self.base.transform

    @transform.setter
    def transform(self, value) -> None:
        self.base.transform = value

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.base[self.indices[index]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('model')
    g.add_argument('--model', default='resnet18', help='timm architecture name')
    g.add_argument('--pretrained-file', default=None,
                   help='local dense checkpoint loaded by timm (never a download)')
    g.add_argument('--pretrained-num-classes', type=int, default=None,
                   help="classes of the checkpoint's classifier when it differs from the "
                        "timm pretrained_cfg (e.g. a checkpoint fine-tuned on 10 classes)")
    g.add_argument('--num-classes', type=int, default=None,
                   help='default: 10 for Fashion-MNIST, the folder count for ImageFolder')
    g.add_argument('--in-chans', type=int, default=3, choices=(1, 3))
    g.add_argument('--img-size', type=int, default=None,
                   help='input size (default: 32 for Fashion-MNIST, else the model default)')
    g.add_argument('--model-kwargs', default='{}',
                   help='JSON dict of extra timm.create_model arguments, e.g. '
                        '\'{"img_size": 32, "drop_path_rate": 0.1}\'')
    g = p.add_argument_group('MVQ')
    g.add_argument('--mvq-config', default=None,
                   help='JSON dict (or a .json file) of MVQConfig fields; the flags below win')
    g.add_argument('--k', type=int, default=None, help='codewords (num_codewords)')
    g.add_argument('--d', type=int, default=None, help='sub-vector length (block_size)')
    g.add_argument('--nm', default=None, help="N:M pattern such as 2:8 ('8:8': no pruning)")
    g.add_argument('--method', default=None, choices=('mvq', 'vq', 'prune_vq'))
    g.add_argument('--vector-axis', default=None, choices=('in_channel', 'spatial'))
    g.add_argument('--kmeans-iters', type=int, default=None)
    g.add_argument('--codebook-bits', type=int, default=None, choices=(8, 16, 32))
    g.add_argument('--exclude', action='append', default=[],
                   help='regex of module names to keep dense (repeatable)')
    g.add_argument('--classifier-k', type=int, default=None, help="classifier's own k")
    g.add_argument('--classifier-d', type=int, default=None, help="classifier's own d")
    g.add_argument('--classifier-nm', default=None, help="classifier's own N:M, e.g. 1:4")
    g.add_argument('--classifier-dense', action='store_true', help='keep the classifier dense')
    g.add_argument('--importance', default=None, choices=('magnitude', 'activation'),
                   help="N:M mask score; 'activation' needs --calib-batches")
    g.add_argument('--kmeans-weights', default=None, choices=('uniform', 'activation'),
                   help="'activation': k-means weighted by input-channel second moments")
    g = p.add_argument_group('recipe (any of these runs the core MVQ recipe loop: SGD with '
                             'cosine decay per phase instead of the timm optimizer/scheduler)')
    g.add_argument('--sparse-epochs', type=int, default=0,
                   help='of --epochs, N:M-sparse fine-tuning of the kept dense weights '
                        'before clustering')
    g.add_argument('--distill', action='store_true',
                   help='self-distillation from the dense model (logit KD)')
    g.add_argument('--kd-temperature', type=float, default=1.0)
    g.add_argument('--distill-feature', action='append', default=[], metavar='MODULE=WEIGHT',
                   help='feature mimicking at a module output (repeatable)')
    g.add_argument('--calib-batches', type=int, default=0,
                   help='train batches for the data-aware statistics')
    g = p.add_argument_group('data')
    g.add_argument('--data', default='fashion_mnist',
                   help="'fashion_mnist' or an ImageFolder root with train/ and val/ folders")
    g.add_argument('--data-dir', default=None,
                   help='Fashion-MNIST directory (default: $MVQ_DATA_DIR/fashion_mnist, '
                        'data/fashion_mnist)')
    g.add_argument('--subset', type=int, default=None, help='train on N fixed random images')
    g.add_argument('--val-subset', type=int, default=None, help='evaluate on N images')
    g.add_argument('--no-aug', action='store_true', help='no training augmentation')
    g.add_argument('--workers', type=int, default=0)
    g = p.add_argument_group('training')
    g.add_argument('--epochs', type=int, default=1)
    g.add_argument('--steps', type=int, default=None, help='at most this many steps per epoch')
    g.add_argument('--batch-size', type=int, default=64)
    g.add_argument('--opt', default='sgd', help='timm optimizer name')
    g.add_argument('--lr', type=float, default=0.01)
    g.add_argument('--momentum', type=float, default=0.9)
    g.add_argument('--weight-decay', type=float, default=1e-4,
                   help='weight decay of non-codebook weights (codewords get none)')
    g.add_argument('--sched', default='cosine', help="timm scheduler name, or 'none'")
    g.add_argument('--warmup-epochs', type=int, default=0)
    g.add_argument('--min-lr', type=float, default=0.0)
    g.add_argument('--smoothing', type=float, default=0.0, help='label smoothing')
    g.add_argument('--clip-grad', type=float, default=None)
    g.add_argument('--codebook-quant-epochs', '--quant-epochs', dest='codebook_quant_epochs',
                   type=int, default=0,
                   help='last N epochs with codebook fake quantization (STE)')
    g.add_argument('--seed', type=int, default=0)
    g.add_argument('--device', default='auto', help="'auto', 'cpu' or 'cuda[:i]'")
    g.add_argument('--log-interval', type=int, default=10)
    p.add_argument('--output', default='work_dirs/train_timm', help='output directory')
    return p.parse_args(argv)


def mvq_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | bool | None]:
    """The MVQConfig fields and the classifier rule from the flags."""
    fields: dict[str, Any] = {}
    if args.mvq_config:
        text = args.mvq_config
        if text.endswith('.json') and Path(text).is_file():
            text = Path(text).read_text()
        fields.update(json.loads(text))
    for flag, key in (('k', 'num_codewords'), ('d', 'block_size'), ('method', 'method'),
                      ('vector_axis', 'vector_axis'), ('kmeans_iters', 'kmeans_iters'),
                      ('codebook_bits', 'codebook_bits'), ('importance', 'importance'),
                      ('kmeans_weights', 'kmeans_weights')):
        if getattr(args, flag) is not None:
            fields[key] = getattr(args, flag)
    if args.nm:
        fields.update(_nm('--nm', args.nm))
    if args.exclude:
        fields['exclude'] = [*fields.get('exclude', []), *args.exclude]
    fields['seed'] = fields.get('seed', args.seed)
    classifier: dict[str, Any] | bool | None = None
    if args.classifier_dense:
        classifier = False
    elif any(v is not None for v in (args.classifier_k, args.classifier_d, args.classifier_nm)):
        classifier = {}
        if args.classifier_k is not None:
            classifier['num_codewords'] = args.classifier_k
        if args.classifier_d is not None:
            classifier['block_size'] = args.classifier_d
        if args.classifier_nm is not None:
            classifier.update(_nm('--classifier-nm', args.classifier_nm))
    return fields, classifier


def _nm(flag: str, text: str) -> dict[str, int]:
    try:
        n, m = (int(v) for v in text.split(':'))
    except ValueError:
        raise SystemExit(f'{flag} {text!r} must look like N:M, e.g. 2:8') from None
    return dict(n=n, m=m)


def build_datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset, int]:
    """Train and validation datasets and the class count."""
    gen = torch.Generator().manual_seed(args.seed)
    if args.data == 'fashion_mnist':
        from mvq_plugin.data import load_fashion_mnist

        mode = 'L' if args.in_chans == 1 else 'RGB'
        sets = []
        for split, limit in (('train', args.subset), ('test', args.val_subset)):
            images, labels = load_fashion_mnist(split, args.data_dir)
            if limit is not None and limit < len(labels):
                idx = torch.randperm(len(labels), generator=gen)[:limit]
                images, labels = images[idx], labels[idx]
            sets.append(ImageTensorDataset(images, labels, mode))
        return sets[0], sets[1], 10
    root = Path(args.data)
    if not root.is_dir():
        raise SystemExit(f"--data {args.data!r} is neither 'fashion_mnist' nor a directory")
    mode = 'L' if args.in_chans == 1 else 'RGB'
    train = create_dataset('', root=str(root), split='train', is_training=True,
                           input_img_mode=mode)
    val = create_dataset('', root=str(root), split='validation', input_img_mode=mode)
    reader = getattr(train, 'reader', None)
    num_classes = len(getattr(reader, 'class_to_idx', {}) or {}) or None
    out = []
    for ds, limit in ((train, args.subset), (val, args.val_subset)):
        if limit is not None and limit < len(ds):
            ds = SubsetDataset(ds, torch.randperm(len(ds), generator=gen)[:limit].tolist())
        out.append(ds)
    return out[0], out[1], num_classes


def evaluate(model: nn.Module, loader, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy."""
    was_training = model.training
    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction='sum'))
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
    model.train(was_training)
    return dict(top1=correct / max(total, 1), loss=loss_sum / max(total, 1), images=total)


def train_timm_schedule(args, model, fields, classifier, train_loader, val_loader, device):
    """Compress at once, then fine-tune with timm's optimizer and scheduler factories."""
    def progress(i: int, total: int, name: str) -> None:
        if name:
            logger.info('clustering %d/%d %s', i + 1, total, name)

    t0 = time.perf_counter()
    mvq_timm.compress_model(model, fields, classifier=classifier, progress=progress)
    seconds_compress = time.perf_counter() - t0
    logger.info('plan:\n%s', model.mvq_plan)
    acc_clustered = evaluate(model, val_loader, device)
    logger.info('after clustering: top1 %.4f', acc_clustered['top1'])

    optimizer = create_optimizer_v2(
        model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
        momentum=args.momentum,
        param_group_fn=lambda m: mvq_timm.param_groups(m, args.weight_decay))
    steps_per_epoch = len(train_loader) if args.steps is None else min(args.steps,
                                                                       len(train_loader))
    scheduler = None
    if args.sched != 'none':
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=args.sched, num_epochs=args.epochs,
            warmup_epochs=args.warmup_epochs, min_lr=args.min_lr, step_on_epochs=False,
            updates_per_epoch=steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.smoothing)

    losses: list[float] = []
    epochs: list[dict[str, Any]] = []
    step = 0
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        quant = epoch >= args.epochs - args.codebook_quant_epochs
        set_codebook_quant(model, quant)
        model.train()
        epoch_losses = []
        for i, (x, y) in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x), y)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f'loss is {value} at step {step}')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            optimizer.step()
            step += 1
            if scheduler is not None:
                scheduler.step_update(num_updates=step)
            losses.append(value)
            epoch_losses.append(value)
            if step % args.log_interval == 0 or i + 1 == steps_per_epoch:
                logger.info('epoch %d step %d/%d loss %.4f lr %.3g', epoch, i + 1,
                            steps_per_epoch, value, optimizer.param_groups[0]['lr'])
        if scheduler is not None:
            scheduler.step(epoch + 1)
        val = evaluate(model, val_loader, device)
        epochs.append(dict(epoch=epoch, steps=len(epoch_losses), codebook_quant=quant,
                           train_loss=sum(epoch_losses) / len(epoch_losses), val=val))
        logger.info('epoch %d: train loss %.4f, val top1 %.4f', epoch, epochs[-1]['train_loss'],
                    val['top1'])
    seconds_train = time.perf_counter() - t0
    return acc_clustered, losses, epochs, seconds_compress, seconds_train



def uses_recipe(args: argparse.Namespace) -> bool:
    """Whether a recipe flag asks for the core recipe loop."""
    return bool(args.sparse_epochs or args.distill or args.distill_feature or args.calib_batches)


def train_recipe(args, model, fields, classifier, train_loader, val_loader, device):
    """The core MVQ recipe: sparse phase, clustering, codebook phase, on the same budget."""
    from mvq_plugin.core.recipe import MVQRecipe

    steps = len(train_loader) if args.steps is None else min(args.steps, len(train_loader))
    features = {}
    for item in args.distill_feature:
        name, _, weight = item.partition('=')
        try:
            features[name] = float(weight)
        except ValueError:
            raise SystemExit(f'--distill-feature {item!r}: expected MODULE=WEIGHT') from None
    distill = (dict(temperature=args.kd_temperature, features=features,
                    logits_weight=1.0 if args.distill else 0.0)
               if args.distill or features else None)
    try:
        recipe = MVQRecipe(iters=args.epochs * steps, sparse_iters=args.sparse_epochs * steps,
                           quant_iters=args.codebook_quant_epochs * steps,
                           lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                           distill=distill, calib_batches=args.calib_batches,
                           log_every=args.log_interval)
    except ValueError as err:
        raise SystemExit(f'recipe flags: {err}') from None
    criterion = nn.CrossEntropyLoss(label_smoothing=args.smoothing)
    state: dict[str, Any] = dict(it=None)

    def batches(step: int):
        if step % steps == 0 or state['it'] is None:
            state['it'] = iter(train_loader)
        x, y = next(state['it'])
        return x.to(device), y.to(device)

    def calib():
        for x, _ in train_loader:
            yield x.to(device)

    t0 = time.perf_counter()
    result = mvq_timm.run_recipe(model, fields, recipe, batches, classifier=classifier,
                                 loss_fn=criterion, calib=calib(),
                                 evaluate=lambda m: evaluate(m, val_loader, device)['top1'])
    logger.info('plan:\n%s', model.mvq_plan)
    logger.info('recipe top-1 by stage: %s', result.top1)
    acc_clustered = dict(top1=result.top1.get('clustered'), stages=result.top1)
    seconds = result.seconds
    return (acc_clustered, result.losses, [], seconds.get('cluster', 0.0),
            time.perf_counter() - t0 - seconds.get('cluster', 0.0))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the fine-tune; returns the report that is also written to ``report.json``."""
    args = parse_args(argv)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(out_dir / 'train.log', 'w')]
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                        handlers=handlers, force=True)
    torch.manual_seed(args.seed)
    if args.device == 'auto':
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    else:
        device = torch.device(args.device)
    t_start = time.perf_counter()

    train_set, val_set, found_classes = build_datasets(args)
    num_classes = args.num_classes or found_classes
    if not num_classes:
        raise SystemExit('could not infer the class count; pass --num-classes')
    timm_kwargs: dict[str, Any] = dict(num_classes=num_classes, in_chans=args.in_chans,
                                       **json.loads(args.model_kwargs))
    if args.pretrained_num_classes is not None:
        timm_kwargs['pretrained_cfg_overlay'] = dict(num_classes=args.pretrained_num_classes)
    model = mvq_timm.create_dense_model(args.model, args.pretrained_file, **timm_kwargs)
    model.to(device)

    data_cfg = resolve_data_config(model=model)
    if args.img_size is not None or args.data == 'fashion_mnist':
        size = args.img_size or 32
        data_cfg['input_size'] = (args.in_chans, size, size)
    if args.in_chans == 1 and len(data_cfg['mean']) != 1:
        data_cfg['mean'] = (sum(data_cfg['mean']) / len(data_cfg['mean']),)
        data_cfg['std'] = (sum(data_cfg['std']) / len(data_cfg['std']),)
    logger.info('data config: %s', data_cfg)
    loader_kwargs = dict(input_size=data_cfg['input_size'], mean=data_cfg['mean'],
                         std=data_cfg['std'], interpolation=data_cfg['interpolation'],
                         num_workers=args.workers, device=device, use_prefetcher=False,
                         persistent_workers=False)
    train_loader = create_loader(train_set, batch_size=args.batch_size, is_training=True,
                                 no_aug=args.no_aug, **loader_kwargs)
    val_loader = create_loader(val_set, batch_size=args.batch_size, is_training=False,
                               crop_pct=data_cfg['crop_pct'], **loader_kwargs)
    if len(train_loader) == 0:
        raise SystemExit(f'no full training batch: {len(train_set)} images < '
                         f'--batch-size {args.batch_size}')

    acc_dense = evaluate(model, val_loader, device) if args.pretrained_file else None
    fields, classifier = mvq_settings(args)

    if uses_recipe(args):
        acc_clustered, losses, epochs, seconds_compress, seconds_train = train_recipe(
            args, model, fields, classifier, train_loader, val_loader, device)
    else:
        acc_clustered, losses, epochs, seconds_compress, seconds_train = train_timm_schedule(
            args, model, fields, classifier, train_loader, val_loader, device)
    example = torch.zeros(1, *data_cfg['input_size'], device=device)

    # What the artifact computes: codebooks rounded to their storage precision.
    set_codebook_quant(model, True)
    acc_final = evaluate(model, val_loader, device)
    artifact = out_dir / 'model.mvq'
    mvq_plugin.save(model, artifact)
    stats = compression_stats(model, example)
    logger.info('compression:\n%s', stats)
    logger.info('final (codebooks as stored): top1 %.4f; artifact %s (%d bytes)',
                acc_final['top1'], artifact, artifact.stat().st_size)

    plan = model.mvq_plan
    report = dict(
        args=vars(args), versions=dict(timm=timm.__version__, torch=torch.__version__,
                                       mvq_plugin=mvq_plugin.__version__),
        model=args.model, timm_kwargs=timm_kwargs, data_config=data_cfg,
        train_images=len(train_set), val_images=len(val_set),
        mvq_config=model.mvq_config.to_dict(),
        plan=dict(layers=plan.records(), compressed=len(plan.compressed),
                  skipped=len(plan.skipped)),
        clustering=model.mvq_report.records(), compression=stats.to_dict(),
        losses=losses, epochs=epochs,
        accuracy=dict(dense=acc_dense, clustered=acc_clustered, final=acc_final),
        artifact=dict(path=str(artifact), bytes=artifact.stat().st_size),
        seconds=dict(compress=seconds_compress, train=seconds_train,
                     total=time.perf_counter() - t_start),
    )
    (out_dir / 'report.json').write_text(json.dumps(report, indent=2, default=str))
    logger.info('report: %s', out_dir / 'report.json')
    return report


if __name__ == '__main__':
    main()
