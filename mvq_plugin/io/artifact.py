"""Saving and loading models as ``.mvq`` artifacts (format in :mod:`.format`).

:func:`save` writes a compressed model in the bits its accounting promises, atomically;
:func:`load` restores it bit for bit into a freshly built model, after checking everything
(:mod:`.codec`) and before changing the model. :func:`inspect_artifact` and
:func:`read_header` (:mod:`.codec`'s, re-exported here) read a file without a model.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import secrets
from typing import Any, BinaryIO, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.channels import CHANNELS_ATTR, ChannelPruning, apply_channel_pruning
from ..core.config import CONFIG_ATTR, MVQConfig
from ..core.parametrize import MVQWeight, Stage, attach_mvq_weight, quantized_layers
from ..version import __version__
from .codec import (
    DecodedLayer,
    encode_header,
    encode_layer,
    encode_tensor,
    inspect_artifact,
    read_artifact,
    read_header,
)
from .format import (
    FLOAT_DTYPES,
    FORMAT_VERSION,
    ArtifactInfo,
    ArtifactMismatchError,
    CorruptArtifactError,
    CoverageError,
    crc32,
    storage_dtype,
)

__all__ = ['save', 'load', 'inspect_artifact', 'read_header']

logger = logging.getLogger('mvq_plugin')


def _sd_prefix(name: str) -> str:
    """The state-dict key prefix of module ``name`` (``''`` for the root)."""
    return f'{name}.' if name else ''


def _config_dict(model: nn.Module, config: MVQConfig | dict | None) -> dict | None:
    cfg = config if config is not None else getattr(model, CONFIG_ATTR, None)
    if cfg is None:
        return None
    if isinstance(cfg, MVQConfig):
        return cfg.to_dict()
    if isinstance(cfg, dict):
        return dict(cfg)
    raise ValueError(f'config must be an MVQConfig, a dict or None, got {type(cfg).__name__}')


def _write_chunks(fh: BinaryIO, chunks: Sequence[bytes]) -> None:
    for chunk in chunks:
        fh.write(chunk)


def _atomic_write(path: str, chunks: Sequence[bytes]) -> None:
    """Writes ``chunks`` to a temporary file next to ``path``, then renames it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory,
                       f'.{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0), 0o666)
    try:
        with os.fdopen(fd, 'wb') as fh:
            _write_chunks(fh, chunks)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, 'O_DIRECTORY'):  # make the rename durable (POSIX)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


# --------------------------------------------------------------------------------- save


