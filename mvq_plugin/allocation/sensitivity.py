"""How much each choice hurts each layer, measured: the model's output distortion on
calibration batches when only that layer is compressed with that choice.

Each (layer, choice) is pruned and clustered with the real (masked) k-means of
:func:`~mvq_plugin.core.cluster.cluster_layer`, its codebook rounded to the choice's
precision, and written into the dense model in place of that one weight; the calibration
batches run through the model and the objective compares the outputs with the dense ones.
The weight is restored before the next measurement. One clustering serves every codebook
precision of the same (method, d, k, N:M).

Measurements are keyed by the layer, a fingerprint of its weight and of the calibration
batches, the choice and every setting that changes the clustering; a :class:`SensitivityCache`
keeps them (in memory, or in a JSON file), so a second budget re-solves without measuring.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.accounting import run_forward
from ..core.calibration import collect_input_stats
from ..core.cluster import cluster_layer, make_job
from ..core.config import MVQConfig
from .choices import Choice

__all__ = ['SensitivityCache', 'measure_sensitivity', 'OBJECTIVES', 'output_tensors']

logger = logging.getLogger('mvq_plugin')

_CACHE_VERSION = 1


def output_tensors(out: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a model output (tensor, tuple/list, dict, data samples)."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float()] if out.is_floating_point() else []
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in output_tensors(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in output_tensors(v)]
    return []


def relative_output_error(reference: Sequence[torch.Tensor],
                          outputs: Sequence[torch.Tensor]) -> float:
    """``sum ||y - y_ref||^2 / sum ||y_ref||^2`` over every output tensor of every batch."""
    num = sum(float((y - r).pow(2).sum()) for r, y in zip(reference, outputs))
    den = sum(float(r.pow(2).sum()) for r in reference)
    return num / den if den else num


def logit_kl(reference: Sequence[torch.Tensor], outputs: Sequence[torch.Tensor]) -> float:
    """Mean ``KL(softmax(y_ref) || softmax(y))`` over the rows of 2-D logits (classifiers)."""
    total, rows = 0.0, 0
    for r, y in zip(reference, outputs):
        if r.dim() != 2:
            raise ValueError(f"objective='kl' needs (batch, classes) logits, got shape "
                             f'{tuple(r.shape)}; use objective=\'output\'')
        p = r.log_softmax(1)
        total += float((p.exp() * (p - y.log_softmax(1))).sum())
        rows += r.shape[0]
    return total / max(rows, 1)


#: Named objectives ``(reference outputs, outputs) -> distortion`` (lower is better).
OBJECTIVES: dict[str, Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], float]] = {
    'output': relative_output_error,
    'kl': logit_kl,
}


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'')
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


class SensitivityCache:
    """Measured distortions by key, in memory and optionally in a JSON file.

    Args:
        path: JSON file read now (if it exists) and written by :meth:`save`; ``None``: in
            memory only.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.entries: dict[str, float] = {}
        if self.path and os.path.isfile(self.path):
            with open(self.path) as fh:
                data = json.load(fh)  # plain JSON: numbers only, nothing executes
            if not isinstance(data, dict) or data.get('version') != _CACHE_VERSION or \
                    not isinstance(data.get('entries'), dict):
                raise ValueError(f'sensitivity cache {self.path!r} is not a version-'
                                 f'{_CACHE_VERSION} cache; delete it to measure again')
            self.entries = {str(k): float(v) for k, v in data['entries'].items()}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def save(self) -> None:
        """Writes the JSON file atomically (no-op in memory)."""
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f'{self.path}.tmp{os.getpid()}'
        with open(tmp, 'w') as fh:
            json.dump(dict(version=_CACHE_VERSION, entries=self.entries), fh)
        os.replace(tmp, self.path)


def _objective(objective: str | Callable) -> tuple[Callable, str]:
    if callable(objective):
        return objective, getattr(objective, '__qualname__', repr(objective))
    if objective not in OBJECTIVES:
        raise ValueError(f'objective={objective!r} is not known; choose one of '
                         f'{sorted(OBJECTIVES)} or pass a callable (reference, outputs) -> float')
    return OBJECTIVES[objective], objective


