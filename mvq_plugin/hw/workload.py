"""Workloads: every conv/linear layer of a network as a weight-stationary GEMM.

A layer with ``groups`` groups is ``groups`` GEMMs of (docs/design.md section 5)::

    Sr = kh * kw * C_in / groups        (reduction, mapped on array rows)
    Sc = C_out / groups                 (output channels, mapped on array columns)
    T  = H_out * W_out * batch          (streamed ifmap rows; Linear: all leading dims)

Three sources build the same :class:`Workload`:

* :func:`~mvq_plugin.hw.tracing.extract_workload` runs one forward pass with hooks on every
  ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Linear`` (subclasses included: timm ``StdConv2d``,
  ``Conv2dSame``, mmcv convs, parametrized MVQ layers) and attaches the compression of each
  layer, from the model's MVQ parametrizations (real d, k, N:M, and the real assignment/mask
  streams) or from a :class:`~mvq_plugin.core.Plan` of a not-yet-compressed model;
* :func:`~mvq_plugin.hw.topology.read_topology` reads a SCALE-Sim topology CSV;
* :class:`LayerWorkload` objects built by hand.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..core.bits import index_bits
from ..core.config import prunes
from ..core.nm import mask_code_bits

__all__ = ['LayerWorkload', 'Workload', 'mask_bits_per_subvector']

logger = logging.getLogger('mvq_plugin')

def mask_bits_per_subvector(d: int, n: int, m: int) -> int:
    """Mask bits of one sub-vector: ``(d / M) * ceil(log2 C(M, N))`` (0 without pruning)."""
    return (d // m) * mask_code_bits(n, m)


@dataclass(frozen=True)
class LayerWorkload:
    """One conv/linear layer and, if compressed, its MVQ settings.

    Attributes:
        name: Module name (``name#2`` for a module's second call).
        kind: ``'conv'`` or ``'linear'``.
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        groups: Convolution groups (1 for linear).
        ifmap: ``(H_in, W_in)`` before padding.
        ofmap: ``(H_out, W_out)``; for linear ``(tokens, 1)``.
        batch: Batch size.
        dilation: ``(dh, dw)``.
        compressed: Whether the layer is MVQ-compressed (or planned to be).
        block_size: Sub-vector length ``d``.
        num_codewords: Codebook size ``k``.
        n: N of N:M (``n == m``: no pruning).
        m: M of N:M.
        method: ``'mvq'``, ``'vq'`` or ``'prune_vq'``.
        nnz_weights: Kept weights counted from the real mask (``None``: ``numel * N/M``).
        codewords_used: Distinct codewords in the real assignments (``None``: ``k``).
        index_entropy_bits: Empirical entropy of the real assignments, bits per index
            (reported only; the stream uses ``ceil(log2 k)`` bits unless entropy coding is on).
        source: ``'model'``, ``'plan'``, ``'compressed'`` or ``'topology'``.
        vector_axis: Sub-vector layout of a compressed layer (``'out_channel'``,
            ``'in_channel'``, ``'spatial'``); ``None``: unspecified (fits any sparse tile).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    ifmap: tuple[int, int]
    ofmap: tuple[int, int]
    batch: int = 1
    dilation: tuple[int, int] = (1, 1)
    compressed: bool = False
    block_size: int | None = None
    num_codewords: int | None = None
    n: int | None = None
    m: int | None = None
    method: str | None = None
    nnz_weights: int | None = None
    codewords_used: int | None = None
    index_entropy_bits: float | None = None
    source: str = 'model'
    vector_axis: str | None = None

    def __post_init__(self) -> None:
        for key in ('in_channels', 'out_channels', 'groups', 'batch'):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f'LayerWorkload {self.name!r}: {key}={v!r} must be an '
                                 f'integer >= 1')
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f'LayerWorkload {self.name!r}: groups={self.groups} must divide '
                             f'in_channels={self.in_channels} and '
                             f'out_channels={self.out_channels}')
        if self.compressed:
            for key in ('block_size', 'num_codewords', 'n', 'm'):
                v = getattr(self, key)
                if not isinstance(v, int) or v < 1:
                    raise ValueError(f'LayerWorkload {self.name!r}: compressed layers need '
                                     f'{key} >= 1, got {v!r}')
            if self.weight_numel % self.block_size:
                raise ValueError(f'LayerWorkload {self.name!r}: block_size={self.block_size} '
                                 f'does not divide the {self.weight_numel} weights')

    # GEMM view -------------------------------------------------------------------------
    @property
    def sr(self) -> int:
        """Reduction size per group ``Sr = kh*kw*C_in/groups``."""
        return self.kernel[0] * self.kernel[1] * self.in_channels // self.groups

    @property
    def sc(self) -> int:
        """Output channels per group ``Sc = C_out/groups``."""
        return self.out_channels // self.groups

    @property
    def t(self) -> int:
        """Streamed rows ``T = H_out*W_out*batch``."""
        return self.ofmap[0] * self.ofmap[1] * self.batch

    @property
    def weight_numel(self) -> int:
        """``groups * Sr * Sc`` weights."""
        return self.groups * self.sr * self.sc

    @property
    def macs(self) -> int:
        """Dense MACs ``groups * Sr * Sc * T``."""
        return self.groups * self.sr * self.sc * self.t

    @property
    def prunes(self) -> bool:
        """Whether the layer is compressed with an N:M mask (``vq`` never prunes)."""
        return bool(self.compressed and prunes(self.method, self.n, self.m))

    @property
    def density(self) -> float:
        """Fraction of weights kept: real mask count if known, else ``N/M`` (1 if dense)."""
        if not self.compressed:
            return 1.0
        if self.nnz_weights is not None:
            return self.nnz_weights / self.weight_numel
        return self.n / self.m if self.prunes else 1.0

    @property
    def num_subvectors(self) -> int:
        """``numel / d`` (0 when dense)."""
        return self.weight_numel // self.block_size if self.compressed else 0

    @property
    def mask_bits(self) -> int:
        """Mask bits per sub-vector (0 when not pruned)."""
        if not self.prunes:
            return 0
        return mask_bits_per_subvector(self.block_size, self.n, self.m)

    @property
    def index_bits(self) -> int:
        """``ceil(log2 k)`` bits per sub-vector index."""
        return index_bits(self.num_codewords) if self.compressed else 0

    @property
    def touched_ifmap(self) -> tuple[int, int]:
        """Ifmap rows/cols the kernel windows touch, ``min(H_in, (H_out-1)*s + (kh-1)*dil + 1)``."""
        out = []
        for i in range(2):
            span = (self.ofmap[i] - 1) * self.stride[i] + (self.kernel[i] - 1) * \
                self.dilation[i] + 1
            out.append(max(1, min(self.ifmap[i], span)))
        return out[0], out[1]

    def scalesim_row(self) -> list[Any]:
        """SCALE-Sim topology row (ifmap grown to include padding so H_out matches)."""
        if self.stride[0] != self.stride[1]:
            raise ValueError(f'{self.name}: SCALE-Sim needs equal strides, got {self.stride}')
        ih = (self.ofmap[0] - 1) * self.stride[0] + self.kernel[0]
        iw = (self.ofmap[1] - 1) * self.stride[1] + self.kernel[1]
        return [self.name, ih, iw, self.kernel[0], self.kernel[1], self.in_channels // self.groups,
                self.sc, self.stride[0]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record incl. the GEMM view."""
        rec = asdict(self)
        rec.update(sr=self.sr, sc=self.sc, t=self.t, macs=self.macs,
                   weight_numel=self.weight_numel, mask_bits=self.mask_bits,
                   index_bits=self.index_bits, density=self.density)
        return rec


@dataclass
class Workload:
    """An ordered list of layers (one network inference).

    Attributes:
        name: Network name.
        layers: The layers in execution order.
        input_shape: Input shape used for extraction (``None`` for topology files).
    """

    name: str
    layers: list[LayerWorkload] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    @property
    def macs(self) -> int:
        """Dense MACs of the whole network."""
        return sum(lay.macs for lay in self.layers)

    def arrays(self) -> dict[str, np.ndarray]:
        """Per-layer GEMM quantities as int64/float64 arrays (what the models vectorise over)."""
        L = self.layers
        get = lambda f, dt=np.int64: np.array([f(x) for x in L], dtype=dt)  # noqa: E731
        return dict(
            sr=get(lambda x: x.sr), sc=get(lambda x: x.sc), t=get(lambda x: x.t),
            groups=get(lambda x: x.groups), cin_g=get(lambda x: x.in_channels // x.groups),
            k_area=get(lambda x: x.kernel[0] * x.kernel[1]),
            touched=get(lambda x: x.touched_ifmap[0] * x.touched_ifmap[1] * x.batch),
            ifmap_elems=get(lambda x: x.in_channels * x.ifmap[0] * x.ifmap[1] * x.batch),
            ofmap_elems=get(lambda x: x.out_channels * x.t),
            compressed=get(lambda x: x.compressed, bool),
            prunes=get(lambda x: x.prunes, bool),
            density=get(lambda x: x.density, np.float64),
            d=get(lambda x: x.block_size or 1),
            k=get(lambda x: x.codewords_used or x.num_codewords or 1),
            k_nominal=get(lambda x: x.num_codewords or 1),
            index_bits=get(lambda x: x.index_bits),
            mask_bits=get(lambda x: x.mask_bits),
            n=get(lambda x: x.n or 1), m=get(lambda x: x.m or 1),
            axis=np.array([x.vector_axis or '' for x in L], dtype=object),
        )

    def with_compression(self, block_size: int = 8, num_codewords: int = 256, n: int = 2,
                         m: int = 8, method: str = 'mvq',
                         predicate: Callable[[LayerWorkload], bool] | None = None,
                         vector_axis: str | None = None) -> 'Workload':
        """A copy whose layers (those ``predicate`` accepts) are marked compressed.

        The default predicate follows docs/design.md section 2: the sub-vector axis
        (``C_out/groups`` for ``out_channel``, else ``C_in/groups``) a multiple of ``d``, not
        depthwise, not the first layer.
        """
        def default(lay: LayerWorkload) -> bool:
            cin_g = lay.in_channels // lay.groups
            along = lay.sc if vector_axis == 'out_channel' else cin_g
            return along % block_size == 0 and cin_g > 1 and lay is not self.layers[0]

        pred = predicate or default
        layers = [replace(lay, compressed=True, block_size=block_size,
                          num_codewords=num_codewords, n=n, m=m, method=method,
                          nnz_weights=None, codewords_used=None, index_entropy_bits=None,
                          vector_axis=vector_axis)
                  if pred(lay) else lay for lay in self.layers]
        return Workload(self.name, layers, self.input_shape)

    def dense(self) -> 'Workload':
        """A copy with every layer dense (the uncompressed baseline)."""
        layers = [replace(lay, compressed=False, block_size=None, num_codewords=None, n=None,
                          m=None, method=None, nnz_weights=None, codewords_used=None,
                          index_entropy_bits=None, vector_axis=None) for lay in self.layers]
        return Workload(self.name, layers, self.input_shape)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per layer."""
        return [lay.to_dict() for lay in self.layers]


# Extraction from a PyTorch model --------------------------------------------------------------
