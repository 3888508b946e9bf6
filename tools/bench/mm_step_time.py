"""Training step time with MVQ vs the same config dense, side by side (OpenMMLab).

For each case the dense config and its MVQ config (codebook fine-tuning, int8 fake
quantization on) run the same number of iterations through ``tools/train.py`` on the same
data; the mean iteration time (mmengine's ``time`` field, first iterations dropped) is
compared as a ratio. The MVQ model's weights are ``mask * codebook[assignments]``, rebuilt on
every forward (``mvq_plugin.core.rebuild``); backward reaches the codewords.

Both runs start from the same function: the MVQ run clusters the upstream init, and the dense
run starts from that clustered model baked dense (``mvq_plugin.to_dense``). A detector's step
depends on its weights (the proposals its RPN keeps decide how many RoIs the box and mask
heads see), so a dense run from other weights would time different work. ``--rounds``
alternates dense and MVQ runs; the ratio reported is the median over rounds of each round's
MVQ / dense. ``--interleaved`` instead alternates single ``train_step`` s of the two models in
one process on the same batches (what mmengine's loop calls per iteration), the ratio of the
median step times: on a shared machine whose speed drifts by 10-20% between runs minutes
apart, this is the finer measurement.

* ResNet-18 (mmpretrain), Fashion-MNIST 28x28, batch 16 (the test size) and 128 (the demo;
  the demo's out_channel MVQ and, as ``resnet18_b128_in_channel``, the same settings with
  in-channel sub-vectors);
* ResNet-50 (mmpretrain, the same data), batch 16: the next model size;
* Mask R-CNN R50-FPN (mmdet), canvas set 128x128, batch 2 (the test size).

    python tools/bench/mm_step_time.py [--iters 30] [--rounds 2 | --interleaved] [--cases ...]
        [--out FILE.json]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

from common import (  # same folder (tools/bench/common.py)
    REPO,
    command_line,
    describe_machine,
    train_mm,
    write_json,
)

from mvq_plugin.integrations.mm.scalars import read_scalars
from mvq_plugin.integrations.mmcv_ops import exit_on_missing_ops, require_mmcv_ops

_RESNET = dict(dense='configs/demo/resnet18_fashion-mnist_dense.py',
               mvq='configs/demo/resnet18_fashion-mnist_mvq.py')
_DEPTH50 = ['backbone.depth=50', 'head.in_channels=2048']
CASES = {
    'resnet18_b16': dict(
        _RESNET, options=['train_dataloader.batch_size=16', 'train_dataloader.num_workers=0']),
    'resnet18_b128': dict(
        _RESNET, options=['train_dataloader.batch_size=128', 'train_dataloader.num_workers=0']),
    # the same MVQ settings with sub-vectors along the input channel (the layout question)
    'resnet18_b128_in_channel': dict(
        _RESNET, options=['train_dataloader.batch_size=128', 'train_dataloader.num_workers=0'],
        mvq_options=['model.mvq.preset=resnet_in_channel']),
    'resnet50_b16': dict(
        _RESNET, options=['train_dataloader.batch_size=16', 'train_dataloader.num_workers=0'],
        model_options=_DEPTH50),
    'mask_rcnn_b2': dict(
        dense='configs/demo/mask-rcnn_r50_fpn_canvas_dense.py',
        mvq='configs/demo/mask-rcnn_r50_fpn_canvas_mvq.py',
        options=['train_dataloader.batch_size=2'], data='coco'),
}


def _build(config: str, options: list[str]):
    """The config (with ``options`` merged) and its model, built in the default scope."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(REPO / config))
    if options:
        parsed = argparse.ArgumentParser()
        parsed.add_argument('--opts', nargs='+', action=DictAction)
        cfg.merge_from_dict(parsed.parse_args(['--opts', *options]).opts)
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg, MODELS.build(model_cfg)


def _clustered(case: dict, init: Path, model_options: list[str]):
    """The MVQ config and model built on the dense ``init``, clustered as its MVQHook clusters
    before training (same seed, int8 fake quantization on when the hook starts it at 0)."""
    import mvq_plugin as mvq
    from mvq_plugin.core import cluster_prepared
    cfg, net = _build(case['mvq'], [f'model.init_checkpoint={init}',
                                    *(f'model.model.{o}' for o in model_options),
                                    *case.get('mvq_options', [])])
    hook = next(h for h in cfg.custom_hooks if h['type'] == 'mvq_plugin.MVQHook')
    seed = hook.get('seed')
    cluster_prepared(net, seed=net.mvq_config.seed if seed is None else seed)
    if hook.get('codebook_quant_start_iter') == 0:
        mvq.set_codebook_quant(net, True)
    return cfg, net


def _checkpoints(case: dict, tmp: Path, name: str, model_options: list[str]):
    """``(init, start, (mvq_cfg, net))``: the upstream model's own init (the MVQ run's
    ``load_from``), the model the MVQ run starts from baked dense (the dense run's
    ``load_from``), and that clustered MVQ model itself with its config."""
    import torch

    import mvq_plugin as mvq
    _, model = _build(case['dense'], [f'model.{o}' for o in model_options])
    model.init_weights()
    init = tmp / f'{name}_init.pth'
    torch.save({'state_dict': model.state_dict()}, init)
    mvq_cfg, net = _clustered(case, init, model_options)
    start = tmp / f'{name}_start_dense.pth'
    torch.save({'state_dict': mvq.to_dense(copy.deepcopy(net)).state_dict()}, start)
    return init, start, (mvq_cfg, net)


