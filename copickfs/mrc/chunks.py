"""Decoded zarr chunks, shared by every open virtual MRC file of a mount.

Entries are keyed by the chunk file's identity in the union (path, layer, device, inode,
size, mtime): a chunk rewritten through the mount or the library has a new key, so it is
decoded again and the stale entry ages out; static chunks never change and stay until
evicted. The cache holds at most ``max_bytes`` of decoded arrays, least recently used
first out. A chunk that several readers want at once is decoded once: the others wait for
that decode (single flight).

Chunks are read through the union (on an S3 static root that goes through the block
cache) with one descriptor read when the layer gives a descriptor.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..union import UnionFileSystem
from .metadata import Level

#: Identity of a stored chunk; None for a chunk that is not stored (the fill value).
ChunkKey = tuple[Any, ...]


class ChunkCache:
    """A bounded LRU of decoded chunks with single-flight decoding."""

    def __init__(self, union: UnionFileSystem, max_bytes: int, workers: int = 2) -> None:
        self.union = union
        self.max_bytes = max_bytes
        self._arrays: OrderedDict[ChunkKey, np.ndarray] = OrderedDict()
        self._held = 0
        self._pending: dict[ChunkKey, Future[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="copickfs-mrc")
        self.decoded = 0  # chunks decoded so far (tests and the benchmark read it)

    def key(self, level: Level, index: tuple[int, int, int, int]) -> ChunkKey | None:
        """The identity of the chunk at ``index`` as stored now; None if it is not stored."""
        path = level.chunk_path(index)
        hit = self.union.lookup(path)
        if hit is None or not hit.stat.is_file:
            return None
        st = hit.stat
        return (path, id(hit.layer), st.dev, st.ino, st.size, st.mtime_ns)

    def get_many(self, level: Level, keys: Sequence[ChunkKey]) -> list[np.ndarray]:
        """The decoded chunks of ``keys`` (all stored), decoding the missing ones in parallel."""
        found: list[np.ndarray | Future[np.ndarray]] = []
        mine: list[tuple[ChunkKey, Future[np.ndarray]]] = []
        with self._lock:
            for key in keys:
                array = self._arrays.get(key)
                if array is not None:
                    self._arrays.move_to_end(key)
                    found.append(array)
                    continue
                future = self._pending.get(key)
                if future is None:
                    future = self._pending[key] = Future()
                    mine.append((key, future))
                found.append(future)
        if len(mine) == 1:
            self._decode(level, *mine[0])
        elif mine:
            for done in [self._pool.submit(self._decode, level, key, future) for key, future in mine]:
                done.result()
        return [f if isinstance(f, np.ndarray) else f.result() for f in found]

    def prefetch(self, level: Level, indices: Sequence[tuple[int, int, int, int]]) -> None:
        """Start decoding the chunks at ``indices`` in the background (a sequential reader's
        next row of chunks), so that decoding overlaps the reads of the row before."""
        for index in indices:
            self._pool.submit(self._prefetch_one, level, index)

    def _prefetch_one(self, level: Level, index: tuple[int, int, int, int]) -> None:
        try:
            key = self.key(level, index)
        except OSError:
            return  # the reader that needs it will get the error
        if key is None:
            return
        with self._lock:  # pool tasks never wait for another's decode: no task can block the pool
            if key in self._arrays or key in self._pending:
                return
            future = self._pending[key] = Future()
        self._decode(level, key, future)

    def _decode(self, level: Level, key: ChunkKey, future: Future[np.ndarray]) -> None:
        try:
            array = level.decoder(self._read(key[0], key[4]))
            if array.shape != tuple(level.chunks[4 - level.stored_ndim:]):
                raise ValueError(f"decoded chunk has shape {array.shape}")
            if level.stored_ndim == 3:
                array = array[np.newaxis]
        except BaseException as e:
            with self._lock:
                del self._pending[key]
            error = OSError(5, f"cannot decode chunk: {e}", key[0])  # EIO for the reader
            future.set_exception(error)
            return
        with self._lock:
            del self._pending[key]
            self.decoded += 1
            if array.nbytes <= self.max_bytes:
                self._arrays[key] = array
                self._held += array.nbytes
                while self._held > self.max_bytes:
                    _, old = self._arrays.popitem(last=False)
                    self._held -= old.nbytes
        future.set_result(array)

    def _read(self, path: str, size: int) -> bytes:
        opened = self.union.open_file(path, os.O_RDONLY)
        if opened is None:  # a layer without descriptors
            with self.union.open(path, "rb") as f:
                return f.read()
        try:
            opened.ensure(0, size)
            parts = []
            offset = 0
            while offset < size:
                part = os.pread(opened.fd, size - offset, offset)
                if not part:
                    break
                parts.append(part)
                offset += len(part)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        finally:
            opened.close()

    def held(self) -> int:
        with self._lock:
            return self._held

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["ChunkCache", "ChunkKey"]
