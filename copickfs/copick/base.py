"""What every copick entity shares: where it lives in the union, whether it may change, removal.

Entities are thin views: each knows its union path (from `paths`) and the layer it won
in when it was listed. ``fs`` is the union and ``path`` a union path, so
``entity.fs.open(entity.path)`` reads whichever layer holds it and writes land in the
overlay; ``static_path``/``overlay_path`` with ``fs_static``/``fs_overlay`` are copick's
per-layer spellings of the same place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import zarr
from fsspec import AbstractFileSystem
from zarr.abc.store import Store

from ..union import UnionFileSystem, markers
from . import omezarr
from .stores import open_store

if TYPE_CHECKING:
    from .root import CopickRootFSSpec


class Entity:
    """A copick entity at a union path; static ones are read-only."""

    read_only: bool = False

    @property
    def root(self) -> CopickRootFSSpec:
        raise NotImplementedError

    @property
    def _relpath(self) -> str:
        """The union path, from the path templates."""
        raise NotImplementedError

    @property
    def fs(self) -> UnionFileSystem:
        return self.root.fs

    @property
    def path(self) -> str:
        return self._relpath

    @property
    def fs_static(self) -> AbstractFileSystem:
        return self.root.fs_static

    @property
    def fs_overlay(self) -> AbstractFileSystem:
        return self.root.fs_overlay

    @property
    def static_path(self) -> str:
        return f"{self.root.root_static}/{self._relpath}"

    @property
    def overlay_path(self) -> str:
        return f"{self.root.root_overlay}/{self._relpath}"

    @property
    def static_is_overlay(self) -> bool:
        return self.root.static_is_overlay

    def _check_writable(self, action: str) -> None:
        if self.read_only:
            raise PermissionError(f"{self.path}: cannot {action}: it is in the static layer, which is read-only")

    def delete(self) -> None:
        """Remove the overlay copy; a static one (read-only) raises PermissionError."""
        self._check_writable("delete")
        self._delete_data()
        self._forget()

    def _delete_data(self) -> None:
        """As copick: the overlay copy goes, and what static holds under the name shows again.

        Only where the overlay had hidden static's copy (an opaque directory) is the name
        deleted through the union, so the hidden static data stays hidden.
        """
        union, path = self.fs, self._relpath
        overlay = union.overlay
        if not union.exists(path):
            raise FileNotFoundError(path)
        opaque = overlay.stat(markers.opaque_marker_of(path)) is not None
        if union.static is None or union.static.stat(path) is None or opaque:
            union.rm(path, recursive=True)
        elif overlay.stat(path) is not None:
            overlay.remove_tree(path)

    def _forget(self) -> None:
        """Drop this entity from its parent's cached listing."""


class VolumeEntity(Entity):
    """An entity stored as an OME-Zarr multiscale: zarr(), numpy(), from_numpy()."""

    #: Written by the writer as a label volume (no new values by downsampling).
    labels = False

    def zarr(self) -> Store:
        """The zarr store; read-only for static entities, created in the overlay if missing."""
        if not self.read_only and not self.fs.exists(self._relpath):
            self.fs.makedirs(self._relpath, exist_ok=True)
        return open_store(self.fs, self._relpath, read_only=self.read_only)

    def _array(self, zarr_group: str) -> zarr.Array:
        group = zarr.open_group(self.zarr(), mode="r")
        return group[zarr_group]  # type: ignore[return-value]

    def _volume(self, zarr_group: str, x: slice, y: slice, z: slice) -> np.ndarray:
        return np.asarray(self._array(zarr_group)[..., z, y, x])

    def _write(self, data: np.ndarray, voxel_size: float, levels: int, dtype: Any, zarr_format: int,
               metadata: dict[str, Any] | None = None) -> None:
        self._check_writable("write")
        omezarr.write_multiscale(self.zarr(), data, voxel_size, levels=levels, labels=self.labels, dtype=dtype,
                                 name=self._name_for_metadata(), zarr_format=zarr_format,  # type: ignore[arg-type]
                                 metadata=metadata)

    def _writable_array(self, zarr_group: str) -> zarr.Array:
        self._check_writable("write")
        return zarr.open_group(self.zarr(), mode="r+")[zarr_group]  # type: ignore[return-value]

    def set_region(self, data: np.ndarray, zarr_group: str = "0", x: slice = slice(None),
                   y: slice = slice(None), z: slice = slice(None)) -> None:
        """Write ``data`` into a region of one level."""
        self._writable_array(zarr_group)[..., z, y, x] = data  # type: ignore[index]

    def _name_for_metadata(self) -> str:
        return ""


ALL = slice(None)


E = TypeVar("E")


def reuse(found: E | list[E] | None, exist_ok: bool, what: str) -> E | None:
    """For new_*(): the entity already there when ``exist_ok``, ValueError when not; None if none is."""
    existing = (found[0] if found else None) if isinstance(found, list) else found
    if existing is not None and not exist_ok:
        raise ValueError(f"{what} already exists")
    return existing


def discard(items: list[Any] | None, item: Any) -> None:
    """Remove ``item`` from a cached listing, if the listing was made and holds it."""
    if items is not None and item in items:
        items.remove(item)
