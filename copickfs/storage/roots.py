"""The two layers of a config, with the local storage remote roots need beneath them.

A remote static root is read through a `BlockCache` (`CachedLayer`): its listings and
attributes are kept for the life of the process (static never changes) and its bytes in
a bounded local directory, so the mount serves them from local descriptors. Local roots
are used as they are.
"""

from __future__ import annotations

from typing import Any

from ..union import UnionFileSystem
from ..union.layers import FsspecLayer, Layer, open_layer
from .blockcache import BlockCache, default_cache_dir
from .cached import CachedLayer

DEFAULT_CACHE_BYTES = 10 << 30


def static_layer(url: str, fs_args: dict[str, Any] | None, cache_dir: str | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> Layer:
    """The static layer for ``url``: cached when remote."""
    layer = open_layer(url, fs_args)
    if isinstance(layer, FsspecLayer):
        return CachedLayer(layer, BlockCache(cache_dir or default_cache_dir(), cache_bytes))
    return layer


def open_union(overlay_root: str, static_root: str | None, overlay_fs_args: dict[str, Any] | None = None,
               static_fs_args: dict[str, Any] | None = None, cache_dir: str | None = None,
               cache_bytes: int = DEFAULT_CACHE_BYTES) -> UnionFileSystem:
    """The union of a config's roots, with a block cache under a remote static root."""
    static = None if not static_root else static_layer(static_root, static_fs_args, cache_dir, cache_bytes)
    return UnionFileSystem(open_layer(overlay_root, overlay_fs_args), static)
