"""Regenerate the SCALE-Sim 3.0.0 golden numbers the dense WS closed form is tested against.

SCALE-Sim needs ``numpy<2``, so it runs in its own small venv, never in the project venv::

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim==3.0.0 'numpy<2'
    /tmp/scalesim-venv/bin/python tools/bench/scalesim_golden.py \
        --out tests/hw/data/scalesim_golden.json

For every array size in ``ARRAYS`` the script writes a SCALE-Sim config file
(weight stationary, ``InterfaceBandwidth = CALC``, so the memory system never stalls the
array), a topology CSV with the layers in ``LAYERS`` and a layout file (the default layout:
custom layouts off), runs the simulator in-process without traces, and records per layer
``COMPUTE_REPORT.csv`` (total cycles, stall cycles, utilization, mapping efficiency) and
``DETAILED_ACCESS_REPORT.csv`` (SRAM IFMAP reads, SRAM Filter reads, SRAM OFMAP writes).

SCALE-Sim convolutions have no padding: the IFMAP sizes below already include it
(ResNet-18 at 224x224: ``H_in + 2 * pad``). SCALE-Sim computes
``H_out = ceil((H_in - kh + s) / s)``, which for the strided ResNet-18 layers (``H_in - kh``
odd) is one row and column more than PyTorch's ``floor((H_in - kh) / s) + 1`` (113x113 instead
of 112x112 for conv1); the goldens keep SCALE-Sim's convention, and the tests derive ``T`` the
same way (``mvq_plugin.hw.read_topology`` follows it too).
This script uses only the standard library and SCALE-Sim; it does not import mvq_plugin.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

#: ``(name, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filter, stride)``; IFMAP sizes
#: include the padding. ResNet-18 at 224x224 (its distinct convs and the FC) plus edge cases.
LAYERS: list[tuple[str, int, int, int, int, int, int, int]] = [
    ('r18_conv1', 230, 230, 7, 7, 3, 64, 2),
    ('r18_layer1_3x3', 58, 58, 3, 3, 64, 64, 1),
    ('r18_layer2_0_conv1_s2', 58, 58, 3, 3, 64, 128, 2),
    ('r18_layer2_0_downsample_1x1_s2', 56, 56, 1, 1, 64, 128, 2),
    ('r18_layer2_3x3', 30, 30, 3, 3, 128, 128, 1),
    ('r18_layer3_0_conv1_s2', 30, 30, 3, 3, 128, 256, 2),
    ('r18_layer3_0_downsample_1x1_s2', 28, 28, 1, 1, 128, 256, 2),
    ('r18_layer3_3x3', 16, 16, 3, 3, 256, 256, 1),
    ('r18_layer4_0_conv1_s2', 16, 16, 3, 3, 256, 512, 2),
    ('r18_layer4_0_downsample_1x1_s2', 14, 14, 1, 1, 256, 512, 2),
    ('r18_layer4_3x3', 9, 9, 3, 3, 512, 512, 1),
    ('r18_fc', 1, 1, 1, 1, 512, 1000, 1),
    ('small_below_array', 5, 5, 3, 3, 2, 3, 1),
    ('odd_3x3_sr63_sc37', 13, 11, 3, 3, 7, 37, 1),
    ('odd_1x1_sr40_sc100', 9, 9, 1, 1, 40, 100, 1),
    ('odd_5x5_s3_sr75_sc70', 20, 17, 5, 5, 3, 70, 3),
]

#: ``(rows, cols)`` of the arrays simulated (one non-square, so R and C cannot be swapped).
ARRAYS: list[tuple[int, int]] = [(32, 32), (64, 64), (16, 8)]

#: Layers left out on an array because SCALE-Sim's cycle-level memory simulation of them
#: takes many minutes there (hundreds of folds); every layer is still covered on the others.
SKIP: dict[tuple[int, int], set[str]] = {
    (16, 8): {'r18_conv1', 'r18_layer1_3x3', 'r18_layer2_0_conv1_s2', 'r18_layer2_3x3',
              'r18_layer3_0_conv1_s2', 'r18_layer3_3x3', 'r18_layer4_0_conv1_s2',
              'r18_layer4_3x3', 'r18_fc'},
}

_LAYOUT_HEADER = (
    'Layer name,IFMAP Height Intraline Factor,IFMAP Width Intraline Factor,'
    'Filter Height Intraline Factor,Filter Width Intraline Factor,Channel Intraline Factor,'
    'Num Filter Intraline Factor,IFMAP Height Intraline Order,IFMAP Width Intraline Order,'
    'Channel Intraline Order,IFMAP Height Interline Order,IFMAP Width Interline Order,'
    'Channel Interline Order,Num Filter Intraline Order,Channel Intraline Order,'
    'Filter Height Intraline Order,Filter Width Intraline Order,Num Filter Interline Order,'
    'Channel Interline Order,Filter Height Interline Order,Filter Width Interline Order,')


def write_config(path: str, rows: int, cols: int, run_name: str) -> None:
    """Write a SCALE-Sim 3.0.0 config: WS, CALC bandwidth, no sparsity, default layout."""
    text = f"""[general]
