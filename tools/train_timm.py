#!/usr/bin/env python
"""Compress a timm model with MVQ and fine-tune it with timm's optimizer and scheduler.

The MVQ schedule (optional sparse epochs, clustering, codebook epochs, int8 codebooks, BN
re-estimation, self-distillation) is ``mvq_plugin.core.MVQSchedule``; the loop is
``mvq_plugin.integrations.timm_train.train`` with ``create_optimizer_v2`` and
``create_scheduler_v2`` over the whole run. Writes ``model.mvq``, ``report.json`` and
``train.log`` to ``--output``. Example::

    python tools/train_timm.py --model resnet18 --data fashion_mnist --img-size 32 \\
        --epochs 2 --sparse-epochs 1 --subset 5000 --k 256 --d 8 --nm 2:8 --distill
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

import mvq_plugin
from mvq_plugin.core import MVQSchedule, compression_stats
from mvq_plugin.core.config import parse_nm
from mvq_plugin.integrations import timm as mvq_timm
from mvq_plugin.integrations.timm_data import build_datasets, make_loaders
from mvq_plugin.integrations.timm_train import evaluate, train

logger = logging.getLogger('mvq_plugin')
#: ``--flag``: (MVQConfig field, type, choices); unset flags leave the config's value.
FIELDS = dict(k=('num_codewords', int, None), d=('block_size', int, None),
              method=('method', str, ('mvq', 'vq', 'prune_vq')),
              vector_axis=('vector_axis', str, ('out_channel', 'in_channel', 'spatial')),
              kmeans_iters=('kmeans_iters', int, None), codebook_bits=('codebook_bits', int, None),
              importance=('importance', str, ('magnitude', 'activation')),
              kmeans_weights=('kmeans_weights', str, ('uniform', 'activation')))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a('--model', default='resnet18', help='timm architecture name')
    a('--pretrained-file', help='local dense checkpoint loaded by timm (never a download)')
    a('--pretrained-num-classes', type=int, help="classes of the checkpoint's classifier")
    a('--num-classes', type=int, help='default: 10 (Fashion-MNIST) or the folder count')
    a('--in-chans', type=int, default=3, choices=(1, 3))
    a('--img-size', type=int, help='default: 32 for Fashion-MNIST, else the model default')
    a('--model-kwargs', default='{}', help='JSON dict of extra timm.create_model arguments')
    a('--mvq-config', help='JSON dict (or .json file) of MVQConfig fields; the flags win')
    for flag, (key, kind, choices) in FIELDS.items():
        a('--' + flag.replace('_', '-'), type=kind, choices=choices, help=f'MVQConfig.{key}')
    a('--nm', type=parse_nm, default=argparse.SUPPRESS, help="N:M such as 2:8, or 'none'")
    a('--exclude', action='append', default=[], help='regex of layers kept dense')
    a('--classifier-k', type=int)
    a('--classifier-d', type=int)
    a('--classifier-nm', type=parse_nm, default=argparse.SUPPRESS, help='e.g. 1:4')
    a('--classifier-dense', action='store_true')
    a('--sparse-epochs', type=int, default=0, help='of --epochs, N:M-sparse training first')
    a('--sparse-method', default='fixed', choices=('fixed', 'srste'), help='sparse phase')
    a('--codebook-quant-epochs', type=int, default=0, help='last epochs with int8 codebooks')
    a('--distill', action='store_true', help='logit KD from the dense model')
    a('--kd-temperature', type=float, default=1.0)
    a('--distill-feature', action='append', default=[], metavar='MODULE=WEIGHT')
    a('--calib-batches', type=int, default=0, help='train batches for statistics/BN')
    a('--bn-recalib', action='store_true', help='re-estimate BN on the calibration batches')
    a('--data', default='fashion_mnist', help="'fashion_mnist' or an ImageFolder root")
    a('--data-dir', help='Fashion-MNIST directory')
    a('--subset', type=int, help='train on N fixed random images')
    a('--val-subset', type=int, help='evaluate on N images')
    a('--no-aug', action='store_true')
    a('--workers', type=int, default=0)
    a('--epochs', type=int, default=1)
    a('--steps', type=int, help='at most this many steps per epoch')
    a('--batch-size', type=int, default=64)
    a('--opt', default='sgd', help='timm optimizer name')
    a('--lr', type=float, default=0.01)
    a('--momentum', type=float, default=0.9)
    a('--weight-decay', type=float, default=1e-4, help='codewords get none')
    a('--sched', default='cosine', help="timm scheduler name, or 'none'")
    a('--warmup-epochs', type=int, default=0)
    a('--min-lr', type=float, default=0.0)
    a('--smoothing', type=float, default=0.0, help='label smoothing')
    a('--clip-grad', type=float)
    a('--seed', type=int, default=0)
    a('--device', default='auto', help="'auto', 'cpu' or 'cuda[:i]'")
    a('--log-interval', type=int, default=10)
    a('--output', default='work_dirs/train_timm')
    return p.parse_args(argv)


def _nm(pattern: tuple[int, int] | None) -> dict[str, Any]:
    return dict(n=pattern[0], m=pattern[1]) if pattern else dict(method='vq')


def mvq_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The MVQConfig fields (file < flags) and the classifier rule."""
    text = args.mvq_config or '{}'
    fields = json.loads(Path(text).read_text() if text.endswith('.json') else text)
    fields.update({key: getattr(args, flag) for flag, (key, _, _) in FIELDS.items()
                   if getattr(args, flag) is not None})
    fields.update(_nm(args.nm) if 'nm' in vars(args) else {})
    fields['exclude'] = [*fields.get('exclude', []), *args.exclude]
    fields.setdefault('seed', args.seed)
    own = {k: v for k, v in (('num_codewords', args.classifier_k),
                             ('block_size', args.classifier_d)) if v is not None}
    own.update(_nm(args.classifier_nm) if 'classifier_nm' in vars(args) else {})
    return fields, (False if args.classifier_dense else own or None)


