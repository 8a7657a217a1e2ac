"""Local storage beneath the union's remote layers: what makes an object store behave
like a local directory (a block cache of the static root's bytes, served from local
descriptors)."""

from .blockcache import BlockCache, CachedFile, default_cache_dir
from .cached import CachedLayer

__all__ = ["BlockCache", "CachedFile", "CachedLayer", "default_cache_dir"]
