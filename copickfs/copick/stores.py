"""Zarr stores for entities in the union.

Every store is an `FsspecStore` over the union, which merges the layers per key, sends
writes to the overlay and resolves every key beneath the layer roots without following a
symlink (a plain `LocalStore` on a layer directory would follow symlinks planted in it).
Static entities open read-only.
"""

from __future__ import annotations

from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from zarr.abc.store import Store
from zarr.storage import FsspecStore

from ..union import UnionFileSystem


def open_store(union: UnionFileSystem, path: str, read_only: bool) -> Store:
    """A zarr store for the union directory ``path`` (which must exist)."""
    wrapped = AsyncFileSystemWrapper(union, asynchronous=True)
    return FsspecStore(wrapped, read_only=read_only, path=path)