def _interleaved(case: dict, start: Path, clustered, model_options: list[str],
                 options: list[str], steps: int, skip: int) -> dict:
    """Dense and MVQ ``train_step`` s alternating in one process on the same batches.

    The models, optimizer wrappers and dataloader are built from the two configs as the
    runner builds them; each step is ``model.train_step(batch, optim_wrapper)``, what
    mmengine's training loop calls, so both see identical inputs seconds apart and the
    ratio of the median step times is free of the drift between separate runs.
    """
    import time

    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner import Runner, load_checkpoint
    dense_cfg, dense = _build(case['dense'], options + [f'model.{o}' for o in model_options])
    load_checkpoint(dense, str(start), map_location='cpu')
    mvq_cfg, net = clustered
    loader = Runner.build_dataloader(dense_cfg.train_dataloader, seed=0)
    batches = []
    while len(batches) < steps + skip:  # a small set is passed through again
        batches += [b for b, _ in zip(iter(loader), range(steps + skip - len(batches)))]
    runs = {'dense': (dense, build_optim_wrapper(dense, dense_cfg.optim_wrapper)),
            'mvq': (net, build_optim_wrapper(net, mvq_cfg.optim_wrapper))}
    times = {key: [] for key in runs}
    for model, _ in runs.values():
        model.train()
    for i, batch in enumerate(batches):
        for key in (('dense', 'mvq') if i % 2 else ('mvq', 'dense')):
            model, wrapper = runs[key]
            data = copy.deepcopy(batch)
            torch.manual_seed(i)  # the same proposal and RoI sampling for both models
            begin = time.perf_counter()
            model.train_step(data, wrapper)
            if i >= skip:
                times[key].append(time.perf_counter() - begin)
    dense_s, mvq_s = (statistics.median(times[k]) for k in ('dense', 'mvq'))
    return dict(dense_s=dense_s, mvq_s=mvq_s, ratio=mvq_s / dense_s, steps=len(times['mvq']))


def _mean_iter_time(config: str, work: Path, options: list[str], skip: int) -> float:
    train_mm(config, work, options)
    times = sorted((r['step'], r['time']) for r in read_scalars(work)
                   if 'time' in r and 'loss' in r)
    times = [t for step, t in times if step > skip]
    if not times:
        raise RuntimeError(f'no iteration times logged in {work}')
    return sum(times) / len(times)


@exit_on_missing_ops
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--iters', type=int, default=30)
    p.add_argument('--skip', type=int, default=5, help='first iterations not counted')
    p.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    p.add_argument('--rounds', type=int, default=2, help='alternating dense/MVQ run pairs')
    p.add_argument('--interleaved', action='store_true',
                   help='alternate dense and MVQ train steps in one process (same batches)')
    p.add_argument('--out')
    args = p.parse_args(argv)
    if any(CASES[name].get('data') == 'coco' for name in args.cases):
        require_mmcv_ops('tools/bench/mm_step_time.py --cases mask_rcnn_b2')
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from mvq_plugin.data.canvas import make_coco_instances
        coco = make_coco_instances(tmp / 'coco', 16, 4)
        for name in args.cases:
            case = CASES[name]
            common = [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_interval={10**6}',
                      'default_hooks.logger.interval=1',
                      f'default_hooks.checkpoint.interval={10**6}', *case['options']]
            if case.get('data') == 'coco':
                for split, ann in (('train', 'train'), ('val', 'val'), ('test', 'val')):
                    common += [f'{split}_dataloader.dataset.data_root={coco}/',
                               f'{split}_dataloader.dataset.ann_file=annotations/'
                               f'instances_{ann}.json']
                common += [f'{split}_evaluator.ann_file={coco}/annotations/instances_val.json'
                           for split in ('val', 'test')]
            model = case.get('model_options', [])
            init, start, clustered = _checkpoints(case, tmp, name, model)
            if args.interleaved:
                row = _interleaved(case, start, clustered, model, common, args.iters, args.skip)
                results[name] = row
                print(f'{name:14s} interleaved, {row["steps"]} steps each: dense '
                      f'{row["dense_s"]:.3f} s  MVQ {row["mvq_s"]:.3f} s  ratio '
                      f'{row["ratio"]:.3f}x', flush=True)
                continue
            rows = []
            for round_ in range(args.rounds):
                dense = _mean_iter_time(case['dense'], tmp / f'{name}_dense_{round_}',
                                        common + [f'model.{o}' for o in model]
                                        + [f'load_from={start}'], args.skip)
                mvq = _mean_iter_time(case['mvq'], tmp / f'{name}_mvq_{round_}',
                                      common + [f'model.model.{o}' for o in model]
                                      + case.get('mvq_options', [])
                                      + [f'load_from={init}'], args.skip)
                rows.append(dict(dense_s=dense, mvq_s=mvq, ratio=mvq / dense))
                print(f'{name:14s} round {round_}: dense {dense:.3f} s/iter  MVQ {mvq:.3f} '
                      f's/iter  ratio {mvq / dense:.3f}x', flush=True)
            ratios = [r['ratio'] for r in rows]
            results[name] = dict(rounds=rows, ratio=statistics.median(ratios),
                                 ratio_range=[min(ratios), max(ratios)])
            print(f'{name:14s} median ratio {results[name]["ratio"]:.3f}x '
                  f'[{min(ratios):.3f}, {max(ratios):.3f}]', flush=True)
    import torch
    meta = dict(command=command_line(__file__, argv), machine=describe_machine(),
                torch_threads=torch.get_num_threads(), iters=args.iters, skip=args.skip,
                rounds=args.rounds, interleaved=args.interleaved)
    if args.out:
        write_json(args.out, dict(meta, results=results), indent=2)
    return results


if __name__ == '__main__':
    main()
