"""Workloads: every conv/linear layer of a network as a weight-stationary GEMM.

A layer with ``groups`` groups is ``groups`` GEMMs of (docs/design.md section 5)::

    Sr = kh * kw * C_in / groups        (reduction, mapped on array rows)
    Sc = C_out / groups                 (output channels, mapped on array columns)
    T  = H_out * W_out * batch          (streamed ifmap rows; Linear: all leading dims)

Three sources build the same :class:`Workload`:

* :func:`extract_workload` runs one forward pass with hooks on every ``nn.Conv1d``,
  ``nn.Conv2d`` and ``nn.Linear`` (subclasses included: timm ``StdConv2d``/``Conv2dSame``, mmcv
  convs, parametrized MVQ layers) and attaches the compression of each layer, from the model's
  MVQ parametrizations (real d, k, N:M, and the real assignment/mask streams) or from a
  :class:`~mvq_plugin.core.Plan` of a not-yet-compressed model;
* :func:`read_topology` reads a SCALE-Sim topology CSV;
* :class:`LayerWorkload` objects built by hand.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..core.bits import index_bits
from ..core.config import prunes
from ..core.nm import mask_code_bits

__all__ = ['LayerWorkload', 'Workload', 'extract_workload', 'read_topology', 'write_topology',
           'mask_bits_per_subvector']

logger = logging.getLogger('mvq_plugin')

TOPOLOGY_HEADER = ('Layer name', 'IFMAP Height', 'IFMAP Width', 'Filter Height', 'Filter Width',
                   'Channels', 'Num Filter', 'Strides')


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
        )

    def with_compression(self, block_size: int = 8, num_codewords: int = 256, n: int = 2,
                         m: int = 8, method: str = 'mvq',
                         predicate: Callable[[LayerWorkload], bool] | None = None
                         ) -> 'Workload':
        """A copy whose layers (those ``predicate`` accepts) are marked compressed.

        The default predicate follows docs/design.md section 2: ``C_in/groups % d == 0``, not
        depthwise, not the first layer.
        """
        def default(lay: LayerWorkload) -> bool:
            cin_g = lay.in_channels // lay.groups
            return cin_g % block_size == 0 and cin_g > 1 and lay is not self.layers[0]

        pred = predicate or default
        layers = [replace(lay, compressed=True, block_size=block_size,
                          num_codewords=num_codewords, n=n, m=m, method=method,
                          nnz_weights=None, codewords_used=None, index_entropy_bits=None)
                  if pred(lay) else lay for lay in self.layers]
        return Workload(self.name, layers, self.input_shape)

    def dense(self) -> 'Workload':
        """A copy with every layer dense (the uncompressed baseline)."""
        layers = [replace(lay, compressed=False, block_size=None, num_codewords=None, n=None,
                          m=None, method=None, nnz_weights=None, codewords_used=None,
                          index_entropy_bits=None) for lay in self.layers]
        return Workload(self.name, layers, self.input_shape)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per layer."""
        return [lay.to_dict() for lay in self.layers]


# Extraction from a PyTorch model --------------------------------------------------------------

def _entropy_bits(assignments) -> float:
    counts = np.bincount(np.asarray(assignments).reshape(-1))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _compression_from_model(model) -> dict[str, dict[str, Any]]:
    from mvq_plugin.core import STAGE_CLUSTERED, quantized_layers
    out = {}
    for name, q in quantized_layers(model).items():
        if int(getattr(q, 'stage', STAGE_CLUSTERED)) != STAGE_CLUSTERED:
            continue  # prepared, not clustered yet: the plan describes it
        assignments = q.assignments.detach().cpu().numpy()
        mask = q.mask.detach().cpu()
        method = getattr(q, 'method', 'mvq')
        n, m = int(q.n), int(q.m)
        if not prunes(method, n, m):
            n = m
        out[name] = dict(compressed=True, block_size=int(q.block_size),
                         num_codewords=int(q.num_codewords), n=n, m=m, method=method,
                         nnz_weights=int(mask.sum()),
                         codewords_used=int(np.unique(assignments).size),
                         index_entropy_bits=_entropy_bits(assignments), source='compressed')
    return out


def _compression_from_plan(plan) -> dict[str, dict[str, Any]]:
    records = plan.records() if hasattr(plan, 'records') else list(plan)
    out = {}
    for rec in records:
        if not rec.get('compressed'):
            continue
        method = rec.get('method') or 'mvq'
        n, m = int(rec['n']), int(rec['m'])
        if not prunes(method, n, m):
            n = m
        out[rec['name']] = dict(compressed=True, block_size=int(rec['block_size']),
                                num_codewords=int(rec['num_codewords']), n=n, m=m,
                                method=method, source='plan')
    return out


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1])) if len(v) else (1, 1)
    return int(v), int(v)


