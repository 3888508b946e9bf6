"""What the benchmarks share: the ``tools/bench`` scripts import it and never one another.

(``scalesim_golden.py`` alone imports nothing of the project: it runs in SCALE-Sim's own venv,
without torch.)

* Running and reporting: :func:`command_line` (the command as typed), :func:`describe_machine`
  (the machine a figure was measured on), :func:`set_threads`, :func:`timed` and
  :func:`best_of`, :func:`stat` / :func:`fmt_stat` (mean [min, max] over seeds),
  :func:`write_json` and :func:`write_report` (``NAME.json`` and ``NAME.md`` side by side).
* Models and runs: :func:`resnet50` (torchvision's, seeded random init, nothing downloaded),
  :func:`train_mm` (one ``tools/train.py`` run of the OpenMMLab benches).
* The Fashion-MNIST setting of the recipe and allocation benches: mmpretrain's ResNet-18 of the
  demo config at a base width (:func:`build_model`, :func:`forward`), the data
  (:class:`Data`), the dense model trained once and cached in the work dir
  (:func:`train_dense`, :func:`dense_start`), their shared arguments (:func:`add_setting_args`)
  and the MVQ 2:8 settings of their size points (:data:`POINTS`).

Bench-only fixtures live beside it: ``matching.py`` (settings at equal accounted bits) and
``imagenet_photos.py`` (offline ImageNet weights and photos).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch
import torch.nn.functional as F
from matching import Setting  # same folder (tools/bench/matching.py)

from mvq_plugin.core.finetune import evaluate
from mvq_plugin.data.fashion_mnist import load_fashion_mnist
from mvq_plugin.machine import describe_machine  # noqa: F401  (re-exported)

__all__ = ['REPO', 'command_line', 'describe_machine', 'set_threads', 'timed', 'best_of', 'stat',
           'fmt_stat', 'write_json', 'write_report', 'resnet50', 'train_mm', 'DENSE_CFG', 'BATCH',
           'POINTS', 'build_model', 'forward', 'Data', 'train_dense', 'add_setting_args',
           'dense_start']

T = TypeVar('T')

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------ running, reporting


def command_line(script: str | os.PathLike, argv: Sequence[str] | None = None) -> str:
    """``python tools/bench/NAME.py ARGS``: the command that reproduces a run.

    Args:
        script: The bench script (its ``__file__``); shown relative to the repository.
        argv: Its arguments (default ``sys.argv[1:]``, those of this process).
    """
    path = Path(script).resolve()
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(['python', str(shown), *map(str, args)])


def set_threads(threads: int, *, faiss: bool = False) -> None:
    """Sets torch's intra-op threads (and faiss's OpenMP threads with ``faiss``); 0 keeps the
    defaults."""
    if threads <= 0:
        return
    torch.set_num_threads(threads)
    if faiss:
        import faiss as faiss_module
        faiss_module.omp_set_num_threads(threads)


def timed(fn: Callable[[], T], device: torch.device | None = None) -> tuple[T, float]:
    """``(fn(), seconds)``; on a CUDA ``device`` its queued work is waited for on both ends."""
    sync = device is not None and device.type == 'cuda'
    if sync:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - start


def best_of(fn: Callable[[], T], repeat: int) -> tuple[T, float]:
    """``(the last fn(), the fastest of repeat runs in seconds)``."""
    runs = [timed(fn) for _ in range(max(repeat, 1))]
    return runs[-1][0], min(t for _, t in runs)


def stat(values: Iterable[float]) -> dict[str, float]:
    """``{'mean', 'min', 'max', 'n'}`` of ``values`` (e.g. a row's top-1 over seeds)."""
    values = list(values)
    return dict(mean=statistics.fmean(values), min=min(values), max=max(values),
                n=len(values))


def fmt_stat(s: dict[str, float] | None) -> str:
    """``'mean [min, max]'`` of a :func:`stat` at two decimals; ``'-'`` for none."""
    if not s:
        return '-'
    return f'{s["mean"]:.2f} [{s["min"]:.2f}, {s["max"]:.2f}]'


def write_json(path: str | os.PathLike, data: Any, indent: int = 1) -> Path:
    """Writes ``data`` as JSON (parent folders made; values JSON lacks written as ``str``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, default=str))
    return path


def write_report(stem: str | os.PathLike, data: Any, markdown: str) -> Path:
    """Writes ``STEM.json`` (``data``) and ``STEM.md`` (``markdown``); returns the ``.md`` path."""
    stem = Path(stem)
    write_json(stem.parent / f'{stem.name}.json', data)
    md = stem.parent / f'{stem.name}.md'
    md.write_text(markdown if markdown.endswith('\n') else markdown + '\n')
    return md


# ------------------------------------------------------------------------ models and runs



def resnet50(seed: int = 0) -> torch.nn.Module:
    """torchvision's ResNet-50 with its default random init under ``seed`` (no weights are
    downloaded; the same model on every call)."""
    import torchvision
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None)


def train_mm(config: str, work: Path, options: Sequence[str], resume: bool = False,
             threads: int = 0) -> float:
    """One ``tools/train.py`` run (``tools/_launch.py``), its output in ``WORK/train_stdout.log``;
    returns its wall time in seconds. ``resume``: continue from the work dir's last
    checkpoint when it has one; ``threads``: its torch threads (0: inherited)."""
    tools = str(REPO / 'tools')
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from _launch import run_train  # tools/_launch.py
    return run_train(config, work, options, log=Path(work) / 'train_stdout.log', resume=resume,
                     threads=threads)


# ------------------------------------------------------------------------ Fashion-MNIST setting

DENSE_CFG = REPO / 'configs/demo/resnet18_fashion-mnist_dense.py'
MEAN, STD = 72.94, 90.02  # the dense config's data_preprocessor
BATCH = 128

#: The MVQ 2:8 setting of each size point of the recipe and allocation benches (the ratio
#: follows from the width).
POINTS = (Setting('mvq', 16, 256, 2, 8), Setting('mvq', 8, 64, 2, 8),
          Setting('mvq', 16, 32, 2, 8), Setting('mvq', 16, 16, 2, 8),
          Setting('mvq', 16, 4, 2, 8))


@functools.lru_cache(maxsize=None)
def _template(width: int) -> torch.nn.Module:
    from mvq_plugin.integrations.mm.config_model import build_model_from_config
    opts = {'model.backbone.base_channels': width, 'model.backbone.stem_channels': width,
            'model.head.in_channels': 8 * width}
    return build_model_from_config(DENSE_CFG, opts)[0]


def build_model(width: int) -> torch.nn.Module:
    """mmpretrain's ResNet-18 of the demo config at base width ``width`` (random weights)."""
    return copy.deepcopy(_template(width))