def save(model: nn.Module, path: str | os.PathLike, *, float_dtype: str = 'float32',
         config: MVQConfig | dict | None = None) -> ArtifactInfo:
    """Writes a compressed model as one ``.mvq`` file (format in the module docstring).

    The stored codebooks are what the model computes with ``set_codebook_quant(model, True)``:
    int8 ``round(c / s)`` with the layer's fixed ``scale`` buffer, or ``int8_scale(c)`` when
    the buffer is NaN; fp16; or fp32. The dense ``original`` weights the layers were clustered
    from are not stored.

    A model whose codebook quantization is off (right after ``compress``, or fine-tuned
    without ``set_codebook_quant``) computes with unrounded codebooks, so the loaded model
    differs slightly from it: the model itself is left unchanged, a warning names the layers
    and the largest rounding error, and :attr:`ArtifactInfo.codebook_rounding` holds them.
    Train the last part with ``set_codebook_quant(model, True)`` (``MVQHook``'s
    ``codebook_quant_start_iter``), or use ``codebook_bits=32``, and the two agree exactly.

    Args:
        model: A model compressed by :func:`mvq_plugin.compress` (or a dense model: then the
            file holds only uncompressed tensors).
        path: Target file; written atomically (temporary file + rename).
        float_dtype: ``'float32'`` (exact) or ``'float16'`` for the floating-point
            uncompressed tensors.
        config: The MVQConfig to record; default: ``model.mvq_config`` if set, else none.

    Returns:
        The :class:`ArtifactInfo` of the written file.

    Raises:
        ValueError: A layer is not clustered yet, a tensor has an unsupported dtype, or
            ``float_dtype`` is not allowed.
    """
    path = os.fspath(path)
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"float_dtype={float_dtype!r} must be 'float32' or 'float16'")
    chunks: list[bytes] = []
    offset = 0

    def add(data: bytes, **extra: Any) -> dict:
        nonlocal offset
        entry = dict(offset=offset, length=len(data), crc32=crc32(data), **extra)
        chunks.append(data)
        offset += len(data)
        return entry

    layers = quantized_layers(model)
    excluded: list[str] = []
    layer_entries = []
    rounding: dict[str, float] = {}
    for name, q in layers.items():
        plist = model.get_submodule(name).parametrizations.weight
        if len(plist) != 1:
            raise ValueError(f'layer {name!r}: weight has {len(plist)} parametrizations; the '
                             'artifact stores a lone MVQWeight only')
        entry, sections, err = encode_layer(name, q)
        if err > 0:
            rounding[name] = err
        entry['sections'] = {sec: add(data, **extra) for sec, data, extra in sections}
        layer_entries.append(entry)
        excluded.append(_sd_prefix(name) + 'parametrizations.weight.')

    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    tensor_entries = []
    for key, value in model.state_dict().items():
        if any(key.startswith(p) for p in excluded):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f'state-dict entry {key!r} is a {type(value).__name__}, not a '
                             'tensor; the artifact stores tensors only')
        dtype = storage_dtype(value, float_dtype, key)
        entry = dict(name=key, kind='parameter' if key in param_names else 'buffer',
                     dtype=dtype, shape=list(value.shape))
        entry.update(add(encode_tensor(value, dtype)))
        tensor_entries.append(entry)

    channels = getattr(model, CHANNELS_ATTR, None)
    header = dict(format='mvq', version=FORMAT_VERSION, producer=f'mvq_plugin {__version__}',
                  config=_config_dict(model, config), float_dtype=float_dtype,
                  data_bytes=offset, layers=layer_entries, tensors=tensor_entries)
    if channels is not None:
        header['channel_pruning'] = channels.to_dict()
    head = encode_header(header)
    _atomic_write(path, [head, *chunks])
    info = ArtifactInfo.from_header(path, header, len(head), len(head) + offset)
    info.codebook_rounding = rounding
    if rounding:
        worst = max(rounding, key=rounding.get)
        logger.warning(
            'save %s: %d layer(s) compute with unrounded codebooks (quantization off) but the '
            'artifact stores them rounded to their codebook_bits, so the loaded model differs '
            'from this one; largest codebook rounding error %.3g in %s; layers: %s. Switch '
            'set_codebook_quant(model, True) on for the last fine-tuning steps to save exactly '
            'what the model computes.', path, len(rounding), rounding[worst], worst,
            _names(list(rounding)))
    logger.info('saved %s: %d bytes (%d layers, %d tensors)', path, info.total_bytes,
                info.num_layers, info.num_tensors)
    return info


# --------------------------------------------------------------------------------- load


def _build(layer: DecodedLayer) -> MVQWeight:
    q = MVQWeight(layer.codebook, layer.assignments, layer.mask, layer.weight_shape,
                  layer.vector_axis, n=layer.n, m=layer.m, method=layer.method,
                  codebook_bits=layer.codebook_bits)
    if layer.scale is not None:
        q.scale.fill_(layer.scale)
    q.codebook_quant = True
    return q


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ', '.join(repr(n) for n in names[:limit])
    return shown + (f' and {len(names) - limit} more' if len(names) > limit else '')


