"""The MVQ weight parametrization: a layer's weight as a function of trainable codewords.

``MVQWeight`` is registered with :func:`torch.nn.utils.parametrize.register_parametrization`
on ``weight``, so every subclass of ``nn.Conv2d``/``nn.Linear`` (timm's ``StdConv2d``,
``Conv2dSame``, mmcv's conv layers) keeps its own ``forward``. The effective weight is::

    W_hat = from_subvectors(mask * q(codebook)[assignments])

where ``q`` is the identity or, once switched on, int8 symmetric fake quantization with one
scale per codebook and a straight-through estimator. Masks and assignments are buffers; the
codebook is the only parameter. Autograd *sums* the gradients of every position a codeword
fills (BGD averages them); gradients reach a codeword only through unpruned positions because
pruned positions are multiplied by 0.

The dense weight the layer was clustered from stays as the frozen
``parametrizations.weight.original`` (no gradient, excluded from the artifact), so one can
always see which weights the clustering came from.

The plumbing lives here too: :func:`attach_mvq_weight`, :func:`quantized_layers`,
:func:`is_compressed` and :func:`detach_mvq_weight` (the one place that turns a parametrized
layer back into its plain class).
"""
from __future__ import annotations

import enum

import torch
from torch import nn
from torch.nn.utils import parametrize

from .bits import layer_bits
from .blocking import from_subvectors
from .config import LayerConfig, prunes
from .quant import (
    fake_quant_int8,
    int8_scale,
    lsq_init_scale,
    lsq_quant,
    lsq_step,
    round_fp16,
)
from .rebuild import RebuildPlan, gather_weight
from .srste import srste_mask, srste_weight

__all__ = ['MVQWeight', 'Stage', 'attach_mvq_weight', 'detach_mvq_weight', 'quantized_layers',
           'is_compressed', 'codebook_parameters']


class Stage(enum.IntEnum):
    """Stage of an MVQ weight (its ``stage`` buffer holds the value)."""

    #: Structure prepared, nothing computed yet: the frozen dense weight passes through.
    DENSE = 0
    #: The N:M-masked dense weight (sparse fine-tuning).
    PRUNED = 1
    #: ``mask * codebook[assignments]``.
    CLUSTERED = 2



