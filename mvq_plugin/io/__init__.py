"""The compact MVQ artifact: bit packing, save/load with checksums (no pickle)."""
from .artifact import (
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
    inspect_artifact,
    load,
    read_header,
    save,
)
from .bitpack import pack_bits, packed_size, unpack_bits

__all__ = [
    'save', 'load', 'inspect_artifact', 'read_header', 'ArtifactInfo', 'ArtifactError',
    'NotAnArtifactError', 'UnsupportedVersionError', 'CorruptArtifactError', 'ChecksumError',
    'TruncatedArtifactError', 'ArtifactMismatchError', 'CoverageError', 'MAGIC',
    'FORMAT_VERSION', 'pack_bits', 'unpack_bits', 'packed_size',
]
