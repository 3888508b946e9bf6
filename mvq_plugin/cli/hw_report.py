"""Hardware-cost report of a network on the analytical WS / EWS / MVQ accelerator model.

Examples (``mvq-hw-report`` is installed with the package; ``python tools/hw_report.py`` is the
same command from a checkout)::

    # timm model (random init, nothing downloaded), the paper's EWS-CMS vs its EWS base
    mvq-hw-report --timm resnet18 --arch EWS-CMS_32x32 --baseline EWS_32x32
    # any trained .mvq artifact: the network it was saved from, then the artifact
    mvq-hw-report --timm resnet18 --checkpoint model.mvq
    mvq-hw-report --model torchvision:resnet18 --checkpoint model.mvq
    mvq-hw-report --config configs/mmpretrain/resnet18_mvq-4-16-k512_in1k.py \
        --checkpoint work_dirs/mvq/model.mvq
    # SCALE-Sim topology file on a 32x32 plain WS array, as CSV
    mvq-hw-report --topology net.csv --arch ws --rows 32 --cols 32 --format csv
    # Markdown plus PNG plots
    mvq-hw-report --timm resnet50 --format md --plot work_dirs/hw
    # an OpenMMLab MVQ config, planned with its own settings
    mvq-hw-report --config configs/mmdet/mask-rcnn_r50_fpn_mvq-4-16-k256_1x_coco.py \
        --input-shape 1 3 800 1216

A dense network costed on an architecture with the sparse array or the VQ weight stream
(``EWS-CMS``, ``WS-CMS``, ``mvq``...) is first planned with ``--block-size/--codewords/--nm``
(``mvq_plugin.plan``, the paper's d=16, k=512, 4:16 along the output channel by default);
``--no-plan`` costs it dense. A ``--checkpoint`` (a ``.mvq`` artifact; with ``--config`` also
an mmengine checkpoint of an MVQ run) is loaded into the network first and the real compressed
model is costed (its codewords used, index entropy). The report names the sparse tile the model
maps to.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..core.config import nm_pattern
from ..integrations.mmcv_ops import exit_on_missing_ops

logger = logging.getLogger('mvq_plugin')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='mvq-hw-report', description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n', 2)[2])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--timm', metavar='NAME', help='timm model name (pretrained=False)')
    src.add_argument('--model', metavar='SPEC',
                     help='timm:NAME | torchvision:NAME | package.module:factory (random init, '
                          'as tools/export.py --arch)')
    src.add_argument('--topology', metavar='CSV', help='SCALE-Sim topology CSV')
    src.add_argument('--config', metavar='PY',
                     help='OpenMMLab config (mmpretrain/mmdet/mmseg; an MVQ config is costed '
                          'with its own MVQ settings)')
    p.add_argument('--model-kwargs', default='{}', type=json.loads, metavar='JSON',
                   help='keyword arguments for --model/--timm, e.g. \'{"num_classes": 10}\'')
    p.add_argument('--checkpoint', default=None,
                   help='a .mvq artifact (with --timm, --model or --config; with --config also '
                        'an mmengine checkpoint of an MVQ run): the real compressed model is '
                        'costed (its codewords used, index entropy)')
    p.add_argument('--arch', default='EWS-CMS',
                   help="the paper's WS, WS-CMS, EWS, EWS-C, EWS-CM, EWS-CMS (sized as "
                        "'EWS-CMS_32x32'), or the earlier ws | ews | mvq (default: EWS-CMS)")
    p.add_argument('--baseline', default=None,
                   help='architecture the dense network is compared on (e.g. ews); '
                        "'none' for no comparison (default: EWS for the paper's settings, ews "
                        'for the earlier ones, when the arch is sparse or VQ)')
    p.add_argument('--rows', type=int, default=None, help='array rows (default 64)')
    p.add_argument('--cols', type=int, default=None, help='array columns (default 64)')
    p.add_argument('--weight-bw', type=int, default=None,
                   help='weight-load bandwidth B in bits/cycle (default: one row per cycle)')
    p.add_argument('--clock-mhz', type=float, default=None,
                   help="clock (default: the preset's, 300 MHz for the paper's)")
    p.add_argument('--node', type=float, default=None, help='technology node in nm (default 40)')
    p.add_argument('--table', default=None,
                   help="energy/area table: a built-in name (paper-40nm, default) or a YAML "
                        "file (default: the arch's own)")
    p.add_argument('--input-shape', type=int, nargs='+', default=[1, 3, 224, 224],
                   metavar='N', help='input shape for --timm/--config (default 1 3 224 224)')
    p.add_argument('--block-size', type=int, default=16, help='MVQ d for planning (default 16)')
    p.add_argument('--codewords', type=int, default=512, help='MVQ k for planning (default 512)')
    p.add_argument('--nm', type=nm_pattern, default='4:16',
                   help='MVQ N:M for planning (default 4:16)')
    p.add_argument('--no-plan', action='store_true', help='cost the network dense')
    p.add_argument('--format', default='table', choices=('table', 'csv', 'json', 'md'))
    p.add_argument('--output', default=None, help='write the report here instead of stdout')
    p.add_argument('--plot', metavar='DIR', default=None, help='write PNG plots into DIR')
    p.add_argument('--max-layers', type=int, default=None, help='rows in the text table')
    p.add_argument('-v', '--verbose', action='store_true')
    return p.parse_args(argv)


def build_workload(args: argparse.Namespace, needs_plan: bool):
    """The workload from --timm, --config or --topology, planned for MVQ when needed."""
    from mvq_plugin import hw
    n, m = args.nm
    if args.topology:
        workload = hw.read_topology(args.topology, block_size=args.block_size,
                                    num_codewords=args.codewords)
        if needs_plan and not any(lay.compressed for lay in workload):
            workload = workload.with_compression(args.block_size, args.codewords, n, m,
                                                 vector_axis='out_channel')
        return workload
    if args.config:
        return build_mm_workload(args, needs_plan)
    import mvq_plugin as mvq
    from mvq_plugin.io.export import build_arch
    spec = f'timm:{args.timm}' if args.timm else args.model
    model = build_arch(spec, args.model_kwargs)
    plan = None
    if args.checkpoint:
        mvq.load(model, args.checkpoint)  # the real compressed model: no plan needed
    elif needs_plan:
        cfg = mvq.MVQConfig(block_size=args.block_size, num_codewords=args.codewords, n=n, m=m)
        plan = mvq.plan(model, cfg)
        logger.info('planned %d of %d layers for MVQ', len(plan.compressed), len(plan))
    return hw.extract_workload(model, tuple(args.input_shape), plan=plan,
                               name=spec.partition(':')[2])


def build_mm_workload(args: argparse.Namespace, needs_plan: bool):
    """The workload of an OpenMMLab config's model (planned, or compressed from --checkpoint)."""
    import mvq_plugin as mvq
    from mvq_plugin.integrations.mm.tracing import config_workload
    n, m = args.nm
    plan_cfg = mvq.MVQConfig(block_size=args.block_size, num_codewords=args.codewords, n=n,
                             m=m) if needs_plan else None
    return config_workload(args.config, tuple(args.input_shape), checkpoint=args.checkpoint,
                           plan_cfg=plan_cfg)


