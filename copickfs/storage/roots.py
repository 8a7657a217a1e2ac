"""The two layers of a config, with the local storage remote roots need beneath them.

A remote static root is read through a `BlockCache` (`CachedLayer`): its listings and
attributes are kept for the life of the process (static never changes) and its bytes in
a bounded local directory, so the mount serves them from local descriptors. A remote
overlay, given a staging directory, is written through a `StagingArea` (`StagedLayer`):
files are staged locally and uploaded on fsync and close; its listings and attributes are
kept for a short time-to-live (`FreshLayer`). Local roots are used as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from ..union import UnionFileSystem
from ..union.layers import FsspecLayer, Layer, open_layer
from .blockcache import BlockCache, default_cache_dir
from .files import protocols, safe_url
from .cached import CachedLayer
from .fresh import FreshLayer
from .staging import StagedLayer, StagingArea, default_staging_dir, staging_directory

log = logging.getLogger("copickfs.storage")

DEFAULT_CACHE_BYTES = 10 << 30
DEFAULT_UPLOAD_TIMEOUT = 60.0


def static_layer(url: str, fs_args: dict[str, Any] | None, cache_dir: str | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> Layer:
    """The static layer for ``url``: cached when remote."""
    layer = open_layer(url, fs_args)
    if isinstance(layer, FsspecLayer):
        _connect(layer)
        return CachedLayer(layer, BlockCache(cache_dir or default_cache_dir(), cache_bytes))
    return layer


def _connect(layer: FsspecLayer) -> None:
    """Make s3fs's client now (botocore loads its service model: about 0.1 s, no request
    sent), so the first lookup through the mount does not pay for it."""
    if "s3" in protocols(layer.fs):
        try:
            layer.fs.connect()
        except Exception as e:  # the first request will report it, with its errno
            log.debug("cannot make the S3 client yet: %s", type(e).__name__)


def overlay_layer(url: str, fs_args: dict[str, Any] | None, staging_dir: str | None = None,
                  upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT, ttl: float = 1.0) -> Layer:
    """The overlay layer for ``url``: a remote one keeps its listings for ``ttl`` seconds
    (`FreshLayer`; other machines may write it) and is staged under ``staging_dir`` (one
    area per overlay, taken over from a previous run: pending uploads are made first), each
    transfer bounded by ``upload_timeout`` seconds plus one per MiB."""
    layer = _overlay_layer(url, fs_args, staging_dir, upload_timeout)
    return FreshLayer(layer, ttl) if not layer.is_local and ttl > 0 else layer


def _overlay_layer(url: str, fs_args: dict[str, Any] | None, staging_dir: str | None,
                   upload_timeout: float) -> Layer:
    layer = open_layer(url, _bounded_requests(url, fs_args, upload_timeout))
    if isinstance(layer, FsspecLayer):
        _connect(layer)
    if isinstance(layer, FsspecLayer) and "s3" in protocols(layer.fs):
        # s3fs retries a timed-out request 5 times on top of botocore's own retries: with
        # a stalled server, one lookup would block its caller (unkillably, in the kernel)
        # for many minutes. One retry here; botocore's are off (see `_bounded_requests`).
        layer.fs.retries = min(layer.fs.retries, 2)
    if not isinstance(layer, FsspecLayer) or staging_dir is None:
        return layer
    area = StagingArea(staging_directory(staging_dir or default_staging_dir(), url), timeout=upload_timeout)
    area.recover(layer.fs)
    return StagedLayer(layer, area)


def _bounded_requests(url: str, fs_args: dict[str, Any] | None, seconds: float) -> dict[str, Any] | None:
    """S3 options whose requests wait at most ``seconds`` for a connection or an answer and
    are not retried by botocore (s3fs retries), unless ``fs_args`` say otherwise: a lookup in
    the overlay with the server stalled fails (EIO) instead of hanging for botocore's 60 s
    times its retries. Other protocols' options are returned as they are."""
    if not url.startswith(("s3://", "s3a://")):
        return fs_args
    args = dict(fs_args or {})
    config = dict(args.get("config_kwargs") or {})
    config.setdefault("connect_timeout", seconds)
    config.setdefault("read_timeout", seconds)
    config.setdefault("retries", {"max_attempts": 1})
    args["config_kwargs"] = config
    return args


def open_union(overlay_root: str, static_root: str | None, overlay_fs_args: dict[str, Any] | None = None,
               static_fs_args: dict[str, Any] | None = None, cache_dir: str | None = None,
               cache_bytes: int = DEFAULT_CACHE_BYTES, staging_dir: str | None = None,
               upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT, overlay_ttl: float = 1.0) -> UnionFileSystem:
    """The union of a config's roots, with a block cache under a remote static root and, given
    ``staging_dir``, a staging area under a remote overlay."""
    static = None if not static_root else static_layer(static_root, static_fs_args, cache_dir, cache_bytes)
    overlay = overlay_layer(overlay_root, overlay_fs_args, staging_dir, upload_timeout, overlay_ttl)
    return UnionFileSystem(overlay, static)


def close_union(union: UnionFileSystem) -> int:
    """Last uploads of a staged overlay at shutdown; how many are still owed (kept on disk)."""
    area = getattr(union.overlay, "area", None)
    return area.close_all() if isinstance(area, StagingArea) else 0


def describe_union(union: UnionFileSystem) -> dict[str, Any]:
    """What each layer is and what its local storage holds, for ``copickfs status``: URLs
    without credentials, the block cache's use and counters, the uploads still owed."""
    return {"overlay": _describe_layer(union.overlay), "static": _describe_layer(union.static)}


def _describe_layer(layer: Layer | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    url = layer.root if layer.is_local else layer.fs.unstrip_protocol(layer.root)
    out: dict[str, Any] = {"url": safe_url(url), "local": bool(layer.is_local)}
    cache = getattr(layer, "cache", None)
    if isinstance(cache, BlockCache):
        out["cache"] = cache.stats()
    area = getattr(layer, "area", None)
    if isinstance(area, StagingArea):
        pending = [{**item, "url": safe_url(layer.fs.unstrip_protocol(item["url"]))} for item in area.pending()]
        out["staging"] = {"directory": area.directory, "pending_uploads": pending}
    return out
