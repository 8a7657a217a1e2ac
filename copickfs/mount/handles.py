"""Open files of the mount: plain descriptors for local layers, file objects otherwise."""

from __future__ import annotations

import errno
import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class Handle:
    """One open(2) of a union path: a file (``fd`` or ``file``) or a directory (neither).

    ``path`` is where it was opened; a file's ``fd`` was opened beneath its layer's root
    and is never re-resolved, so later changes of the tree cannot redirect it.
    """

    path: str
    fd: int | None = None
    ino: int = 0
    file: IO[bytes] | None = None
    #: Opened for writing: ``fd`` is the overlay's copy, safe for fchmod/futimens.
    writable: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: A directory's listing, kept between the READDIRPLUS requests that page through it.
    entries: list[Any] | None = None

    def read(self, size: int, offset: int) -> bytes:
        if self.fd is not None:
            return os.pread(self.fd, size, offset)
        assert self.file is not None
        with self.lock:  # file objects share one position
            self.file.seek(offset)
            return self.file.read(size)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        elif self.file is not None:
            self.file.close()


class HandleTable:
    """Handle numbers for the kernel; a released handle is removed at once."""

    def __init__(self) -> None:
        self._handles: dict[int, Handle] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, handle: Handle) -> int:
        with self._lock:
            number = next(self._numbers)
            self._handles[number] = handle
            return number

    def get(self, number: int) -> Handle:
        try:
            return self._handles[number]
        except KeyError:
            raise OSError(errno.EBADF, "bad file handle") from None

    def pop(self, number: int) -> Handle | None:
        with self._lock:
            return self._handles.pop(number, None)

    def close_all(self) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()
