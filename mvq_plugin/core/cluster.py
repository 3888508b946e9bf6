"""Clustering one layer, and the one loop over layers that every path shares.

:func:`cluster_layer` N:M-prunes one weight by importance and clusters it with (masked)
k-means, returning the :class:`~mvq_plugin.core.parametrize.MVQWeight` and its
:class:`LayerReport`. :func:`cluster_layers` runs it over a list of :class:`ClusterJob` s with
progress, timing and logging; :func:`~mvq_plugin.core.compress.compress` and
:func:`~mvq_plugin.core.staged.cluster_prepared` both use it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from .blocking import from_subvectors, to_subvectors
from .calibration import NO_CALIBRATION, subvector_importance
from .config import LayerConfig
from .importance import Importance, get_importance
from .kmeans import masked_kmeans
from .nm import nm_mask
from .parametrize import MVQWeight
from .plan import Plan
from .table import render_table

__all__ = ['LayerReport', 'CompressionReport', 'ClusterJob', 'make_job', 'layer_mask',
           'cluster_layer',
           'cluster_layers', 'ProgressFn']

logger = logging.getLogger('mvq_plugin')

#: ``progress(index, total, layer_name)``, called before each layer is clustered (and once
#: at the end with ``index == total`` and an empty name).
ProgressFn = Callable[[int, int, str], None]


@dataclass
class LayerReport:
    """Outcome of clustering one layer.

    Attributes:
        name: Module name.
        masked_sse: Final k-means objective ``sum ||m * (w - c_a)||^2``.
        relative_error: ``||W - W_hat||_F / ||W||_F`` (pruning and clustering together).
        iterations: Lloyd update steps.
        seconds: Wall time of pruning and clustering.
        bits: Bits of the compressed weight.
        objective: The objective after each assignment step.
        last_change: Fraction of assignments the last k-means update changed.
    """

    name: str
    masked_sse: float
    relative_error: float
    iterations: int
    seconds: float
    bits: int
    objective: list[float] = field(default_factory=list)
    last_change: float = 1.0


@dataclass
class CompressionReport:
    """What :func:`compress` did: the plan and one :class:`LayerReport` per compressed layer."""

    plan: Plan
    layers: list[LayerReport] = field(default_factory=list)

    def records(self) -> list[dict]:
        """One flat record per compressed layer (without the objective history)."""
        return [{k: v for k, v in asdict(r).items() if k != 'objective'} for r in self.layers]

    def __str__(self) -> str:
        rows = [('layer', 'rel.err', 'iters', 'last change', 'sec', 'bits')]
        rows += [(r.name, f'{r.relative_error:.4f}', r.iterations, f'{r.last_change:.2%}',
                  f'{r.seconds:.2f}', f'{r.bits:,}') for r in self.layers]
        return render_table(rows)


@dataclass
class ClusterJob:
    """One layer to cluster.

    Attributes:
        name: Module name.
        weight: The dense weight.
        config: Its resolved settings.
        importance: ``(vectors, grad) -> scores`` deciding the N:M mask.
        seed: k-means seed.
        grad: ``dL/dW`` for gradient-based importances, else ``None``.
        kmeans_weights: ``(n, d)`` per-element k-means weights (``kmeans_weights=
            'activation'``), else ``None``.
    """

    name: str
    weight: torch.Tensor
    config: LayerConfig
    importance: Importance
    seed: int
    grad: torch.Tensor | None = None
    kmeans_weights: torch.Tensor | None = None


def make_job(name: str, module: nn.Module, weight: torch.Tensor, lcfg: LayerConfig, seed: int,
             *, importance: str | Importance | None = None, grad: torch.Tensor | None = None,
             input_sq: torch.Tensor | None = None) -> ClusterJob:
    """The :class:`ClusterJob` of one layer, its calibration statistics bound where used.

    Args:
        name: Module name.
        module: The Conv/Linear module (its ``groups`` map weights to input channels).
        weight: The dense weight to cluster.
        lcfg: Its resolved settings.
        seed: k-means seed.
        importance: Overrides ``lcfg.importance`` (a name or a callable).
        grad: ``dL/dW`` (Taylor importance).
        input_sq: ``(C_in,)`` ``E[x_c^2]`` from :func:`~mvq_plugin.core.calibration.
            collect_input_stats`; needed when the layer's settings read calibration data.
    """
    policy = importance if importance is not None else lcfg.importance
    mask_reads = lcfg.mask_reads_stats if importance is None else (
        lcfg.prunes and importance == 'activation')
    wants = lcfg.kmeans_reads_stats or mask_reads
    if wants and input_sq is None:
        raise ValueError(f'layer {name!r} (importance={policy!r}, kmeans_weights='
                         f'{lcfg.kmeans_weights!r}) {NO_CALIBRATION}')
    h = (subvector_importance(module, input_sq, lcfg.block_size, lcfg.vector_axis)
         if wants else None)
    return ClusterJob(name, weight, lcfg, get_importance(policy, h), seed, grad,
                      h if lcfg.kmeans_reads_stats else None)


@torch.no_grad()
def layer_mask(job: ClusterJob) -> torch.Tensor:
    """The job's ``(n, d)`` N:M keep-mask by its importance (all ones if the layer keeps all)."""
    lcfg = job.config
    vectors = to_subvectors(job.weight.detach(), lcfg.block_size, lcfg.vector_axis).float()
    if not lcfg.prunes:
        return torch.ones_like(vectors, dtype=torch.bool)
    g = (to_subvectors(job.grad, lcfg.block_size, lcfg.vector_axis).float()
         if job.grad is not None else None)
    return nm_mask(job.importance(vectors, g), lcfg.n, lcfg.m)


