"""Export a ``.mvq`` artifact as a dense state dict or as ONNX.

Examples (``mvq-export`` is installed with the package; ``python tools/export.py`` is the same
command from a checkout)::

    # plain PyTorch / timm state dict (torch.load + model.load_state_dict)
    mvq-export model.mvq resnet18_dense.pth --arch timm:resnet18 --to dense
    # the same wrapped as an mmengine checkpoint ({'state_dict': ..., 'meta': ...})
    mvq-export model.mvq out.pth --arch torchvision:resnet18 --to dense --mmengine
    # from an OpenMMLab config (the MVQ config the artifact was trained with, or its upstream
    # config): an mmengine checkpoint the upstream config loads
    mvq-export work_dirs/mvq/model.mvq dense.pth --config my_config.py --to dense
    # ONNX: every compressed weight computed in the graph as Gather(codebook, indices) * mask,
    # checked against PyTorch with onnxruntime (the `onnx` extra)
    mvq-export model.mvq out.onnx --arch torchvision:resnet18 --to onnx \
        --input-shape 1,3,224,224

``--arch`` builds the network without downloading anything: ``timm:NAME``
(``timm.create_model(NAME, pretrained=False)``), ``torchvision:NAME``
(``torchvision.models.get_model(NAME, weights=None)``) or ``package.module:factory`` (called
with the ``--arch-kwargs`` JSON object as keyword arguments, which the other two also get,
e.g. ``'{"num_classes": 10}'``). ``--config`` builds the config's model instead, as the
runner does (an MVQ config's ``MVQModel`` or a plain upstream config; nothing downloaded), and
the dense export is then an mmengine checkpoint (``{'state_dict', 'meta'}``) whose keys the
upstream config loads; its ONNX export traces the model's tensor forward (classifiers; a
detector's tuple of outputs is refused). The artifact is loaded with ``mvq_plugin.load``.

The ONNX graph keeps the codebooks, the assignments (int64) and the masks as initializers, so
it is larger than the artifact: it is the form LUT-aware runtimes recognise, not a storage
format. The exit status is non-zero when onnxruntime and PyTorch differ by more than
``--tol``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from ..integrations.mmcv_ops import exit_on_missing_ops

logger = logging.getLogger('mvq_plugin')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='mvq-export', description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split('\n', 2)[2])
    p.add_argument('artifact', help='the .mvq file')
    p.add_argument('out', help='output file (.pth for dense, .onnx for onnx)')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--arch', help='timm:NAME | torchvision:NAME | package.module:factory')
    src.add_argument('--config', metavar='PY',
                     help='OpenMMLab config whose model the artifact belongs to')
    p.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                   help='with --config: options merged over the config')
    p.add_argument('--arch-kwargs', default='{}', type=json.loads,
                   help='JSON object of keyword arguments for the model factory')
    p.add_argument('--to', required=True, choices=('dense', 'onnx'), help='output kind')
    p.add_argument('--mmengine', action='store_true',
                   help="dense: wrap as {'state_dict': ..., 'meta': {...}} (mmengine checkpoint)")
    p.add_argument('--input-shape', default='1,3,224,224',
                   help='onnx: example input shape, comma separated (default 1,3,224,224)')
    p.add_argument('--opset', type=int, default=17, help='onnx: opset version (default 17)')
    p.add_argument('--tol', type=float, default=1e-4,
                   help='onnx: largest |onnxruntime - PyTorch| accepted (default 1e-4)')
    p.add_argument('--seed', type=int, default=0, help='onnx: seed of the check input')
    p.add_argument('--non-strict', action='store_true',
                   help='load with strict=False (tensors missing on either side are skipped)')
    return p.parse_args(argv)


def config_model(config: str, options: list[str]):
    """The model of an OpenMMLab config, as the runner builds it (ops checked first)."""
    from mmengine.config import DictAction

    from ..integrations.mm.config_model import build_model_from_config
    parsed = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='opts')(None, parsed, options)
    model, _ = build_model_from_config(config, parsed.opts if options else None)
    return model


@exit_on_missing_ops
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    import mvq_plugin as mvq
    from mvq_plugin.io.export import build_arch, export_dense, export_onnx

    if not isinstance(args.arch_kwargs, dict):
        raise SystemExit(f'--arch-kwargs {args.arch_kwargs!r}: must be a JSON object')
    if args.config:
        model = config_model(args.config, args.cfg_options)
    else:
        model = build_arch(args.arch, args.arch_kwargs)
    info = mvq.load(model, args.artifact, strict=not args.non_strict)
    print(info)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    if args.to == 'dense':
        meta = None
        if args.mmengine or args.config:
            meta = {'mvq_artifact': os.path.basename(args.artifact),
                    'arch': args.arch or f'config:{os.path.basename(args.config)}',
                    'arch_kwargs': args.arch_kwargs, 'mvq_plugin': mvq.__version__,
                    'mvq_config': info.config}
        export_dense(model, args.out, meta)
        print(f'wrote dense state dict {args.out} ({os.path.getsize(args.out):,} bytes)')
        return 0
    shape = tuple(int(s) for s in args.input_shape.split(','))
    diff = export_onnx(model, args.out, shape, opset=args.opset, seed=args.seed)
    ok = diff <= args.tol
    size = os.path.getsize(args.out) if os.path.exists(args.out) else 0
    print(f'wrote {args.out} ({size:,} bytes); onnxruntime vs PyTorch: max abs diff '
          f'{diff:.3g} (tol {args.tol:g}) {"OK" if ok else "FAILED"}')
    return 0 if ok else 1


def run() -> None:
    """Console entry point ``mvq-export``."""
    sys.exit(main())
