"""The compact MVQ artifact (bit packing, save/load with checksums, no pickle) and export."""
from .artifact import inspect_artifact, load, read_header, save
from .bitpack import pack_bits, packed_size, unpack_bits
from .export import build_arch, export_dense, export_onnx
from .format import (
    FORMAT_VERSION,
    MAGIC,
    ArtifactError,
    ArtifactInfo,
    ArtifactMismatchError,
    ChecksumError,
    CorruptArtifactError,
    CoverageError,
    NotAnArtifactError,
    TruncatedArtifactError,
    UnsupportedVersionError,
)

__all__ = [
    'save', 'load', 'inspect_artifact', 'read_header', 'ArtifactInfo', 'ArtifactError',
    'NotAnArtifactError', 'UnsupportedVersionError', 'CorruptArtifactError', 'ChecksumError',
    'TruncatedArtifactError', 'ArtifactMismatchError', 'CoverageError', 'MAGIC',
    'FORMAT_VERSION', 'pack_bits', 'unpack_bits', 'packed_size', 'build_arch', 'export_dense',
    'export_onnx',
]
