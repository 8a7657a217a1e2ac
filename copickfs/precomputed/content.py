"""Chunk bytes in the other compression: gunzipped for raw names, gzipped for ``.gz`` names.

Results are kept in a small LRU keyed by the stored file's path, layer, size and mtime,
so a stat (which needs the size) and the reads that follow convert once. Sizes (and
failures) are kept much longer than the bytes: a stat or an open of a chunk converted
before needs no conversion, and the bytes are made again only when a read asks for them
(the kernel's page cache answers most reads of a static pyramid).
"""

from __future__ import annotations

import errno
import gzip
import io
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..union import UnionFileSystem
from ..union.lookup import Hit
from ..union.reader import PositionalReader

#: A decompressed chunk larger than this is refused (a gzip bomb is not a chunk).
MAX_CHUNK_BYTES = 1 << 30
GZIP_LEVEL = 6  # for gzip bytes made on the fly: the reader pays for level 9, not the writer
MAX_SIZES = 200_000  # converted lengths remembered (about 40 MB at most)


class LazyBytes(PositionalReader):
    """A read-only file of converted bytes made at the first read, not at open."""

    def __init__(self, make: Callable[[], bytes]) -> None:
        super().__init__()
        self._make = make
        self._data: bytes | None = None

    @property
    def size(self) -> int:
        return len(self._bytes())

    def pread(self, size: int, offset: int) -> bytes:
        return self._bytes()[offset:offset + size]

    def _bytes(self) -> bytes:
        if self._data is None:
            self._data = self._make()
        return self._data


class ChunkDataError(OSError):
    """Stored chunk data that cannot be decoded (corrupt gzip); errno EIO."""

    def __init__(self, path: str, reason: object) -> None:
        super().__init__(errno.EIO, f"corrupt gzip data ({reason})", path)
        self.reason = str(reason)


def _key(path: str, hit: Hit, to_gz: bool) -> tuple:
    """What names one conversion: the stored file's path, layer, size and mtime, and its direction."""
    return (path, id(hit.layer), hit.stat.size, hit.stat.mtime_ns, to_gz)


class Converter:
    def __init__(self, union: UnionFileSystem, cache_bytes: int = 64 << 20) -> None:
        self.union = union
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple, bytes | ChunkDataError] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._sizes: OrderedDict[tuple, int | str] = OrderedDict()  # length, or why it failed

    def size(self, path: str, hit: Hit, to_gz: bool) -> int:
        """The length of the converted bytes; ChunkDataError (EIO) for corrupt data."""
        known = self._recall(self._sizes, _key(path, hit, to_gz))
        if known is None:
            return len(self.convert(path, hit, to_gz))
        if isinstance(known, str):
            raise ChunkDataError(path, known)
        return known

    def convert(self, path: str, hit: Hit, to_gz: bool) -> bytes:
        """The bytes stored at ``path`` (found as ``hit``) gzipped, or gunzipped."""
        key = _key(path, hit, to_gz)
        cached = self._recall(self._cache, key)
        if cached is None:
            cached = self._make(path, to_gz)
            self._keep(key, cached)
        if isinstance(cached, ChunkDataError):
            raise ChunkDataError(path, cached.reason)
        return cached

    def _recall(self, memo: OrderedDict[tuple, Any], key: tuple) -> Any:
        """``memo[key]`` (now the most recently used), or None."""
        with self._lock:
            value = memo.get(key)
            if value is not None:
                memo.move_to_end(key)
            return value

    def _make(self, path: str, to_gz: bool) -> bytes | ChunkDataError:
        with self.union.open(path, "rb") as f:
            data = f.read()
        if to_gz:
            return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as g:
                out = g.read(MAX_CHUNK_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            return ChunkDataError(path, e)
        if len(out) > MAX_CHUNK_BYTES:
            return ChunkDataError(path, f"more than {MAX_CHUNK_BYTES} bytes")
        return out

    def _keep(self, key: tuple, value: bytes | ChunkDataError) -> None:
        with self._lock:
            self._sizes[key] = len(value) if isinstance(value, bytes) else value.reason
            if len(self._sizes) > MAX_SIZES:
                self._sizes.popitem(last=False)
        size = len(value) if isinstance(value, bytes) else 64
        if size > self.cache_bytes // 4:
            return
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = value
            self._held += size
            while self._held > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._held -= len(old) if isinstance(old, bytes) else 64
