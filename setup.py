"""Packaging for mvq_plugin: masked vector quantization for OpenMMLab and timm."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent


def read_requirements(name: str) -> list[str]:
    lines = (ROOT / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith('#')]


setup(
    name='mvq_plugin',
    version='0.1.0',
    description='MVQ (masked vector quantization) CNN compression for OpenMMLab and timm, '
    'with an analytical MVQ accelerator cost model',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mvq_plugin', 'mvq_plugin.*']),
    package_data={'mvq_plugin': ['hw/tables/*.yaml']},
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
        'mm': read_requirements('mm'),
        'timm': read_requirements('timm'),
        'dev': read_requirements('dev'),
    },
    license='Apache-2.0',
)