class MVQWeight(nn.Module):
    """Parametrization computing a weight from a codebook, assignments and an N:M mask.

    Args:
        codebook: ``(k, d)`` initial codewords (becomes the trainable ``codebook``).
        assignments: ``(n,)`` codeword index per sub-vector.
        mask: ``(n, d)`` bool, True where the weight is kept.
        weight_shape: Shape of the weight being replaced.
        vector_axis: Sub-vector layout, ``'in_channel'`` or ``'spatial'``.
        n: N of the N:M pattern (``n == m``: no pruning).
        m: M of the N:M pattern.
        method: ``'mvq'``, ``'vq'`` or ``'prune_vq'`` (kept for reports and the artifact).
        codebook_bits: Storage precision of the codebook (8: int8 + scale).
        codebook_scale: How the int8 scale is chosen (:mod:`~mvq_plugin.core.quant`):
            ``'maxabs'`` (derived) or ``'lsq'`` (a learned ``lsq_scale`` parameter,
            initialised from the codebook when the quantization is first used).

    Attributes:
        codebook_quant: When True, the forward pass rounds the codebook to its storage precision
            (``codebook_bits``: int8 with one scale, or fp16; fp32 is unchanged) with a
            straight-through estimator, so the model computes what its artifact stores.
        scale: Buffer holding a fixed int8 scale (NaN: derived from the codebook on every
            pass). Loading an int8 artifact fixes it, so the loaded model is bit-exact.
        stage: Buffer, ``Stage.CLUSTERED`` unless built by
            :func:`~mvq_plugin.core.staged.prepare`, which starts at ``Stage.DENSE`` so
            that training frameworks see the codebook before clustering has run
            (:attr:`current_stage` reads it).
        layer_config: The resolved :class:`~mvq_plugin.core.config.LayerConfig` (set by
            ``compress``/``prepare``; ``None`` when rebuilt from an artifact).
        srste_lambda: While set (the SR-STE sparse phase), the pruned stage recomputes the
            N:M mask from the current dense weights on every pass and trains them with
            SR-STE's gradient (:mod:`~mvq_plugin.core.srste`); ``None``: the mask is fixed.
        dense_loaded: Whether dense weights were loaded into the layer's original (set by
            the framework integrations that load checkpoints; a layer clustered from random
            weights is refused).
    """

    def __init__(self, codebook: torch.Tensor, assignments: torch.Tensor, mask: torch.Tensor,
                 weight_shape: tuple[int, ...], vector_axis: str = 'in_channel', *, n: int,
                 m: int, method: str = 'mvq', codebook_bits: int = 8,
                 stage: int = Stage.CLUSTERED, codebook_scale: str = 'maxabs') -> None:
        super().__init__()
        k, d = codebook.shape
        if mask.shape != (assignments.numel(), d):
            raise ValueError(f'mask shape {tuple(mask.shape)} must be '
                             f'(num_subvectors={assignments.numel()}, d={d})')
        numel = 1
        for s in weight_shape:
            numel *= s
        if assignments.numel() * d != numel:
            raise ValueError(f'{assignments.numel()} sub-vectors of length {d} do not fill '
                             f'a weight of shape {tuple(weight_shape)}')
        self.codebook = nn.Parameter(codebook.detach().clone().float())
        self.register_buffer('assignments', assignments.detach().clone().long())
        self.register_buffer('mask', mask.detach().clone().bool())
        self.weight_shape = tuple(int(s) for s in weight_shape)
        self.vector_axis = vector_axis
        self.n, self.m = int(n), int(m)
        self.method = method
        self.codebook_bits = int(codebook_bits)
        self.register_buffer('scale', torch.tensor(float('nan')))
        self.register_buffer('stage', torch.tensor(int(stage), dtype=torch.uint8))
        if codebook_scale not in ('lsq', 'maxabs'):
            raise ValueError(f"codebook_scale={codebook_scale!r}; allowed: 'lsq', 'maxabs'")
        self.codebook_scale = codebook_scale
        if codebook_scale == 'lsq':
            self.lsq_scale = nn.Parameter(torch.tensor(float('nan')))
        self.codebook_quant = False
        self.srste_lambda: float | None = None
        self.layer_config: LayerConfig | None = None
        self.dense_loaded = False
        self._plan: RebuildPlan | None = None
        self._cached: tuple[tuple, torch.Tensor] | None = None

    def __getstate__(self) -> dict:
        # The rebuild plan and the eval cache are derived from the buffers: copies and
        # pickles rebuild them when first needed instead of carrying them.
        state = super().__getstate__()
        return dict(state, _plan=None, _cached=None)

    @property
    def prunes(self) -> bool:
        """Whether the layer stores an N:M mask (:func:`~mvq_plugin.core.config.prunes`)."""
        return prunes(self.method, self.n, self.m)

    @property
    def current_stage(self) -> Stage:
        """The :class:`Stage` the ``stage`` buffer holds."""
        return Stage(int(self.stage))

    def bits(self):
        """The accounted :class:`~mvq_plugin.core.bits.LayerBits` of this weight."""
        return layer_bits(self.assignments.numel() * self.block_size, d=self.block_size,
                          k=self.num_codewords, n=self.n, m=self.m,
                          codebook_bits=self.codebook_bits, prunes=self.prunes)

    @torch.no_grad()
    def take_state(self, other: 'MVQWeight', *, stage: Stage = Stage.CLUSTERED) -> None:
        """Copies ``other``'s codebook, assignments and mask into this weight, in place.

        The tensors keep their identity (optimizer state, DDP registrations stay valid), so
        the shapes must agree.
        """
        if (self.codebook.shape != other.codebook.shape
                or self.assignments.shape != other.assignments.shape):
            raise ValueError(f'take_state: codebook {tuple(other.codebook.shape)} / '
                             f'{other.assignments.numel()} sub-vectors do not fit '
                             f'{tuple(self.codebook.shape)} / {self.assignments.numel()}')
        self.codebook.copy_(other.codebook)
        self.assignments.copy_(other.assignments)
        self.mask.copy_(other.mask)
        self.stage.fill_(int(stage))
        if self.codebook_scale == 'lsq':
            self.lsq_scale.fill_(float('nan'))  # initialised from the new codebook

    @property
    def block_size(self) -> int:
        """Sub-vector length d."""
        return self.codebook.shape[1]

    @property
    def num_codewords(self) -> int:
        """Codebook size k."""
        return self.codebook.shape[0]

    def effective_codebook(self) -> torch.Tensor:
        """The codebook as the forward pass uses it (rounded to storage when ``codebook_quant``).

        int8: a fixed ``scale`` (a loaded artifact) wins; else the learned LSQ scale or the
        derived max-abs one.
        """
        if not self.codebook_quant or self.codebook_bits == 32:
            return self.codebook
        if self.codebook_bits == 16:
            return round_fp16(self.codebook)
        if not torch.isnan(self.scale):
            return fake_quant_int8(self.codebook, self.scale)
        if self.codebook_scale == 'lsq':
            return lsq_quant(self.codebook, self._lsq_scale())
        return fake_quant_int8(self.codebook)

    def _lsq_scale(self) -> nn.Parameter:
        if torch.isnan(self.lsq_scale):
            with torch.no_grad():
                self.lsq_scale.copy_(lsq_init_scale(self.codebook))
        return self.lsq_scale

    @torch.no_grad()
    def quant_scale(self) -> torch.Tensor:
        """The fp32 int8 scale the forward pass uses with ``codebook_quant`` on (what the
        artifact stores)."""
        if not torch.isnan(self.scale):
            return self.scale.detach().clone()
        if self.codebook_scale == 'lsq':
            return lsq_step(self._lsq_scale().detach()).clone()
        return int8_scale(self.codebook)

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        """``W_hat``; ``original`` (the frozen dense weight) is ignored once clustered.

        The clustered weight is one gather through a :class:`~.rebuild.RebuildPlan` (built
        once per assignments/mask, in the weight's own layout) with a fixed sparse-sum
        backward. With gradients off (validation, inference) it is computed once and reused
        until the codebook, its scale, the assignments, the mask or the quantization switch
        change (tensor versions: an optimizer step or a load invalidates it). Tracing (ONNX
        export, meta-tensor shape tracing) takes the reference path, so the exported graph
        keeps ``Gather(codebook, assignments) * mask``.

        Args:
            original: The frozen dense weight (shape and dtype reference once clustered).

        Returns:
            Weight of ``weight_shape`` with pruned positions exactly 0 (``original`` itself,
            or masked, before clustering; see :attr:`stage`).
        """
        # Shape-only (meta) tracing cannot read the buffer; shapes agree in every stage.
        stage = Stage.CLUSTERED if self.stage.is_meta else int(self.stage)
        if stage == Stage.DENSE:
            return original
        if self.codebook.is_meta or torch.jit.is_tracing():
            return self.reference_weight(original)
        if stage == Stage.PRUNED and self.srste_lambda is not None:
            self.mask.copy_(srste_mask(original, self.block_size, self.vector_axis, self.n,
                                       self.m))
            return srste_weight(original, self.mask, self.weight_shape, self.vector_axis,
                                self.srste_lambda)
        plan = self.plan()
        if stage == Stage.PRUNED:
            return original * plan.keep
        if torch.is_grad_enabled():
            self._cached = None
            return gather_weight(self.effective_codebook(), plan).to(original.dtype)
        lsq = self.lsq_scale._version if self.codebook_scale == 'lsq' else None
        key = (plan.key, self.codebook._version, self.codebook.data_ptr(), self.scale._version,
               lsq, self.codebook_quant, original.dtype)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, plan.gather(self.effective_codebook()).to(original.dtype))
        return self._cached[1]

    def plan(self) -> RebuildPlan:
        """The index maps of the current assignments and mask (rebuilt when they change)."""
        if self._plan is None or not self._plan.matches(self.assignments, self.mask):
            with torch.no_grad():
                self._plan = RebuildPlan(self.assignments, self.mask, self.num_codewords,
                                         self.weight_shape, self.vector_axis)
        return self._plan

    def reference_weight(self, original: torch.Tensor) -> torch.Tensor:
        """``from_subvectors(mask * q(codebook)[assignments])`` with plain autograd ops
        (what :meth:`forward` computes faster; tests compare the two)."""
        if self.current_stage == Stage.PRUNED and not self.stage.is_meta:
            return original * from_subvectors(self.mask, self.weight_shape, self.vector_axis)
        vectors = self.effective_codebook()[self.assignments] * self.mask
        weight = from_subvectors(vectors, self.weight_shape, self.vector_axis)
        return weight.to(original.dtype)

    def extra_repr(self) -> str:
        return (f'k={self.num_codewords}, d={self.block_size}, N:M={self.n}:{self.m}, '
                f'method={self.method}, axis={self.vector_axis}, '
                f'subvectors={self.assignments.numel()}, stage={int(self.stage)}, '
                f'codebook_quant={self.codebook_quant}')


