"""The paper's hardware figures (MVQ, ASPLOS 2025, section 7) beside this model's.

:data:`PUBLISHED` holds the paper's numbers (Table 7, Figs. 15, 17, 19, 20, Table 9; bar values
as printed on the figures). :func:`paper_workloads` builds its five networks (torchvision
ResNet-18, ResNet-50, VGG-16, AlexNet; timm MobileNetV1 with its pointwise layers only),
224x224, batch 1, planned with the MVQ presets the six settings name
(:data:`~mvq_plugin.hw.arch.PAPER_SETTINGS`). :func:`compare` computes every figure and returns
rows ``(figure, item, paper, ours, ratio, note)``; a row more than 15% off names the assumption
switch (:data:`SWITCHES`) that moves it closest to the paper, and :func:`switch_effects` shows
each switch's effect alone.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from .arch import PAPER_SETTINGS, PAPER_SIZES, get_arch
from .estimator import cost_workload
from .report import HardwareReport
from .scaling import TABLE9
from .workload import Workload

__all__ = ['PUBLISHED', 'PAPER_NETWORKS', 'SWITCHES', 'Switch', 'paper_workloads', 'compare',
           'switch_effects', 'TOLERANCE']

logger = logging.getLogger('mvq_plugin')

TOLERANCE = 0.15
PAPER_NETWORKS = ('resnet18', 'resnet50', 'vgg16', 'alexnet', 'mobilenetv1_pw')
_S = PAPER_SIZES

#: The paper's published values (section 7).
PUBLISHED: dict[str, Any] = {
    # Table 7: accelerator area (mm^2) at 16/32/64; EWS-C and EWS-CM share a row.
    'table7': {'WS': (0.188, 0.734, 2.812), 'EWS': (0.36, 1.14, 4.236),
               'EWS-CM': (0.650, 1.505, 4.776), 'EWS-CMS': (0.469, 0.828, 2.129)},
    # Fig. 15: data-access cost reduction from MVQ (EWS / EWS-CMS) at 16/32/64.
    'fig15': {'resnet18': (2.9, 3.6, 4.1), 'resnet50': (2.7, 3.2, 3.4),
              'vgg16': (1.7, 2.4, 1.9), 'mobilenetv1_pw': (1.9, 2.0, 1.9),
              'alexnet': (1.9, 2.3, 3.0)},
    # Fig. 17: speed-up over WS at 64x64.
    'fig17': {'resnet18': {'WS-CMS': 1.4, 'EWS': 1.2, 'EWS-CMS': 2.2},
              'resnet50': {'WS-CMS': 1.2, 'EWS': 1.3, 'EWS-CMS': 1.9},
              'vgg16': {'WS-CMS': 1.2, 'EWS': 1.3, 'EWS-CMS': 1.9},
              'mobilenetv1_pw': {'WS-CMS': 1.1, 'EWS': 1.3, 'EWS-CMS': 1.5},
              'alexnet': {'WS-CMS': 1.1, 'EWS': 1.4, 'EWS-CMS': 1.7}},
    # Fig. 19: TOPS/W on ResNet-18 without main memory, 16/32/64.
    'fig19': {'WS': (0.7, 1.5, 2.1), 'WS-CMS': (0.9, 2.1, 4.5), 'EWS': (1.5, 2.2, 2.9),
              'EWS-C': (1.8, 2.6, 3.8), 'EWS-CM': (1.9, 3.0, 4.3),
              'EWS-CMS': (2.3, 4.1, 6.9)},
    # Fig. 20: energy-efficiency gain over WS at 16/32/64.
    'fig20': {'vgg16': {'WS-CMS': (1.3, 1.6, 2.1), 'EWS': (2.4, 1.6, 1.4),
                        'EWS-CMS': (4.8, 3.9, 4.3)},
              'alexnet': {'WS-CMS': (1.2, 1.3, 1.4), 'EWS': (2.4, 2.0, 1.4),
                          'EWS-CMS': (3.4, 3.3, 2.6)},
              'mobilenetv1_pw': {'WS-CMS': (1.3, 1.3, 1.7), 'EWS': (2.1, 1.6, 1.3),
                                 'EWS-CMS': (2.5, 2.3, 2.7)}},
    # Table 9: MVQ-64 on AlexNet at 75 % and 50 % sparsity; "1.73x" = 3.8 / 2.19.
    'table9': {'mvq64_alexnet_75': 4.4, 'mvq64_alexnet_50': 3.8, 'vs_s2ta': 1.73},
}


@dataclass(frozen=True)
class Switch:
    """An assumption of this model that the paper does not state, as a switch.

    Attributes:
        name: Switch name.
        text: What turning it on changes.
        arch: ArrayConfig fields it sets.
        workload: Transform of the compressed workloads (``None``: unchanged).
    """

    name: str
    text: str
    arch: dict[str, Any]
    workload: Callable[[Workload], Workload] | None = None


def _conv1_sparse(wl: Workload) -> Workload:
    first = wl.layers[0]
    ref = next((lay for lay in wl.layers if lay.compressed), None)
    if first.compressed or ref is None or first.out_channels % (ref.block_size or 1):
        return wl
    return wl.with_compression(ref.block_size, ref.num_codewords, ref.n, ref.m, ref.method,
                               predicate=lambda lay: lay.compressed or lay is first,
                               vector_axis=ref.vector_axis)


def _conv_only(wl: Workload) -> Workload:
    return Workload(wl.name, [lay for lay in wl.layers if lay.kind == 'conv'], wl.input_shape)


#: The switches (all off in the presets).
SWITCHES: dict[str, Switch] = {s.name: s for s in (
    Switch('no_static_power', 'no SoC static power (the only fitted numbers, Fig. 19 EWS)',
           dict(static_power_mw=0.0)),
    Switch('adders_gated', 'idle psum adders of the sparse tile gated (only Q of d add)',
           dict(idle_adders_gated=True)),
    Switch('conv1_sparse', 'the first conv compressed too (no dense layer on the sparse tile)',
           {}, _conv1_sparse),
    Switch('conv_only', 'convolutions only (FC layers left out, as MobileNet keeps pointwise '
           'only)', {}, _conv_only),
    Switch('unbounded_weight_load', 'weight loading not limited by the 64-bit DMA',
           dict(weight_load_bw_bits=None)),
)}


def paper_workloads(networks: tuple[str, ...] = PAPER_NETWORKS, batch: int = 1,
                    size: int = 224) -> dict[str, dict[str | None, Workload]]:
    """The paper's networks, planned with each MVQ preset the settings use.

    Returns:
        ``{network: {preset or None (dense): Workload}}``; 50 % sparsity (Table 9) is the
        ``'resnet@8:16'`` entry.
    """
    import torch  # noqa: F401  (torchvision and timm need it)

    from ..core.plan import plan
    from ..core.presets import preset
    from .tracing import extract_workload
    builders = {'resnet18': 'resnet18', 'resnet50': 'resnet50', 'vgg16': 'vgg16',
                'alexnet': 'alexnet'}
    out: dict[str, dict[str | None, Workload]] = {}
    for net in networks:
        if net in builders:
            import torchvision
            model = getattr(torchvision.models, builders[net])()
        elif net == 'mobilenetv1_pw':
            import timm
            model = timm.create_model('mobilenetv1_100', pretrained=False)
        else:
            raise ValueError(f'unknown paper network {net!r}; allowed: {PAPER_NETWORKS}')
        entry: dict[str | None, Workload] = {}
        presets = {p for _, p in PAPER_SETTINGS.values() if p} | {'resnet@8:16'}
        for name in sorted(presets):
            cfg = preset('resnet', n=8) if name == 'resnet@8:16' else preset(name)
            wl = extract_workload(model, (batch, 3, size, size), plan=plan(model, cfg),
                                  name=net)
            if net == 'mobilenetv1_pw':
                wl = Workload(net, [lay for lay in wl.layers
                                    if lay.kernel == (1, 1) and lay.groups == 1
                                    and lay.kind == 'conv'], wl.input_shape)
            entry[name] = wl
        entry[None] = entry['resnet'].dense()
        out[net] = entry
        logger.info('hw: %s traced (%d layers)', net, len(entry[None]))
    return out


def _report(wls: dict[str | None, Workload], setting: str, size: int,
            switch: Switch | None = None, **fields: Any) -> HardwareReport:
    preset_name = PAPER_SETTINGS[setting][1]
    wl = wls[preset_name]
    over = dict(fields)
    if switch is not None:
        over.update(switch.arch)
        if switch.workload is not None:
            wl = switch.workload(wl)
    return cost_workload(wl, get_arch(f'{setting}_{size}x{size}', **over))


def _ours(workloads: dict, switch: Switch | None = None) -> dict[str, Any]:
    """Every figure's values from the model (one switch on, or none)."""
    r18 = workloads['resnet18']
    out: dict[str, Any] = {'table7': {}, 'fig15': {}, 'fig17': {}, 'fig19': {}, 'fig20': {}}
    for setting in ('WS', 'EWS', 'EWS-C', 'EWS-CM', 'EWS-CMS'):
        out['table7'][setting] = tuple(
            _report(r18, setting, s, switch).area['accelerator'] * 1e-6 for s in _S)
    for net, wls in workloads.items():
        reps = {(st, s): _report(wls, st, s, switch) for st in ('WS', 'WS-CMS', 'EWS',
                                                                  'EWS-CMS') for s in _S}
        out['fig15'][net] = tuple(reps['EWS', s].total('energy_data_access') /
                                  reps['EWS-CMS', s].total('energy_data_access') for s in _S)
        out['fig17'][net] = {st: reps['WS', 64].cycles / reps[st, 64].cycles
                             for st in ('WS-CMS', 'EWS', 'EWS-CMS')}
        out['fig20'][net] = {st: tuple(reps[st, s].tops_per_w / reps['WS', s].tops_per_w
                                       for s in _S) for st in ('WS-CMS', 'EWS', 'EWS-CMS')}
        if net == 'resnet18':
            out['fig19'] = {st: tuple(_report(wls, st, s, switch).tops_per_w for s in _S)
                            for st in PAPER_SETTINGS}
    if 'alexnet' in workloads:
        alex = workloads['alexnet']
        r75 = _report(alex, 'EWS-CMS', 64, switch)
        wl50 = alex['resnet@8:16'] if switch is None or switch.workload is None else \
            switch.workload(alex['resnet@8:16'])
        over = dict(switch.arch) if switch else {}
        r50 = cost_workload(wl50, get_arch('EWS-CMS_64x64', sparse_n=8, **over))
        s2ta = next(d for d in TABLE9 if d.name == 'S2TA-65nm').normalized()
        out['table9'] = {'mvq64_alexnet_75': r75.tops_per_w, 'mvq64_alexnet_50': r50.tops_per_w,
                         'vs_s2ta': r50.tops_per_w / s2ta}
    return out