def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits (the OpenMMLab tensor-mode forward)."""
    return model(x, mode='tensor')


@functools.lru_cache(maxsize=1)
def _normalised() -> tuple[torch.Tensor, ...]:
    """Train and test images (normalised) and labels, read from disk once per process."""
    xs, y = load_fashion_mnist('train')
    xt, yt = load_fashion_mnist('test')
    return (xs.float() - MEAN) / STD, y, (xt.float() - MEAN) / STD, yt


class Data:
    """Fashion-MNIST as normalised tensors; ``batches(step)`` reshuffles every epoch."""

    def __init__(self, seed: int) -> None:
        self.x, self.y, self.xt, self.yt = _normalised()
        self.seed = seed
        self._perm: dict[int, torch.Tensor] = {}

    def batches(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        per_epoch = len(self.y) // BATCH
        epoch, i = divmod(step, per_epoch)
        if epoch not in self._perm:
            gen = torch.Generator().manual_seed(1000 * self.seed + epoch)
            self._perm = {epoch: torch.randperm(len(self.y), generator=gen)}
        idx = self._perm[epoch][i * BATCH:(i + 1) * BATCH]
        return self.x[idx], self.y[idx]

    def calib(self, count: int = 8) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(99)
        idx = torch.randperm(len(self.y), generator=gen)[:count * BATCH]
        return list(self.x[idx].split(BATCH))

    def evaluate(self, model: torch.nn.Module) -> float:
        return evaluate(model, zip(self.xt.split(1000), self.yt.split(1000)), forward)


def train_dense(width: int, iters: int, path: Path,
                save_every: int = 250) -> tuple[dict, float]:
    """Trains (or loads) the dense model: SGD 0.1, warm-up then cosine, as the demo config.

    Resumable: every ``save_every`` steps the model, optimizer and scheduler go to
    ``PATH.partial`` (the batches follow from the step), and a rerun continues from there.
    """
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        return saved['state_dict'], saved['top1']
    torch.manual_seed(0)
    model, data = build_model(width), Data(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=iters, pct_start=0.05)
    partial, first = path.with_name(path.name + '.partial'), 0
    if partial.is_file():
        state = torch.load(partial, weights_only=True)
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        first = state['step']
        print(f'dense: resuming at step {first}/{iters}', flush=True)
    model.train()
    t0 = time.perf_counter()
    for step in range(first, iters):
        x, y = data.batches(step)
        loss = F.cross_entropy(forward(model, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            print(f'dense step {step + 1}/{iters}: loss {float(loss):.3f} '
                  f'({time.perf_counter() - t0:.0f} s)', flush=True)
        if (step + 1) % save_every == 0 and step + 1 < iters:
            partial.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dict(model=model.state_dict(), optimizer=opt.state_dict(),
                            scheduler=sched.state_dict(), step=step + 1), partial)
    top1 = data.evaluate(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), top1=top1, iters=iters), path)
    partial.unlink(missing_ok=True)
    return model.state_dict(), top1


def add_setting_args(p: argparse.ArgumentParser, threads: int = 0) -> None:
    """The arguments every bench on this setting shares (model, dense run, budget, seeds)."""
    p.add_argument('--width', type=int, default=16)
    p.add_argument('--dense-iters', type=int, default=12000)
    p.add_argument('--budget', type=int, default=400)
    p.add_argument('--lr', type=float, default=0.01)
    p.add_argument('--kmeans-iters', type=int, default=20)
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--threads', type=int, default=threads, help='torch threads (0: default)')
    p.add_argument('--work-dir', default='work_dirs/bench_recipe')
    p.add_argument('--out', default='work_dirs/bench',
                   help='report folder (docs/results updates the committed results)')
    p.add_argument('--fresh', action='store_true')


def dense_start(args: argparse.Namespace) -> tuple[dict, float]:
    """Sets the threads and trains (or loads from the work dir) the dense model."""
    set_threads(args.threads)
    path = Path(args.work_dir) / f'dense_w{args.width}_{args.dense_iters}.pth'
    dense_state, dense_top1 = train_dense(args.width, args.dense_iters, path)
    print(f'dense model: {dense_top1:.2f}%', flush=True)
    return dense_state, dense_top1
