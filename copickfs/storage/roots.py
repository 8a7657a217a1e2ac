"""The two layers of a config, with the local storage remote roots need beneath them.

A remote static root is read through a `BlockCache` (`CachedLayer`): its listings and
attributes are kept for the life of the process (static never changes) and its bytes in
a bounded local directory, so the mount serves them from local descriptors. A remote
overlay, given a staging directory, is written through a `StagingArea` (`StagedLayer`):
files are staged locally and uploaded on fsync and close. Local roots are used as they are.
"""

from __future__ import annotations

from typing import Any

from ..union import UnionFileSystem
from ..union.layers import FsspecLayer, Layer, open_layer
from .blockcache import BlockCache, default_cache_dir
from .cached import CachedLayer
from .staging import StagedLayer, StagingArea, default_staging_dir, staging_directory

DEFAULT_CACHE_BYTES = 10 << 30


def static_layer(url: str, fs_args: dict[str, Any] | None, cache_dir: str | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> Layer:
    """The static layer for ``url``: cached when remote."""
    layer = open_layer(url, fs_args)
    if isinstance(layer, FsspecLayer):
        return CachedLayer(layer, BlockCache(cache_dir or default_cache_dir(), cache_bytes))
    return layer


def overlay_layer(url: str, fs_args: dict[str, Any] | None, staging_dir: str | None = None) -> Layer:
    """The overlay layer for ``url``: a remote one is staged under ``staging_dir`` (one area
    per overlay, taken over from a previous run: pending uploads are made first)."""
    layer = open_layer(url, fs_args)
    if not isinstance(layer, FsspecLayer) or staging_dir is None:
        return layer
    area = StagingArea(staging_directory(staging_dir or default_staging_dir(), url))
    area.recover(layer.fs)
    return StagedLayer(layer, area)


def open_union(overlay_root: str, static_root: str | None, overlay_fs_args: dict[str, Any] | None = None,
               static_fs_args: dict[str, Any] | None = None, cache_dir: str | None = None,
               cache_bytes: int = DEFAULT_CACHE_BYTES, staging_dir: str | None = None) -> UnionFileSystem:
    """The union of a config's roots, with a block cache under a remote static root and, given
    ``staging_dir``, a staging area under a remote overlay."""
    static = None if not static_root else static_layer(static_root, static_fs_args, cache_dir, cache_bytes)
    return UnionFileSystem(overlay_layer(overlay_root, overlay_fs_args, staging_dir), static)


def close_union(union: UnionFileSystem) -> int:
    """Last uploads of a staged overlay at shutdown; how many are still owed (kept on disk)."""
    area = getattr(union.overlay, "area", None)
    return area.close_all() if isinstance(area, StagingArea) else 0
