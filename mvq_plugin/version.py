"""The package version (one place; the artifact header records it)."""
__version__ = '0.1.0'
