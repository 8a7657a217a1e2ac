"""`PositionalReader`: a read-only, seekable file object over ``pread(size, offset)``.

Why: the storage's cached copies, chunks converted on the fly and virtual MRC files are all
read by position; one class gives them the file-object surface (seek, tell, read,
readinto) that the library and the mount's handles use, so each only says where its bytes
come from.
"""

from __future__ import annotations

import errno
import io
from typing import Any


class PositionalReader(io.RawIOBase):
    """Subclasses give ``size`` and ``pread``; reads past the end return what is there."""

    def __init__(self) -> None:
        super().__init__()
        self._pos = 0

    @property
    def size(self) -> int:
        raise NotImplementedError

    def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end), without moving the position."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = self.size if whence == io.SEEK_END else self._pos if whence == io.SEEK_CUR else 0
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self.size - self._pos)
        data = self.pread(left if size is None or size < 0 else min(size, left), self._pos)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)
