"""Packaging for mvq_plugin: masked vector quantization for OpenMMLab and timm."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    """The requirement lines of requirements/NAME.txt, following its ``-r other.txt`` lines."""
    out = []
    for ln in (ROOT / 'requirements' / f'{name}.txt').read_text().splitlines():
        ln = ln.strip()
        if ln.startswith('-r '):
            out += read_requirements(ln[3:].strip().removesuffix('.txt'))
        elif ln and not ln.startswith('#'):
            out.append(ln)
    return out


def read_version() -> str:
    """``__version__`` of mvq_plugin/version.py (the one place it is written)."""
    scope: dict = {}
    exec((ROOT / 'mvq_plugin' / 'version.py').read_text(), scope)
    return scope['__version__']


setup(
    name='mvq_plugin',
    version=read_version(),
    description='MVQ (masked vector quantization) CNN compression for OpenMMLab and timm, '
    'with an analytical MVQ accelerator cost model',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mvq_plugin', 'mvq_plugin.*']),
    package_data={'mvq_plugin': ['py.typed', 'hw/tables/*.yaml']},
    python_requires='>=3.10',
    install_requires=read_requirements('runtime'),
    extras_require={
        # The two set-up stages (docs/install.md); pick one, never both (both write mmcv/).
        # lite: mmcv-lite (no compiled ops): classification (mmpretrain), timm, the tools.
        'lite': read_requirements('mmcv_lite') + read_requirements('mm')
        + read_requirements('timm'),
        # ops: the compiled mmcv, which detection and segmentation (mmdet, mmseg) need.
        'ops': read_requirements('mmcv_ops') + read_requirements('mm')
        + read_requirements('timm'),
        # The OpenMMLab packages for an environment that has its mmcv already (the compiled
        # wheel, or mmcv-lite): pip cannot build mmcv, and mmcv-lite beside mmcv breaks both.
        'mm': read_requirements('mm'),
        'timm': read_requirements('timm'),
        # ONNX export (mvq-export --to onnx) and its onnxruntime check.
        'onnx': read_requirements('onnx'),
        'dev': read_requirements('dev'),
    },
    entry_points={'console_scripts': [
        'mvq-plan = mvq_plugin.cli.plan:run',
        'mvq-allocate = mvq_plugin.cli.allocate:run',
        'mvq-hw-report = mvq_plugin.cli.hw_report:run',
        'mvq-export = mvq_plugin.cli.export:run',
    ]},
    license='Apache-2.0',
)
