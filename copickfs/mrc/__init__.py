"""Virtual MRC files: copick's OME-Zarr volumes as MRC2014 files that IMOD, RELION and
ChimeraX open directly, assembled from the zarr chunks on demand (`MrcView`)."""

from .header import Geometry, mode_for, pack_header
from .view import DEFAULT_CACHE_BYTES, MrcView

__all__ = ["DEFAULT_CACHE_BYTES", "Geometry", "MrcView", "mode_for", "pack_header"]