def load(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> ArtifactInfo:
    """Restores a model from a ``.mvq`` file, bit for bit.

    ``model`` is built from the same architecture, dense or already compressed (e.g. by
    :func:`~mvq_plugin.core.staged.prepare`). Every compressed layer of the artifact gets an
    :class:`~mvq_plugin.core.parametrize.MVQWeight` (a dense layer is converted; an already
    compressed one is updated in place, keeping its codebook Parameter when the shapes agree)
    with the stored codebook, assignments and mask, its int8 scale fixed and ``quantize``
    on, so the model computes exactly what the saved model computed with
    ``set_codebook_quant(model, True)``. Every uncompressed tensor is loaded through
    ``load_state_dict``. A dense layer keeps its current weight as the frozen ``original``.
    The stored MVQConfig, if any, is put back as ``model.mvq_config``. The artifact of a
    channel-pruned model (:func:`~mvq_plugin.core.channels.prune_channels`) carries its
    pruning record: a model built unpruned is pruned the same way first.

    The file and its fit to the model are checked completely before the model is changed,
    so an error leaves the model as it was.

    Args:
        model: Target model, changed in place.
        path: The ``.mvq`` file.
        strict: Require that the model and the artifact hold the same tensors: every
            compressed layer and uncompressed tensor of the artifact exists in the model and
            every tensor of the model is in the artifact. With ``strict=False``, tensors
            missing on either side are skipped (logged); a compressed layer missing from the
            model, and any shape mismatch, are still errors.

    Returns:
        The :class:`ArtifactInfo` of the file.

    Raises:
        NotAnArtifactError: No MVQ magic.
        UnsupportedVersionError: Another format version.
        ChecksumError: A section (or the header) is corrupted.
        TruncatedArtifactError: The file is shorter than it declares.
        CorruptArtifactError: Other damage (malformed header, values out of range).
        ArtifactMismatchError: A layer or tensor is missing from the model or has another
            shape.
        CoverageError: ``strict`` and the model has tensors the artifact does not cover, or
            the reverse.
    """
    art = read_artifact(path)
    record = art.header.get('channel_pruning')
    if record is not None:
        try:
            record = ChannelPruning.from_dict(record)
        except (TypeError, ValueError) as err:
            raise CorruptArtifactError(art.path, f'channel_pruning: {err}') from None
        if getattr(model, CHANNELS_ATTR, None) != record:
            # The artifact's model was channel-pruned: give this one the same structure,
            # trying the whole load on a copy first so that a misfit leaves it unchanged.
            trial = copy.deepcopy(model)
            apply_channel_pruning(trial, record)
            _load_into(trial, art, strict)
            apply_channel_pruning(model, record)
    return _load_into(model, art, strict)


def _load_into(model: nn.Module, art: Any, strict: bool) -> ArtifactInfo:
    path = art.path
    model_q = quantized_layers(model)
    excluded = [_sd_prefix(n) + 'parametrizations.weight.' for n in model_q]
    model_sd = {k: v for k, v in model.state_dict().items()
                if not any(k.startswith(p) for p in excluded)}
    model_weights = {_sd_prefix(n) + 'weight': n for n in model_q}
    modules = dict(model.named_modules())

    consumed: set[str] = set()
    todo: list[tuple[nn.Module, MVQWeight | None, MVQWeight]] = []
    for layer in art.layers:
        module = modules.get(layer.name)
        if module is None:
            raise ArtifactMismatchError(path, f'layer {layer.name!r} of the artifact is not in '
                                        'the model', layer.name)
        old = model_q.get(layer.name)
        if old is not None:
            shape = old.weight_shape
        else:
            if parametrize.is_parametrized(module, 'weight'):
                raise ArtifactMismatchError(path, f'layer {layer.name!r}: the model\'s weight '
                                            'has another (non-MVQ) parametrization', layer.name)
            weight = getattr(module, 'weight', None)
            if not isinstance(weight, torch.Tensor):
                raise ArtifactMismatchError(path, f'layer {layer.name!r}: the model\'s '
                                            f'{type(module).__name__} has no weight tensor',
                                            layer.name)
            shape = tuple(weight.shape)
            consumed.add(_sd_prefix(layer.name) + 'weight')
        if tuple(shape) != layer.weight_shape:
            raise ArtifactMismatchError(path, f'layer {layer.name!r} has weight shape '
                                        f'{list(shape)} in the model, {list(layer.weight_shape)}'
                                        ' in the artifact', layer.name)
        try:
            q = _build(layer)
        except ValueError as err:
            raise CorruptArtifactError(path, f'layer {layer.name!r}: {err}', layer.name) from None
        todo.append((module, old, q))

    dense: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for name, tensor in art.tensors.items():
        if name in model_weights:
            raise ArtifactMismatchError(path, f'layer {model_weights[name]!r} is compressed in '
                                        'the model but dense in the artifact; load into a '
                                        'dense model', name)
        target = model_sd.get(name)
        if target is None or name in consumed:
            missing.append(name)
            continue
        if tuple(target.shape) != tuple(tensor.shape):
            raise ArtifactMismatchError(path, f'tensor {name!r} has shape {list(target.shape)} '
                                        f'in the model, {list(tensor.shape)} in the artifact',
                                        name)
        if target.is_floating_point() != tensor.is_floating_point():
            raise ArtifactMismatchError(path, f'tensor {name!r} is {target.dtype} in the model, '
                                        f'{tensor.dtype} in the artifact', name)
        dense[name] = tensor
    stored_layers = {layer.name for layer in art.layers}
    uncovered = [k for k in model_sd if k not in dense and k not in consumed]
    uncovered += [n for n in model_q if n not in stored_layers]
    if strict and (missing or uncovered):
        parts = []
        if uncovered:
            parts.append(f'the model has {len(uncovered)} tensor(s)/layer(s) the artifact does '
                         f'not cover: {_names(uncovered)}')
        if missing:
            parts.append(f'the artifact has {len(missing)} tensor(s) the model lacks: '
                         f'{_names(missing)}')
        raise CoverageError(path, '; '.join(parts) + ' (strict=True)',
                            (uncovered or missing)[0])
    if missing:
        logger.warning('%s: %d artifact tensor(s) not in the model, skipped: %s', path,
                       len(missing), _names(missing))
    if uncovered:
        logger.warning('%s: %d model tensor(s)/layer(s) not in the artifact, left as they are: '
                       '%s', path, len(uncovered), _names(uncovered))

    # Everything is checked: change the model.
    config = art.header.get('config')
    cfg_obj = None
    if config is not None:
        try:
            cfg_obj = MVQConfig.from_dict(config)
        except (TypeError, ValueError) as err:
            logger.warning('%s: stored MVQConfig not understood (%s); model.%s not set', path,
                           err, CONFIG_ATTR)
    if dense:
        result = model.load_state_dict(dense, strict=False)
        if result.unexpected_keys:  # cannot happen after the checks above
            raise RuntimeError(f'{path}: unexpected keys {result.unexpected_keys}')
    for module, old, q in todo:
        if old is None:
            attach_mvq_weight(module, q)
        else:
            _update(module, old, q)
    if cfg_obj is not None:
        setattr(model, CONFIG_ATTR, cfg_obj)
    logger.info('loaded %s: %d compressed layers, %d tensors', path, len(todo), len(dense))
    return art.info


@torch.no_grad()
def _update(module: nn.Module, old: MVQWeight, new: MVQWeight) -> None:
    """Puts ``new``'s state into an existing MVQ weight (in place when shapes agree)."""
    same = (old.codebook.shape == new.codebook.shape
            and old.assignments.shape == new.assignments.shape)
    if not same:
        plist = module.parametrizations.weight
        index = next(i for i, p in enumerate(plist) if p is old)
        plist[index] = new.to(old.codebook.device)
        return
    old.codebook.copy_(new.codebook)
    old.assignments.copy_(new.assignments)
    old.mask.copy_(new.mask)
    old.scale.copy_(new.scale)
    old.stage.fill_(Stage.CLUSTERED)
    old.vector_axis, old.n, old.m = new.vector_axis, new.n, new.m
    old.method, old.codebook_bits = new.method, new.codebook_bits
    old.codebook_quant = True
