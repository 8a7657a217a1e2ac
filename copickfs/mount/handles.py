"""Open files of the mount: plain descriptors for local layers, file objects otherwise."""

from __future__ import annotations

import errno
import itertools
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from ..union.openfile import OpenFile


@dataclass
class Handle:
    """One open(2) of a union path: a file (``opened``, or ``file`` for bytes made in memory)
    or a directory (neither).

    ``path`` is where it was opened; a file's descriptor was opened beneath its layer's
    root (or is a cache's or staging area's copy) and is never re-resolved, so later
    changes of the tree cannot redirect it.
    """

    path: str
    opened: OpenFile | None = None
    ino: int = 0
    file: IO[bytes] | None = None
    #: Opened for writing: ``fd`` is the overlay's copy, safe for fchmod/futimens.
    writable: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: An open directory (the union's `Directory`), and its listing, kept between the
    #: READDIRPLUS requests that page through it.
    directory: Any = None
    entries: list[Any] | None = None

    @property
    def fd(self) -> int | None:
        return None if self.opened is None else self.opened.fd

    def read(self, size: int, offset: int) -> bytes:
        """Bytes of a ``file`` handle (descriptor handles are read by libfuse itself)."""
        assert self.file is not None
        with self.lock:  # file objects share one position
            self.file.seek(offset)
            return self.file.read(size)

    def close(self) -> None:
        if self.opened is not None:
            self.opened.close()
        elif self.file is not None:
            self.file.close()
        elif self.directory is not None:
            self.directory.close()


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

    def counts(self) -> dict[str, int]:
        """Open files and directories, for ``copickfs status``."""
        with self._lock:
            directories = sum(1 for h in self._handles.values() if h.directory is not None)
            return {"files": len(self._handles) - directories, "directories": directories}

    def close_all(self) -> None:
        with self._lock:
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()