run_name = {run_name}

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 6144
FilterSramSzkB = 6144
OfmapSramSzkB = 2048
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = ws
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""
    with open(path, 'w') as f:
        f.write(text)


def write_topology(path: str, layers) -> None:
    """SCALE-Sim conv topology CSV (trailing comma on every row, as its parser expects)."""
    with open(path, 'w') as f:
        f.write('Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,'
                'Num Filter,Strides,\n')
        for layer in layers:
            f.write(','.join(str(v) for v in layer) + ',\n')


def write_layout(path: str, layers) -> None:
    """Default layout file (only parsed: custom layouts are off in the config)."""
    with open(path, 'w') as f:
        f.write(_LAYOUT_HEADER + '\n')
        for layer in layers:
            name, ih, iw, fh, fw, ch, nf, _ = layer
            factors = [ih, iw, fh, fw, ch, nf]
            orders = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3]
            f.write(','.join([name] + [str(v) for v in factors + orders]) + ',\n')


def _read_report(path: str) -> list[dict[str, str]]:
    with open(path) as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0] if h.strip()]
    return [dict(zip(header, (v.strip() for v in row))) for row in rows[1:] if row]


def run_array(rows: int, cols: int, layers, workdir: str) -> list[dict]:
    """Run SCALE-Sim on ``layers`` for one array; return one golden record per layer."""
    from scalesim.scale_sim import scalesim  # imported here: only the SCALE-Sim venv has it

    name = f'ws_{rows}x{cols}'
    cfg, topo, layout = (os.path.join(workdir, f'{name}.{ext}') for ext in ('cfg', 'csv',
                                                                            'layout.csv'))
    write_config(cfg, rows, cols, name)
    write_topology(topo, layers)
    write_layout(layout, layers)
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
                   layout=layout)
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=workdir)
    compute = _read_report(os.path.join(workdir, name, 'COMPUTE_REPORT.csv'))
    access = _read_report(os.path.join(workdir, name, 'DETAILED_ACCESS_REPORT.csv'))
    out = []
    for layer, comp, acc in zip(layers, compute, access):
        lname, ih, iw, fh, fw, ch, nf, s = layer
        out.append(dict(
            array_rows=rows, array_cols=cols, layer=lname, ifmap_h=ih, ifmap_w=iw,
            filter_h=fh, filter_w=fw, channels=ch, num_filter=nf, stride=s,
            total_cycles=int(comp['Total Cycles']),
            total_cycles_incl_prefetch=int(comp['Total Cycles (incl. prefetch)']),
            stall_cycles=int(comp['Stall Cycles']),
            overall_util_pct=float(comp['Overall Util %']),
            mapping_efficiency_pct=float(comp['Mapping Efficiency %']),
            compute_util_pct=float(comp['Compute Util %']),
            sram_ifmap_reads=int(acc['SRAM IFMAP Reads']),
            sram_filter_reads=int(acc['SRAM Filter Reads']),
            sram_ofmap_writes=int(acc['SRAM OFMAP Writes'])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/bench/scalesim_golden.json',
                        help='tests/hw/data/scalesim_golden.json updates the test data')
    parser.add_argument('--only', nargs='*', help='layer names to run (default: all)')
    args = parser.parse_args(argv)
    from importlib.metadata import version

    import scalesim  # noqa: F401  (fail early outside the SCALE-Sim venv)
    records = []
    for rows, cols in ARRAYS:
        layers = [lay for lay in LAYERS if (not args.only or lay[0] in args.only)
                  and lay[0] not in SKIP.get((rows, cols), set())]
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            records += run_array(rows, cols, layers, tmp)
        print(f'{rows}x{cols}: {len(layers)} layers in {time.time() - start:.1f} s',
              file=sys.stderr)
        doc = dict(
            generator='tools/bench/scalesim_golden.py',
            simulator=f'scalesim {version("scalesim")}', numpy=version('numpy'),
            settings='dataflow=ws, InterfaceBandwidth=CALC, no sparsity, default layout, '
                     'word size 1 byte',
            records=records)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, 'w') as f:         # after every array: partial runs are kept
            json.dump(doc, f, indent=1)
    print(f'wrote {len(records)} records to {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