@torch.no_grad()
def cluster_layer(job: ClusterJob, backend: str = 'auto') -> tuple[MVQWeight, LayerReport]:
    """Prunes and clusters one weight.

    The mask keeps, in each group of ``m`` consecutive sub-vector elements, the ``n`` with the
    highest importance; ``mvq`` clusters with the mask (masked k-means), ``prune_vq`` clusters
    the zero-filled sub-vectors with plain k-means, ``vq`` neither prunes nor masks.

    Returns:
        ``(MVQWeight, LayerReport)``; the report's ``seconds`` covers pruning and clustering.
    """
    start = time.perf_counter()
    lcfg, weight = job.config, job.weight.detach()
    d, axis = lcfg.block_size, lcfg.vector_axis
    vectors = to_subvectors(weight, d, axis).float()
    mask = layer_mask(job)
    k_mask = mask if lcfg.masked_clustering else None
    k_input = vectors * mask if lcfg.method == 'prune_vq' else vectors
    result = masked_kmeans(k_input, k_mask, lcfg.num_codewords, weights=job.kmeans_weights,
                           iters=lcfg.kmeans_iters, seed=job.seed, init=lcfg.kmeans_init,
                           tol=lcfg.tol, stop=lcfg.kmeans_stop, change_tol=lcfg.change_tol,
                           backend=backend)
    q = MVQWeight(result.codebook, result.assignments, mask, tuple(weight.shape), axis,
                  n=lcfg.n if lcfg.prunes else lcfg.m, m=lcfg.m, method=lcfg.method,
                  codebook_bits=lcfg.codebook_bits, codebook_scale=lcfg.codebook_scale)
    q.layer_config = lcfg
    reconstructed = result.codebook[result.assignments] * mask
    w_hat = from_subvectors(reconstructed, weight.shape, axis)
    err = (weight.float() - w_hat).pow(2).sum().sqrt() / weight.float().pow(2).sum().sqrt()
    sse = float((vectors * mask - reconstructed).pow(2).sum())
    return q, LayerReport(job.name, sse, float(err), result.iterations,
                          time.perf_counter() - start, q.bits().total, result.objective,
                          result.last_change)


def cluster_layers(jobs: Sequence[ClusterJob], *, backend: str = 'auto',
                   progress: ProgressFn | None = None
                   ) -> tuple[list[MVQWeight], list[LayerReport]]:
    """:func:`cluster_layer` for each job, with progress callbacks and one log line per layer.

    Returns:
        The MVQ weights and the reports, in job order. Nothing is attached to any model.
    """
    weights, reports = [], []
    for i, job in enumerate(jobs):
        if progress is not None:
            progress(i, len(jobs), job.name)
        q, report = cluster_layer(job, backend)
        logger.info('[%d/%d] %s %s: rel.err %.4f, %d iters, %.2fs', i + 1, len(jobs), job.name,
                    'x'.join(map(str, job.weight.shape)), report.relative_error,
                    report.iterations, report.seconds)
        weights.append(q)
        reports.append(report)
    if progress is not None:
        progress(len(jobs), len(jobs), '')
    return weights, reports