def codebook_parameters(q: MVQWeight) -> list[nn.Parameter]:
    """The trainable parameters of a codebook: the codewords and, with LSQ, the scale."""
    return [q.codebook, q.lsq_scale] if q.codebook_scale == 'lsq' else [q.codebook]


def is_compressed(module: nn.Module) -> bool:
    """Whether ``module.weight`` is an MVQ weight."""
    return (parametrize.is_parametrized(module, 'weight')
            and any(isinstance(p, MVQWeight) for p in module.parametrizations.weight))


def quantized_layers(model: nn.Module) -> dict[str, MVQWeight]:
    """``{module_name: MVQWeight}`` of every compressed layer.

    Each value holds ``codebook`` (k x d Parameter), ``assignments`` (n,) and ``mask``
    (n x d bool) in the sub-vector layout of docs/design.md section 2.
    """
    out = {}
    for name, module in model.named_modules():
        if is_compressed(module):
            out[name] = next(p for p in module.parametrizations.weight
                             if isinstance(p, MVQWeight))
    return out


def attach_mvq_weight(module: nn.Module, q: MVQWeight) -> None:
    """Makes ``q`` the parametrization of ``module.weight``, in place.

    ``q`` is moved to the weight's device; the dense weight stays as the frozen
    ``parametrizations.weight.original`` (no gradient).

    Args:
        module: A layer with a plain ``weight`` of shape ``q.weight_shape``.
        q: The MVQ weight.
    """
    q.to(module.weight.device)
    parametrize.register_parametrization(module, 'weight', q)
    module.parametrizations.weight.original.requires_grad_(False)


def detach_mvq_weight(module: nn.Module, weight: nn.Parameter) -> None:
    """Turns a layer whose only parametrization is an MVQ weight back into its plain class.

    ``torch.nn.utils.parametrize.remove_parametrizations`` deletes the injected ``weight``
    property from the generated class, which ``copy.deepcopy`` shares between copies; this
    undoes the parametrization by hand instead: the ``parametrizations`` container goes, the
    class becomes the one it was built from, and ``weight`` becomes the given Parameter.

    Args:
        module: A layer with exactly one parametrization, on ``weight``.
        weight: The plain weight to leave on it (e.g. the dense original, or a baked one).
    """
    if list(module.parametrizations.keys()) != ['weight'] or len(
            module.parametrizations.weight) != 1:
        raise ValueError(f'{type(module).__name__}: weight has other parametrizations')
    del module.parametrizations
    module.__class__ = module.__class__.__bases__[0]
    module.weight = weight