def distill_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    features = {}
    for item in args.distill_feature:
        name, _, weight = item.partition('=')
        try:
            features[name] = float(weight)
        except ValueError:
            raise SystemExit(f'--distill-feature {item!r}: expected MODULE=WEIGHT') from None
    if not (args.distill or features):
        return None
    return dict(temperature=args.kd_temperature, features=features,
                logits_weight=1.0 if args.distill else 0.0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s',
                        handlers=[logging.StreamHandler(sys.stdout),
                                  logging.FileHandler(out / 'train.log', 'w')], force=True)
    torch.manual_seed(args.seed)
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu')
                          if args.device == 'auto' else args.device)
    t_start = time.perf_counter()
    try:
        train_set, val_set, found = build_datasets(
            args.data, in_chans=args.in_chans, subset=args.subset, val_subset=args.val_subset,
            seed=args.seed, data_dir=args.data_dir)
    except ValueError as err:
        raise SystemExit(f'--data: {err}') from None
    timm_kwargs = dict(num_classes=args.num_classes or found, in_chans=args.in_chans,
                       **json.loads(args.model_kwargs))
    if not timm_kwargs['num_classes']:
        raise SystemExit('could not infer the class count; pass --num-classes')
    if args.pretrained_num_classes is not None:
        timm_kwargs['pretrained_cfg_overlay'] = dict(num_classes=args.pretrained_num_classes)
    model = mvq_timm.create_dense_model(args.model, args.pretrained_file, **timm_kwargs)
    model.to(device)
    train_loader, val_loader, data_cfg = make_loaders(
        model, train_set, val_set, batch_size=args.batch_size, img_size=args.img_size,
        in_chans=args.in_chans, fashion_mnist=args.data == 'fashion_mnist',
        workers=args.workers, no_aug=args.no_aug, device=device)
    steps = min(args.steps or len(train_loader), len(train_loader))
    if steps == 0:
        raise SystemExit(f'no full training batch: {len(train_set)} images < --batch-size '
                         f'{args.batch_size}')
    if args.sparse_epochs > args.epochs:
        raise SystemExit(f'--sparse-epochs {args.sparse_epochs}: sparse_iters='
                         f'{args.sparse_epochs * steps} is longer than the whole run '
                         f'({args.epochs * steps} iterations)')
    acc_dense = evaluate(model, val_loader, device) if args.pretrained_file else None
    fields, classifier = mvq_settings(args)
    plan = mvq_timm.prepare_model(model, fields, classifier=classifier,
                                  train_dense=args.sparse_epochs > 0)
    logger.info('plan:\n%s', plan)
    quant = args.epochs - args.codebook_quant_epochs if args.codebook_quant_epochs else None
    try:
        schedule = MVQSchedule(
            model, sparse_iters=args.sparse_epochs * steps, sparse_method=args.sparse_method,
            codebook_quant_start=None if quant is None else quant * steps,
            calib=[x for (x, _), _ in zip(train_loader, range(args.calib_batches))]
            if args.calib_batches else None,
            distill=distill_settings(args), bn_recalib=args.bn_recalib,
            seed=model.mvq_config.seed)
    except ValueError as err:
        raise SystemExit(f'MVQ schedule: {err}') from None
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, momentum=args.momentum,
                                    weight_decay=args.weight_decay, param_group_fn=lambda m:
                                    mvq_timm.param_groups(m, args.weight_decay))
    scheduler = None if args.sched == 'none' else create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        min_lr=args.min_lr, step_on_epochs=False, updates_per_epoch=steps)[0]
    result = train(model, schedule, train_loader, optimizer, epochs=args.epochs,
                   steps_per_epoch=steps, scheduler=scheduler,
                   loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=args.smoothing),
                   clip_grad=args.clip_grad, evaluate=lambda m: evaluate(m, val_loader, device),
                   log_every=args.log_interval)
    model.mvq_report = schedule.report
    acc_final = evaluate(model, val_loader, device)  # the codebooks as stored
    mvq_plugin.save(model, out / 'model.mvq')
    stats = compression_stats(model, torch.zeros(1, *data_cfg['input_size'], device=device))
    logger.info('compression:\n%s\nfinal top-1 %.2f %%', stats, acc_final['top1'])
    report = dict(
        args=vars(args), versions=dict(timm=timm.__version__, torch=torch.__version__,
                                       mvq_plugin=mvq_plugin.__version__),
        model=args.model, timm_kwargs=timm_kwargs, data_config=data_cfg,
        train_images=len(train_set), val_images=len(val_set),
        mvq_config=model.mvq_config.to_dict(), events=result.events,
        plan=dict(layers=plan.records(), compressed=len(plan.compressed),
                  skipped=len(plan.skipped)),
        clustering=schedule.report.records(), compression=stats.to_dict(),
        losses=result.losses, epochs=result.epochs,
        accuracy=dict(dense=acc_dense, clustered=result.clustered, final=acc_final),
        artifact=dict(path=str(out / 'model.mvq'), bytes=(out / 'model.mvq').stat().st_size),
        seconds=dict(result.seconds, total=time.perf_counter() - t_start))
    (out / 'report.json').write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == '__main__':
    main()
