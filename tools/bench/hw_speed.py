#!/usr/bin/env python
"""Speed of the hardware model: a whole ResNet-50 estimate (trace + cost) must take < 1 s.

Prints, side by side, the time to trace ResNet-50 (torchvision, random init) with meta
tensors and with real tensors, to cost it on ``ws``/``ews``/``mvq`` (with the EWS baseline and
the sparsity-only / VQ-only decomposition), and the ratios. Exits non-zero when the default
path (meta trace + full MVQ-vs-EWS estimate) takes 1 s or more (best of ``--repeat``).

    python tools/bench/hw_speed.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import sys

from common import best_of, resnet50, set_threads  # same folder (tools/bench/common.py)

import mvq_plugin as mvq
from mvq_plugin import hw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--limit-s', type=float, default=1.0)
    args = parser.parse_args(argv)

    set_threads(2)
    model = resnet50()
    shape = (1, 3, 224, 224)
    plan = mvq.plan(model, mvq.MVQConfig())

    wl, t_meta = best_of(lambda: hw.extract_workload(model, shape, plan=plan, trace='meta'),
                         args.repeat)
    wl_real, t_real = best_of(lambda: hw.extract_workload(model, shape, plan=plan,
                                                          trace='real'), 1)
    assert wl.records() == wl_real.records(), 'meta and real traces disagree'
    t_cost = {}
    for arch in ('ws', 'ews'):
        _, t_cost[arch] = best_of(lambda: hw.estimate(wl, arch=arch), args.repeat)
    rep, t_cost['mvq vs ews (decomposed)'] = best_of(
        lambda: hw.estimate(wl, arch='mvq', baseline='ews'), args.repeat)
    est = hw.HardwareEstimator(arch='mvq', input_shape=shape, baseline='ews')
    rep, t_total = best_of(lambda: est.estimate(model, plan=plan), args.repeat)

    print(f'ResNet-50: {len(wl)} layers, {wl.macs / 1e9:.2f} GMACs, '
          f'{len(plan.compressed)} layers planned for MVQ')
    print(f'{"step":40s} {"seconds":>9s} {"vs whole":>9s}')
    rows = [('trace, meta tensors', t_meta), ('trace, real tensors', t_real)]
    rows += [(f'cost {k}', v) for k, v in t_cost.items()]
    rows += [('whole estimate (HardwareEstimator)', t_total)]
    for label, t in rows:
        print(f'{label:40s} {t:9.3f} {t / t_total:8.2f}x')
    print(f'real/meta trace time: {t_real / t_meta:.1f}x')
    g = rep.gains()['both']
    print(f'MVQ vs EWS: speed-up {g["speedup"]:.2f}x, energy efficiency '
          f'{g["energy_efficiency"]:.2f}x, array area -{100 * g["array_area_reduction"]:.1f}%')
    ok = t_total < args.limit_s
    print(f'whole ResNet-50 estimate {t_total:.3f} s: {"OK" if ok else "TOO SLOW"} '
          f'(limit {args.limit_s} s)')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