def _flatten(figs: dict[str, Any]) -> dict[tuple[str, str], float]:
    flat = {}
    for fig, body in figs.items():
        for key, val in body.items():
            if isinstance(val, dict):
                for sub, v in val.items():
                    if isinstance(v, tuple):
                        for s, x in zip(_S, v):
                            flat[fig, f'{key} {sub} {s}x{s}'] = x
                    else:
                        flat[fig, f'{key} {sub}'] = v
            elif isinstance(val, tuple):
                for s, x in zip(_S, val):
                    flat[fig, f'{key} {s}x{s}'] = x
            else:
                flat[fig, key] = val
    return flat


def switch_effects(workloads: dict) -> dict[str, dict[tuple[str, str], float]]:
    """``{'none' | switch: {(figure, item): ours}}``: every figure with each switch on alone."""
    out = {'none': _flatten(_ours(workloads))}
    for name, sw in SWITCHES.items():
        out[name] = _flatten(_ours(workloads, sw))
    return out


def compare(workloads: dict, effects: dict | None = None) -> list[dict[str, Any]]:
    """Rows ``{figure, item, paper, ours, ratio, note}`` for every published value.

    A row within :data:`TOLERANCE` notes so; otherwise the note names the switch that moves it
    closest to the paper (and the value it then takes), or says none does.
    """
    effects = effects or switch_effects(workloads)
    paper = _flatten(PUBLISHED)
    rows = []
    for key, ours in effects['none'].items():
        if key not in paper:
            continue
        pub = paper[key]
        ratio = ours / pub
        if abs(ratio - 1) <= TOLERANCE:
            note = 'within 15%'
        else:
            best = min(SWITCHES, key=lambda n: abs(effects[n][key] / pub - 1))
            alt = effects[best][key]
            if abs(alt / pub - 1) < abs(ratio - 1) - 0.02:
                note = f'{best}: {alt:.3g} ({alt / pub:.2f}x)'
            else:
                note = 'no switch closes it'
        rows.append(dict(figure=key[0], item=key[1], paper=pub, ours=ours, ratio=ratio,
                         note=note))
    return rows
