"""The bytes of a virtual MRC file at any offset: the header, then voxels assembled from chunks.

MRC's voxel order (x fastest, then y, then z, then volume) is C order of the zarr's
(c, z, y, x). A byte range is widened to whole voxels, split into boxes that are each one
contiguous run of that order (part of a row, whole rows, whole planes, whole volumes), and
every box is filled from the chunks it crosses with one numpy copy per chunk (converting
the dtype and byte order where the file's differ). Chunks that are not stored read as the
array's fill value.

Chunk identities are looked up once per open file for volumes that win in the static
layer (static never changes), and at every read for overlay volumes, so a chunk written
through the mount or the library is seen by the next read.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import numpy as np

from ..union.reader import PositionalReader
from .chunks import ChunkCache, ChunkKey
from .header import HEADER_BYTES
from .metadata import Level

Box = tuple[tuple[int, ...], tuple[int, ...]]


def boxes(start: int, stop: int, shape: tuple[int, ...]) -> Iterator[Box]:
    """Boxes (low corner, high corner) covering the C-order flat range [start, stop) of
    ``shape``, in order; each box is itself one contiguous run."""
    if start >= stop:
        return
    if len(shape) == 1:
        yield (start,), (stop,)
        return
    inner = 1
    for n in shape[1:]:
        inner *= n
    first, r0 = divmod(start, inner)
    last, r1 = divmod(stop, inner)
    rest = shape[1:]
    if first == last:
        for lo, hi in boxes(r0, r1, rest):
            yield (first, *lo), (first + 1, *hi)
        return
    if r0:
        for lo, hi in boxes(r0, inner, rest):
            yield (first, *lo), (first + 1, *hi)
        first += 1
    if last > first:
        yield (first, *(0,) * len(rest)), (last, *rest)
    if r1:
        for lo, hi in boxes(0, r1, rest):
            yield (last, *lo), (last + 1, *hi)


class VolumeReader:
    """Positional reads of one virtual MRC file (one open)."""

    def __init__(self, level: Level, cache: ChunkCache, static: bool) -> None:
        self.level = level
        self.cache = cache
        self.static = static
        self._keys: dict[tuple[int, int, int, int], ChunkKey | None] = {}
        self._lock = threading.Lock()
        self._next_offset = -1
        self._prefetched: set[tuple[int, int]] = set()
        c, z, y, x = level.shape
        cc, cz, cy, cx = level.chunks
        self._rows = (c, -(-z // cz))
        row_chunks = -(-y // cy) * -(-x // cx)
        # Prefetch only where the row being read and the next fit in the cache together.
        self._prefetching = 2 * row_chunks * cz * cy * cx * cc * level.dtype.itemsize <= cache.max_bytes
        self._row_indices = [(0, 0, iy, ix) for iy in range(-(-y // cy)) for ix in range(-(-x // cx))]

    @property
    def size(self) -> int:
        return self.level.size

    def pread(self, size: int, offset: int) -> bytes:
        total = self.level.size
        if offset >= total or size <= 0:
            return b""
        end = min(total, offset + size)
        out = bytearray(end - offset)
        if offset < HEADER_BYTES:
            part = self.level.header[offset:min(end, HEADER_BYTES)]
            out[:len(part)] = part
        start = max(offset, HEADER_BYTES)
        if start < end:
            self._voxels(out, start - offset, start - HEADER_BYTES, end - HEADER_BYTES)
            self._read_on(offset, end)
        return bytes(out)

    def _read_on(self, offset: int, end: int) -> None:
        """After a sequential read, start decoding the next row of chunks (z-slab) in the background."""
        sequential, self._next_offset = offset == self._next_offset or offset == 0, end
        if not sequential or not self._prefetching:
            return
        level = self.level
        _, z, y, x = level.shape
        last = (end - HEADER_BYTES - 1) // level.dtype.itemsize
        volume, plane = divmod(last // (y * x), z)
        row = plane // level.chunks[1] + 1
        if row == self._rows[1]:
            volume, row = volume + 1, 0
        if volume >= self._rows[0] or (volume, row) in self._prefetched:
            return
        self._prefetched.add((volume, row))
        cv = volume // level.chunks[0]
        self.cache.prefetch(level, [(cv, row, iy, ix) for _, _, iy, ix in self._row_indices])

    def _voxels(self, out: bytearray, at: int, first: int, stop: int) -> None:
        """Fill ``out[at:]`` with the voxel bytes [first, stop) of the data block."""
        item = self.level.dtype.itemsize
        v0, v1 = first // item, -(-stop // item)
        if first % item == 0 and stop % item == 0:
            target = np.frombuffer(memoryview(out)[at:], dtype=self.level.dtype)
            self._assemble(target, v0, v1)
        else:  # odd offsets: whole voxels, then the bytes asked for
            voxels = np.empty(v1 - v0, dtype=self.level.dtype)
            self._assemble(voxels, v0, v1)
            skip = first - v0 * item
            np.frombuffer(out, np.uint8)[at:at + stop - first] = voxels.view(np.uint8)[skip:skip + stop - first]

    def _assemble(self, target: np.ndarray, v0: int, v1: int) -> None:
        level = self.level
        chunks = level.chunks
        plan = list(boxes(v0, v1, level.shape))
        needed: dict[tuple[int, int, int, int], None] = {}
        for lo, hi in plan:
            ranges = [range(lo[d] // chunks[d], (hi[d] - 1) // chunks[d] + 1) for d in range(4)]
            for index in itertools.product(*ranges):
                needed[index] = None  # type: ignore[index]
        keys = self._keys_of(list(needed))
        stored = [k for k in keys.values() if k is not None]
        arrays = dict(zip(stored, self.cache.get_many(level, stored)))
        pos = 0
        for lo, hi in plan:
            extent = tuple(h - l for l, h in zip(lo, hi))
            count = extent[0] * extent[1] * extent[2] * extent[3]
            box = target[pos:pos + count].reshape(extent)
            pos += count
            ranges = [range(lo[d] // chunks[d], (hi[d] - 1) // chunks[d] + 1) for d in range(4)]
            for index in itertools.product(*ranges):
                dst, src = [], []
                for d in range(4):
                    base = index[d] * chunks[d]
                    a, b = max(lo[d], base), min(hi[d], base + chunks[d])
                    dst.append(slice(a - lo[d], b - lo[d]))
                    src.append(slice(a - base, b - base))
                key = keys[index]  # type: ignore[index]
                if key is None:
                    box[tuple(dst)] = level.fill
                else:
                    np.copyto(box[tuple(dst)], arrays[key][tuple(src)], casting="unsafe")

    def _keys_of(self, indices: list[tuple[int, int, int, int]]) -> dict[tuple[int, int, int, int], ChunkKey | None]:
        if not self.static:
            return {index: self.cache.key(self.level, index) for index in indices}
        with self._lock:
            missing = [i for i in indices if i not in self._keys]
        found = {index: self.cache.key(self.level, index) for index in missing}
        with self._lock:
            self._keys.update(found)
            return {index: self._keys[index] for index in indices}


class MrcFile(PositionalReader):
    """A read-only file object over a `VolumeReader` (what the mount's handles read from)."""

    def __init__(self, reader: VolumeReader) -> None:
        super().__init__()
        self.reader = reader

    @property
    def size(self) -> int:
        return self.reader.size

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` without moving the position (safe from several threads)."""
        return self.reader.pread(size, offset)


__all__ = ["MrcFile", "VolumeReader", "boxes"]
