"""Neuroglancer precomputed pyramids: a neuroglancer-scripts-compatible accessor, and the
view that gives the mount every chunk under its flat and nested, raw and ``.gz`` names."""

from .accessor import DataAccessError, FileAccessor
from .content import ChunkDataError
from .view import LAYOUTS, PrecomputedView

__all__ = ["LAYOUTS", "ChunkDataError", "DataAccessError", "FileAccessor", "PrecomputedView"]
