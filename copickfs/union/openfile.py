"""An open file of a layer, served from a local descriptor.

The mount reads and writes ``fd`` (libfuse splices from it and copies into it) whatever
the layer is: a local directory's own file, a block cache's copy of a remote object
(`ensure` fetches the bytes first), or a staged copy of an object being written (`flush`
uploads it). One small interface, so the mount never needs to know which.
"""

from __future__ import annotations

import os


class OpenFile:
    """A plain local file: the bytes are there, `sync` is fsync, `flush` has nothing to do."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def ensure(self, offset: int, length: int) -> None:
        """Make ``length`` bytes at ``offset`` readable from ``fd`` (remote caches fetch them)."""

    def sync(self, data_only: bool = False) -> None:
        """Make what was written durable in the layer (fsync(2))."""
        (os.fdatasync if data_only else os.fsync)(self.fd)

    def flush(self) -> None:
        """What close(2) must report: staged copies upload here, failing with EIO."""

    def close(self) -> None:
        os.close(self.fd)