def _run(model, inputs, forward_fn) -> None:
    if forward_fn is not None:
        forward_fn(model, inputs)
    elif isinstance(inputs, (tuple, list)):
        model(*inputs)
    else:
        model(inputs)


def _run_meta(model, inputs, forward_fn) -> None:
    """Forward on meta tensors: parameters and buffers swapped in, nothing computed."""
    import torch
    from torch.func import functional_call

    def to_meta(x):
        return torch.empty_like(x, device='meta') if isinstance(x, torch.Tensor) else x

    state = {k: to_meta(v) for k, v in model.named_parameters(remove_duplicate=False)}
    state.update({k: to_meta(v) for k, v in model.named_buffers(remove_duplicate=False)})
    meta_inputs = (tuple(to_meta(x) for x in inputs) if isinstance(inputs, (tuple, list))
                   else to_meta(inputs))
    if forward_fn is not None:
        class _Call(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x):
                return forward_fn(self.model, x)

        functional_call(_Call(), {f'model.{k}': v for k, v in state.items()},
                        (meta_inputs,), strict=False)
        return
    args = meta_inputs if isinstance(meta_inputs, tuple) else (meta_inputs,)
    functional_call(model, state, args, strict=False)


def extract_workload(model, input_shape: Sequence[int] | None = None, *, plan=None,
                     example_inputs: Any = None,
                     forward_fn: Callable[[Any, Any], Any] | None = None,
                     name: str | None = None, trace: str = 'auto') -> Workload:
    """Trace a model's conv/linear layers with one forward pass.

    Args:
        model: Any ``nn.Module``; compressed layers (MVQ parametrizations) are detected.
        input_shape: ``(batch, C, H, W)`` of a zero input (ignored with ``example_inputs``).
        plan: A :class:`~mvq_plugin.core.Plan` (or its ``records()``) for a model not yet
            compressed: its compressed layers are costed with the planned d, k and N:M.
        example_inputs: A tensor or tuple of tensors to run instead of zeros.
        forward_fn: ``forward_fn(model, inputs)``; default ``model(inputs)`` (OpenMMLab models
            may need ``model(inputs, mode='tensor')``).
        name: Workload name (default: the model's class name).
        trace: ``'meta'`` runs the forward pass on meta tensors (shapes only, no arithmetic:
            ResNet-50 traces in a fraction of a second; parameters are swapped in with
            ``torch.func.functional_call``, the model is not copied); ``'real'`` runs it on the
            model's device; ``'auto'`` tries meta and falls back to real when an operator has
            no meta kernel (``NotImplementedError``/``RuntimeError``), logging the reason.

    Returns:
        The :class:`Workload`, layers in call order (a module called twice appears twice).
    """
    import torch
    from torch import nn

    if example_inputs is None:
        if input_shape is None:
            raise ValueError('extract_workload needs input_shape or example_inputs')
        shape = tuple(int(s) for s in input_shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f'input_shape={shape} must be (batch, C, ...) with sizes >= 1')
        param = next(iter(model.parameters()), None)
        kwargs = dict(device=param.device, dtype=param.dtype) if param is not None else {}
        example_inputs = torch.zeros(shape, **kwargs)
    comp = _compression_from_plan(plan) if plan is not None else {}
    comp.update(_compression_from_model(model))

    records: list[LayerWorkload] = []
    calls: dict[str, int] = {}

    def hook_for(mod_name: str):
        def hook(mod, inputs, output):
            x = inputs[0]
            calls[mod_name] = calls.get(mod_name, 0) + 1
            label = mod_name if calls[mod_name] == 1 else f'{mod_name}#{calls[mod_name]}'
            extra = comp.get(mod_name, {})
            if isinstance(mod, nn.Linear):
                tokens = int(np.prod(x.shape[:-1]))
                lay = LayerWorkload(label, 'linear', mod.in_features, mod.out_features, (1, 1),
                                    (1, 1), 1, (1, 1), (tokens, 1), batch=1, **extra)
            else:
                spatial = x.dim() - 2
                if spatial == 1:
                    ifmap, ofmap = (int(x.shape[-1]), 1), (int(output.shape[-1]), 1)
                    kernel = (int(mod.kernel_size[0]), 1)
                    stride, dil = (int(mod.stride[0]), 1), (int(mod.dilation[0]), 1)
                else:
                    ifmap = (int(x.shape[-2]), int(x.shape[-1]))
                    ofmap = (int(output.shape[-2]), int(output.shape[-1]))
                    kernel, stride = _pair(mod.kernel_size), _pair(mod.stride)
                    dil = _pair(mod.dilation)
                batch = int(x.shape[0]) if x.dim() == spatial + 2 else 1
                lay = LayerWorkload(label, 'conv', mod.in_channels, mod.out_channels, kernel,
                                    stride, int(mod.groups), ifmap, ofmap, batch=batch,
                                    dilation=dil, **extra)
            records.append(lay)
        return hook

    handles = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            handles.append(mod.register_forward_hook(hook_for(mod_name)))
        elif isinstance(mod, nn.modules.conv._ConvNd):
            logger.warning('hw: %s (%s) is not modelled (only Conv1d/Conv2d/Linear)', mod_name,
                           type(mod).__name__)
    if trace not in ('auto', 'meta', 'real'):
        raise ValueError(f"trace={trace!r} must be 'auto', 'meta' or 'real'")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if trace in ('auto', 'meta'):
                try:
                    _run_meta(model, example_inputs, forward_fn)
                except (NotImplementedError, RuntimeError) as err:
                    if trace == 'meta':
                        raise
                    logger.info('hw: meta trace failed (%s); tracing with real tensors', err)
                    records.clear()
                    calls.clear()
                    _run(model, example_inputs, forward_fn)
            else:
                _run(model, example_inputs, forward_fn)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = sorted(set(comp) - set(calls))
    if missing:
        logger.warning('hw: compressed/planned layers never called in forward: %s', missing)
    shape = tuple(example_inputs.shape) if hasattr(example_inputs, 'shape') else None
    return Workload(name or type(model).__name__, records, shape)


