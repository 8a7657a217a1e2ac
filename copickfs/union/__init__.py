"""The union of a writable overlay layer and a read-only static layer, as an fsspec filesystem."""

from .filesystem import UnionFileSystem
from .layers import FsspecLayer, Layer, LocalLayer, open_layer
from .stat import Stat

__all__ = ["FsspecLayer", "Layer", "LocalLayer", "Stat", "UnionFileSystem", "open_layer"]