@exit_on_missing_ops
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format='%(message)s')
    logger.setLevel(level)  # the report goes to stdout; the library's logs only with -v
    if args.checkpoint and args.topology:
        print('error: --checkpoint needs the network it was saved from: --timm NAME, --model '
              'SPEC or --config PY (not --topology)', file=sys.stderr)
        return 2
    if args.checkpoint and not args.config and not str(args.checkpoint).endswith('.mvq'):
        print(f'error: --checkpoint {args.checkpoint}: with --timm/--model it must be a .mvq '
              'artifact (an mmengine checkpoint needs --config)', file=sys.stderr)
        return 2
    if not isinstance(args.model_kwargs, dict):
        print(f'error: --model-kwargs {args.model_kwargs!r}: must be a JSON object',
              file=sys.stderr)
        return 2
    from mvq_plugin import hw
    arch = hw.get_arch(args.arch, rows=args.rows, cols=args.cols,
                       weight_load_bw_bits=args.weight_bw, clock_mhz=args.clock_mhz)
    baseline = args.baseline
    if baseline is None:
        paper_arch = arch.cost_table == 'paper-40nm'
        sized = f'_{arch.rows}x{arch.cols}' if paper_arch and arch.rows == arch.cols else ''
        baseline = (('EWS' + sized if paper_arch else 'ews')
                    if (arch.sparse_compute or arch.vq_weights) else 'none')
    baseline = None if baseline.lower() == 'none' else baseline
    needs_plan = (arch.sparse_compute or arch.vq_weights) and not args.no_plan
    workload = build_workload(args, needs_plan)
    overrides = dict(rows=args.rows, cols=args.cols, weight_load_bw_bits=args.weight_bw,
                     clock_mhz=args.clock_mhz)
    report = hw.estimate(workload, arch=args.arch, baseline=baseline, table=args.table,
                         node_nm=args.node, **overrides)
    text = {'table': lambda: report.table_text(args.max_layers) + '\n',
            'csv': report.to_csv, 'json': lambda: report.to_json() + '\n',
            'md': report.to_markdown}[args.format]()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if args.plot:
        from mvq_plugin.hw.plots import plot_report
        Path(args.plot).mkdir(parents=True, exist_ok=True)
        for path in plot_report(report, args.plot):
            logger.info('wrote %s', path)
    return 0


def run() -> None:
    """Console entry point ``mvq-hw-report``."""
    sys.exit(main())