# SCALE-Sim topology files -----------------------------------------------------------------

def read_topology(path: str | Path, block_size: int = 8, num_codewords: int = 256,
                  name: str | None = None) -> Workload:
    """Read a SCALE-Sim conv topology CSV.

    Columns: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
    Num Filter, Strides[, N:M]``; the IFMAP sizes include padding and, as in SCALE-Sim,
    ``H_out = ceil((H - kh + s) / s)`` (one more than PyTorch's ``floor((H - kh) / s) + 1``
    when ``s`` does not divide ``H - kh``; :func:`write_topology` writes sizes on which both
    agree). A layer whose name contains ``DP`` is depthwise in
    SCALE-Sim (``Channels`` separate 1-channel convs): it becomes ``groups = Channels``. A
    sparsity column ``N:M`` with ``N < M`` marks the layer compressed with ``block_size`` and
    ``num_codewords``.

    Args:
        path: The CSV file.
        block_size: ``d`` for layers the file marks sparse.
        num_codewords: ``k`` for layers the file marks sparse.
        name: Workload name (default: the file stem).

    Returns:
        The :class:`Workload`.
    """
    path = Path(path)
    layers = []
    with open(path, newline='') as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f'{path}: empty topology file')
    for lineno, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row if c.strip() != '']
        if len(cells) < 8:
            raise ValueError(f'{path}:{lineno}: expected at least 8 columns '
                             f'{TOPOLOGY_HEADER}, got {row}')
        lname = cells[0]
        try:
            ih, iw, fh, fw, ch, nf, s = (int(c) for c in cells[1:8])
        except ValueError as err:
            raise ValueError(f'{path}:{lineno}: non-integer size in {row}') from err
        if fh > ih or fw > iw:
            raise ValueError(f'{path}:{lineno}: filter {fh}x{fw} larger than ifmap {ih}x{iw}')
        oh, ow = -(-(ih - fh + s) // s), -(-(iw - fw + s) // s)
        extra: dict[str, Any] = {}
        if len(cells) > 8 and ':' in cells[8]:
            n, m = (int(v) for v in cells[8].split(':'))
            if n < m:
                extra = dict(compressed=True, block_size=block_size,
                             num_codewords=num_codewords, n=n, m=m, method='mvq')
        groups = ch if 'DP' in lname else 1
        out_ch = nf * groups
        layers.append(LayerWorkload(lname, 'conv', ch, out_ch, (fh, fw), (s, s), groups,
                                    (ih, iw), (oh, ow), source='topology', **extra))
    return Workload(name or path.stem, layers, None)


def write_topology(workload: Workload | Iterable[LayerWorkload], path: str | Path) -> Path:
    """Write a SCALE-Sim conv topology CSV (ifmap sizes include the padding).

    Grouped layers are written per group (``Channels = C_in/groups``, ``Num Filter =
    C_out/groups``); SCALE-Sim then costs one group, so multiply by ``groups`` to compare.
    """
    path = Path(path)
    with open(path, 'w') as f:
        f.write(','.join(TOPOLOGY_HEADER) + ',\n')
        for lay in workload:
            f.write(','.join(str(v) for v in lay.scalesim_row()) + ',\n')
    return path
