"""Zarr stores for entities in the union.

A store whose whole directory lies in one local layer is opened as a `LocalStore` on
that directory: zarr then reads and writes plain files, with no union lookup per chunk.
Any other store (split across the layers, e.g. a static tomogram with some chunks
rewritten in the overlay, or a remote layer) is an `FsspecStore` over the union, which
merges the layers per key and sends writes to the overlay. Static entities open read-only
either way.
"""

from __future__ import annotations

from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from ..union import UnionFileSystem


def open_store(union: UnionFileSystem, path: str, read_only: bool) -> Store:
    """A zarr store for the union directory ``path`` (which must exist)."""
    local = _single_local_dir(union, path)
    if local is not None:
        return LocalStore(local, read_only=read_only)
    wrapped = AsyncFileSystemWrapper(union, asynchronous=True)
    return FsspecStore(wrapped, read_only=read_only, path=path)


def _single_local_dir(union: UnionFileSystem, path: str) -> str | None:
    """The OS path of ``path`` when one local layer alone holds it, else None."""
    hit = union.lookup(path)
    if hit is None or not hit.is_dir:
        return None
    other = union.static if hit.layer is union.overlay else union.overlay
    if other is not None and other.stat(path) is not None:
        return None  # both layers hold parts of it: only the union merges them
    return hit.layer.os_path(path)
