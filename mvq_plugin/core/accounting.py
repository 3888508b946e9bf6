"""Compression-ratio accounting of a whole model (docs/design.md section 2).

Each compressed layer costs :func:`~mvq_plugin.core.bits.layer_bits` (indices, mask codes,
codebook and its int8 scale). Every other parameter costs 32 bits.
``CR = 32 * total_params / bits``. BN running statistics (buffers) are not counted, as in
PQF/BGD; they are reported apart (``bits_buffers``: 32 bits per floating-point element, the
native width otherwise, which is what the ``.mvq`` artifact stores), so that
``(bits + bits_buffers) / 8`` is the artifact's size without its header (up to rounding each
packed section to whole bytes).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .bits import LayerBits, layer_bits
from .compress import to_dense
from .parametrize import MVQWeight, codebook_parameters, quantized_layers

__all__ = ['LayerBits', 'layer_bits', 'CompressionStats', 'compression_stats', 'count_macs',
           'run_forward']


@dataclass
class CompressionStats:
    """What a compressed model costs, by part.

    Attributes:
        bits_indices: Assignment bits.
        bits_masks: Mask-code bits.
        bits_codebooks: Codebook bits (incl. int8 scales).
        bits_uncompressed: 32 bits per parameter not covered by a codebook.
        params_total: Parameters of the dense model.
        params_compressed: Weight elements now represented by codebooks.
        params_uncompressed: The rest.
        num_compressed_layers: Layers with an MVQ weight.
        macs_dense: Multiply-accumulates of one forward pass of the dense model (None without
            example inputs).
        macs_effective: MACs with pruned weights skipped (N/M of a pruned layer's MACs).
        macs_dense_torch_pruning: ``torch_pruning.utils.count_ops_and_params`` of the dense
            model, as a cross-check (counts all layers it knows, e.g. also BN).
        layers: Per compressed layer ``{name: {...}}``.
        buffer_elements: Elements of the persistent buffers (BN running statistics...),
            without the MVQ layers' own buffers.
        bits_buffers: Their storage bits (not part of :attr:`bits` nor of the ratio).
        artifact_bytes: Size on disk of the model's ``.mvq`` artifact, when one was given.
        artifact_header_bytes: Of which preamble and header.
    """

    bits_indices: int = 0
    bits_masks: int = 0
    bits_codebooks: int = 0
    bits_uncompressed: int = 0
    params_total: int = 0
    params_compressed: int = 0
    params_uncompressed: int = 0
    num_compressed_layers: int = 0
    macs_dense: int | None = None
    macs_effective: int | None = None
    macs_dense_torch_pruning: int | None = None
    layers: dict[str, dict] = field(default_factory=dict)
    buffer_elements: int = 0
    bits_buffers: int = 0
    artifact_bytes: int | None = None
    artifact_header_bytes: int | None = None

    @property
    def bits(self) -> int:
        """Total bits."""
        return self.bits_indices + self.bits_masks + self.bits_codebooks + self.bits_uncompressed

    @property
    def bytes(self) -> float:
        """Total bits / 8."""
        return self.bits / 8

    @property
    def stored_bytes(self) -> float:
        """``(bits + bits_buffers) / 8``: what the artifact must hold besides its header."""
        return (self.bits + self.bits_buffers) / 8

    @property
    def compression_ratio(self) -> float:
        """``32 * params_total / bits``."""
        return 32 * self.params_total / self.bits if self.bits else float('nan')

    @property
    def layers_ratio(self) -> float:
        """``32 * params_compressed / (bits - bits_uncompressed)``: the ratio over the
        compressed layers only, the paper's Eq. 7 (assignments, masks and codebooks against the
        fp32 weights they replace)."""
        bits = self.bits - self.bits_uncompressed
        return 32 * self.params_compressed / bits if bits else float('nan')

    def to_dict(self) -> dict:
        """Plain dict including the derived totals."""
        out = asdict(self)
        out.update(bits=self.bits, bytes=self.bytes, stored_bytes=self.stored_bytes,
                   compression_ratio=self.compression_ratio, layers_ratio=self.layers_ratio)
        return out

    def __str__(self) -> str:
        mib = self.bits / 8 / 2**20
        lines = [
            f'compressed layers : {self.num_compressed_layers}',
            f'params            : {self.params_total:,} ({self.params_compressed:,} in codebooks)',
            f'bits              : {self.bits:,} ({mib:.3f} MiB) = indices {self.bits_indices:,}'
            f' + masks {self.bits_masks:,} + codebooks {self.bits_codebooks:,}'
            f' + uncompressed {self.bits_uncompressed:,}',
            f'compression ratio : {self.compression_ratio:.2f}x vs fp32 '
            f'({self.layers_ratio:.2f}x over the compressed layers, the paper\'s Eq. 7)',
            f'buffers           : {self.buffer_elements:,} elements, {self.bits_buffers:,} bits '
            f'(BN statistics etc.; not in the ratio)',
        ]
        if self.artifact_bytes is not None:
            header = self.artifact_header_bytes or 0
            body = self.artifact_bytes - header
            lines.append(
                f'on disk           : {self.artifact_bytes:,} bytes = header {header:,} + '
                f'{body:,} vs accounted (bits + buffers) / 8 = {self.stored_bytes:,.0f} '
                f'({(body / self.stored_bytes - 1) if self.stored_bytes else 0:+.3%})')
        if self.macs_dense:
            lines.append(f'MACs              : dense {self.macs_dense:,}, effective '
                         f'{self.macs_effective:,} ({self.macs_effective / self.macs_dense:.1%})')
        return '\n'.join(lines)


def run_forward(model: nn.Module, inputs, forward_fn=None):
    """``forward_fn(model, inputs)``; else ``model(*inputs)`` for a tuple, ``model(inputs)``."""
    if forward_fn is not None:
        return forward_fn(model, inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def count_macs(model: nn.Module, example_inputs, forward_fn=None) -> dict[str, int]:
    """Dense MACs per conv/linear module name from one eval-mode forward pass (hooks).

    Args:
        model: Any module.
        example_inputs: A tensor, or a tuple of positional inputs.
        forward_fn: ``forward_fn(model, example_inputs)`` instead of ``model(*inputs)``.
    """
    macs: dict[str, int] = {}
    handles = []

    def hook(name):
        def fn(mod, inp, out):
            if isinstance(mod, nn.Conv2d):
                per_out = mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]
            else:
                per_out = mod.weight.shape[1]
            macs[name] = macs.get(name, 0) + out.numel() * per_out
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            handles.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            run_forward(model, example_inputs, forward_fn)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


def compression_stats(model: nn.Module, example_inputs=None,
                      torch_pruning_check: bool = False, artifact=None) -> CompressionStats:
    """Bits, bytes, compression ratio and MACs of a (compressed) model.

    Args:
        model: A model, compressed by :func:`mvq_plugin.compress` or not.
        example_inputs: Optional input (tensor or tuple) for MAC counting.
        torch_pruning_check: Also count dense MACs with torch-pruning's
            ``count_ops_and_params`` on a dense copy (slower; a cross-check).
        artifact: The :class:`~mvq_plugin.io.artifact.ArtifactInfo` of the model's ``.mvq``
            file (what :func:`mvq_plugin.save`/``load`` return), to report its bytes on disk
            next to the accounted bits.

    Returns:
        A :class:`CompressionStats`.
    """
    stats = CompressionStats()
    quantized = quantized_layers(model)
    skip_params = set()
    for name, q in quantized.items():
        module = model.get_submodule(name)
        skip_params.add(id(module.parametrizations.weight.original))
        skip_params.update(id(p) for p in codebook_parameters(q))  # codewords, LSQ scale
        numel = q.assignments.numel() * q.block_size
        bits = q.bits()
        stats.bits_indices += bits.indices
        stats.bits_masks += bits.masks
        stats.bits_codebooks += bits.codebook
        stats.params_compressed += numel
        stats.layers[name] = dict(numel=numel, bits=bits.total, indices=bits.indices,
                                  masks=bits.masks, codebook=bits.codebook,
                                  density=q.n / q.m if q.prunes else 1.0)
    seen = set()
    for p in model.parameters():
        if id(p) in skip_params or id(p) in seen:
            continue
        seen.add(id(p))
        stats.params_uncompressed += p.numel()
    stats.bits_uncompressed = 32 * stats.params_uncompressed
    seen_buffers = set()
    for module in model.modules():
        if isinstance(module, MVQWeight):
            continue
        for bname, b in module._buffers.items():
            if b is None or bname in module._non_persistent_buffers_set or id(b) in seen_buffers:
                continue
            seen_buffers.add(id(b))
            stats.buffer_elements += b.numel()
            stats.bits_buffers += b.numel() * (32 if b.is_floating_point()
                                               else 8 * b.element_size())
    if artifact is not None:
        stats.artifact_bytes = int(artifact.total_bytes)
        stats.artifact_header_bytes = int(artifact.header_bytes)
    stats.params_total = stats.params_compressed + stats.params_uncompressed
    stats.num_compressed_layers = len(quantized)
    if example_inputs is not None:
        macs = count_macs(model, example_inputs)  # eval mode, restored after
        stats.macs_dense = sum(macs.values())
        stats.macs_effective = int(sum(
            v * stats.layers.get(k, {}).get('density', 1.0) for k, v in macs.items()))
        if torch_pruning_check:
            import torch_pruning as tp

            dense = to_dense(copy.deepcopy(model)).eval()
            ops, _ = tp.utils.count_ops_and_params(dense, example_inputs)
            stats.macs_dense_torch_pruning = int(ops)
    return stats