def _quantized_weight(q, bits: int, original: torch.Tensor) -> torch.Tensor:
    q.codebook_bits = bits
    q.codebook_quant = bits != 32
    return q.reference_weight(original)


@torch.no_grad()
def measure_sensitivity(model: nn.Module, candidates: Mapping[str, Sequence[Choice]],
                        cfg: MVQConfig, calib_batches: Iterable[Any], *,
                        forward_fn: Callable | None = None,
                        objective: str | Callable = 'output',
                        cache: SensitivityCache | None = None, backend: str = 'auto',
                        progress: Callable[[int, int, str], None] | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Output distortion of every (layer, choice), compressing one layer at a time.

    Args:
        model: The dense model (restored exactly before returning).
        candidates: ``{layer: choices}``; a dense choice costs nothing to measure (0).
        cfg: The base settings (importance, k-means iterations, seed... of each layer).
        calib_batches: Input batches (``forward_fn(model, batch)``, default ``model(batch)``).
        forward_fn: How a batch runs through the model.
        objective: ``'output'`` (relative squared error of every output tensor), ``'kl'``
            (logit KL of a classifier), or ``callable(reference, outputs) -> float`` on the
            lists of output tensors.
        cache: Where measurements are looked up and stored.
        backend: k-means search backend.
        progress: ``progress(i, total, layer)`` before each layer.

    Returns:
        ``({layer: distortions in choice order}, info)``; ``info`` counts ``measured`` and
        ``reused`` entries and the ``seconds`` spent.
    """
    start = time.perf_counter()
    fn, obj_name = _objective(objective)
    batches = list(calib_batches)
    if not batches:
        raise ValueError('sensitivity needs at least one calibration batch (calib=...)')
    cache = cache if cache is not None else SensitivityCache()
    was_training = model.training
    model.eval()
    calib_fp = _digest(*[t for b in batches for t in output_tensors(b)], obj_name)
    reference = [t for b in batches for t in output_tensors(run_forward(model, b, forward_fn))]
    if not reference:
        raise ValueError('the model output holds no floating-point tensor to compare; pass '
                         'forward_fn returning the logits/features')
    names = list(candidates)
    wants_stats = [n for n in names if cfg.for_layer(n, model.get_submodule(n)).needs_calibration]
    stats = collect_input_stats(model, wants_stats, batches, forward_fn) if wants_stats else {}
    out: dict[str, np.ndarray] = {}
    measured = reused = 0
    try:
        for i, name in enumerate(names):
            if progress is not None:
                progress(i, len(names), name)
            module = model.get_submodule(name)
            weight = module.weight
            original = weight.detach().clone()
            base = cfg.for_layer(name, module)
            w_fp = _digest(original)
            values = np.zeros(len(candidates[name]))
            clustered: dict[Choice, Any] = {}
            for j, choice in enumerate(candidates[name]):
                if choice.dense:
                    continue
                lcfg = dataclasses.replace(base, **choice.fields())
                key = _digest(name, w_fp, calib_fp, choice.label, cfg.seed + i, backend,
                              {k: v for k, v in dataclasses.asdict(lcfg).items()
                               if k != 'codebook_bits'})
                if key in cache:
                    values[j] = cache.entries[key]
                    reused += 1
                    continue
                if choice.clustering not in clustered:
                    job = make_job(name, module, original, lcfg, cfg.seed + i,
                                   input_sq=stats.get(name))
                    clustered[choice.clustering] = cluster_layer(job, backend)[0]
                w_hat = _quantized_weight(clustered[choice.clustering], choice.codebook_bits,
                                          original)
                weight.copy_(w_hat)
                try:
                    outputs = [t for b in batches
                               for t in output_tensors(run_forward(model, b, forward_fn))]
                finally:
                    weight.copy_(original)
                values[j] = cache.entries[key] = float(fn(reference, outputs))
                measured += 1
            out[name] = values
    finally:
        model.train(was_training)
        cache.save()
    if progress is not None:
        progress(len(names), len(names), '')
    seconds = time.perf_counter() - start
    logger.info('allocation: %d sensitivities measured, %d reused, %.1f s', measured, reused,
                seconds)
    return out, dict(measured=measured, reused=reused, seconds=seconds)
