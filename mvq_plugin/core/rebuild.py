"""Rebuilding a compressed weight fast: one gather forward, one fixed sparse sum backward.

During fine-tuning the assignments and masks of an MVQ weight are fixed; only the codebook
moves. The reference rebuild ``from_subvectors(mask * codebook[assignments])`` gathers ``n``
rows, multiplies by the mask, then permutes the sub-vector layout into the conv's
``(O, C, kh, kw)`` layout with a copy, and its backward scatter-adds ``n x d`` gradients into
``k x d`` through an indexed add. With the indices fixed, both directions reduce to fixed
index maps computed once per (assignments, mask) pair (:class:`RebuildPlan`):

* forward: ``W.flat[p] = c.flat[src[p]]`` for the kept positions ``p`` only, written
  straight in the weight's own memory layout (pruned positions are zero and stay zero);
* backward: ``dL/dc = S @ dL/dW.flat`` with ``S`` the fixed ``(k*d) x numel`` 0/1 matrix of
  the kept positions (CSR, rows sorted once): pruned positions cost nothing, and the sum
  per codeword coordinate runs over its own segment with no indexed atomics.

Both are exact: the forward copies the same values, the backward sums the same terms as
autograd's scatter-add (fp32 summation order aside).

The training forward writes into a buffer the plan keeps, because a fresh weight-sized
allocation per step costs more than the gather itself (the kernel zero-fills new pages on
first touch). The buffer is reused only when nothing else holds it: while the previous
step's weight is still referenced (a graph not yet backpropagated, a caller's variable), a
new one is allocated, so an earlier weight is never overwritten.
"""
from __future__ import annotations

import warnings

import torch

from .blocking import from_subvectors

__all__ = ['RebuildPlan', 'gather_weight']


class RebuildPlan:
    """Index maps of one (assignments, mask) pair, in the layout of ``weight_shape``.

    Memory per weight element, besides the weight itself: for a pruned layer at density
    ``r = N/M``, ``11 r`` bytes (positions int64, sources int32, the CSR sum int32 + fp32) plus
    the reused output (4 bytes) and a kept-values scratch (``4 r``); unpruned, 8 (sources and
    the CSR sum) + 4 for the output.

    Args:
        assignments: ``(n,)`` codeword index per sub-vector.
        mask: ``(n, d)`` bool, True where kept.
        num_codewords: ``k``.
        weight_shape: Shape of the rebuilt weight.
        axis: Sub-vector layout (:mod:`~mvq_plugin.core.blocking`).

    Attributes:
        kept: ``(nnz,)`` int64 kept positions of the flat weight, increasing; ``None`` when
            every position is kept.
        src: ``(nnz,)`` int32 index into the flat ``(k*d,)`` codebook per kept position.
        keep: The mask in the weight's layout (bool, ``weight_shape``), for the pruned stage.
        key: What the plan was built from (versions, storage, device), see :meth:`matches`.
    """

    def __init__(self, assignments: torch.Tensor, mask: torch.Tensor, num_codewords: int,
                 weight_shape: tuple[int, ...], axis: str) -> None:
        n, d = mask.shape
        size = num_codewords * d
        flat = (assignments.view(-1, 1) * d + torch.arange(d, device=mask.device))
        flat = from_subvectors(flat.masked_fill(~mask, -1), weight_shape, axis).reshape(-1)
        self.shape = tuple(int(s) for s in weight_shape)
        self.size = size
        self.numel = flat.numel()
        self.keep = from_subvectors(mask, weight_shape, axis).contiguous()
        index = torch.int32 if max(size, self.numel) < 2 ** 31 else torch.int64
        if bool(mask.all()):
            self.kept, rows = None, flat
            positions = torch.arange(self.numel, device=mask.device)
        else:
            self.kept = torch.nonzero(flat >= 0).flatten()
            rows, positions = flat[self.kept], self.kept
        self.src = rows.to(index).contiguous()
        order = torch.argsort(rows, stable=True)
        crow = torch.zeros(size + 1, dtype=index, device=mask.device)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=size), 0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used as documented
            warnings.simplefilter('ignore', UserWarning)
            self._sum = torch.sparse_csr_tensor(
                crow, positions[order].to(index), torch.ones(rows.numel(), device=mask.device),
                size=(size, self.numel), check_invariants=False)
        self._out: torch.Tensor | None = None
        self._out_owners = 0
        self._values: torch.Tensor | None = None
        self.key = self.key_of(assignments, mask)

    @staticmethod
    def key_of(assignments: torch.Tensor, mask: torch.Tensor) -> tuple:
        """What identifies the index tensors' contents: in-place writes bump ``_version``,
        moves and copies change the storage."""
        return (assignments._version, mask._version, assignments.data_ptr(), mask.data_ptr(),
                assignments.device)

    def matches(self, assignments: torch.Tensor, mask: torch.Tensor) -> bool:
        """Whether this plan still describes ``assignments`` and ``mask``."""
        return self.key == self.key_of(assignments, mask)

    def gather(self, codebook: torch.Tensor, *, reuse: bool = False) -> torch.Tensor:
        """``W`` of :attr:`shape` from a ``(k, d)`` codebook (no autograd).

        Args:
            codebook: ``(k, d)``.
            reuse: Write into the plan's buffer when nothing else holds it (see the module
                docstring): pruned positions, zeroed once, are not written again. Otherwise
                the result is a new tensor.
        """
        flat = codebook.reshape(-1)
        out = self._output(flat, reuse)
        if self.kept is None:
            torch.index_select(flat, 0, self.src, out=out)
        else:
            values = self._values
            if values is None or values.dtype != flat.dtype or values.device != flat.device:
                values = self._values = flat.new_empty(self.src.numel())  # never escapes
            torch.index_select(flat, 0, self.src, out=values)
            out.index_copy_(0, self.kept, values)
        return out.detach().view(self.shape) if reuse else out.view(self.shape)

    def _output(self, like: torch.Tensor, reuse: bool) -> torch.Tensor:
        """The flat output: the kept buffer if ``reuse`` and free, else a new one (zeroed
        where positions are pruned, since only kept positions are written)."""
        out = self._out
        if (reuse and out is not None and out.dtype == like.dtype and out.device == like.device
                and _owners(out) == self._out_owners):
            return out
        out = like.new_zeros(self.numel) if self.kept is not None else like.new_empty(self.numel)
        if reuse:
            self._out, self._out_owners = out, _owners(out)
        return out

    def codebook_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """``dL/dc`` (``k*d``,) from ``dL/dW``: the sum over each coordinate's kept positions."""
        flat = grad.reshape(-1, 1).to(self._sum.dtype)
        return (self._sum @ flat).view(-1)


def _owners(t: torch.Tensor) -> int:
    """How many tensors share ``t``'s storage (the plan's own reference included)."""
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


class _GatherWeight(torch.autograd.Function):
    """``W = plan.gather(codebook)`` with the fixed sparse-sum backward."""

    @staticmethod
    def forward(ctx, codebook: torch.Tensor, plan: RebuildPlan) -> torch.Tensor:  # noqa: D102
        ctx.plan = plan
        ctx.codebook_shape = codebook.shape
        return plan.gather(codebook, reuse=True)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        g = ctx.plan.codebook_grad(grad).view(ctx.codebook_shape)
        return g.to(grad.dtype), None


def gather_weight(codebook: torch.Tensor, plan: RebuildPlan) -> torch.Tensor:
    """The rebuilt weight, differentiable in ``codebook`` (see the module docstring)."""
    return _GatherWeight.apply(codebook, plan)
