"""Local storage beneath the union's remote layers: what makes an object store behave
like a local directory (a block cache of the static root's bytes, and a staging area for
writes to a remote overlay, both served from local descriptors)."""

from .blockcache import BlockCache, CachedFile, default_cache_dir
from .cached import CachedLayer
from .fresh import FreshLayer
from .staging import StagedFile, StagedLayer, StagingArea, default_staging_dir, read_sidecars, staging_directory

__all__ = ["BlockCache", "CachedFile", "CachedLayer", "FreshLayer", "StagedFile", "StagedLayer", "StagingArea",
           "default_cache_dir", "default_staging_dir", "read_sidecars", "staging_directory"]
