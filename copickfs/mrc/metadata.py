"""What a virtual MRC file needs to know of one level of an OME-Zarr multiscale group.

Read from the metadata documents in the union (Zarr format 2: ``.zattrs``/``.zarray``;
format 3: ``zarr.json``) and kept per document identity (layer, inode, size, mtime), so a
stat costs a few lookups and no parsing, and a document rewritten through the mount or
the library is read again at once.

A level gets a virtual file when its array is 3-D (z, y, x), or 4-D with a leading
channel axis (c, z, y, x; an MRC volume stack), its dtype has a mode (`header.mode_for`),
and its chunks are plain (no sharding, codecs that numcodecs decodes). Voxel sizes and
origins come from the OME-NGFF scale and translation (dataset's, then the multiscale's),
in Å: axis units "angstrom" (or none: copick's unit), "nanometer", "micrometer",
"picometer".
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..union import UnionFileSystem
from .codecs import Decoder, v2_decoder, v3_decoder
from .header import HEADER_BYTES, Geometry, mode_for, pack_header

_UNITS_IN_ANGSTROM = {None: 1.0, "angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "picometer": 0.01}
_MAX_DOCUMENTS = 4096


@dataclass(frozen=True)
class Level:
    """One level of a volume as a virtual MRC file: its geometry, header and chunk grid."""

    zarr: str                            # union path of the group
    array: str                           # union path of the level's array
    shape: tuple[int, int, int, int]     # (c, z, y, x); c == 1 for a plain volume
    chunks: tuple[int, int, int, int]
    stored_ndim: int                     # 3 or 4
    dtype: np.dtype                      # of the file's voxels (little-endian)
    decoder: Decoder
    fill: Any
    chunk_key: Callable[[tuple[int, ...]], str]
    header: bytes
    identity: tuple[Any, ...]            # of the metadata it was made from

    @property
    def size(self) -> int:
        c, z, y, x = self.shape
        return HEADER_BYTES + c * z * y * x * self.dtype.itemsize

    def chunk_path(self, index: tuple[int, int, int, int]) -> str:
        """Union path of the chunk at 4-D grid ``index``."""
        stored = index if self.stored_ndim == 4 else index[1:]
        return f"{self.array}/{self.chunk_key(stored)}"


class Catalog:
    """Levels of OME-Zarr groups, made from their metadata documents and kept while those are unchanged."""

    def __init__(self, union: UnionFileSystem) -> None:
        self.union = union
        self._docs: OrderedDict[tuple[Any, ...], dict[str, Any] | None] = OrderedDict()
        self._levels: OrderedDict[tuple[Any, ...], Level | None] = OrderedDict()
        self._lock = threading.Lock()

    def level(self, zarr: str, index: int) -> Level | None:
        """Level ``index`` of the group at ``zarr`` if it makes a virtual MRC file, else None."""
        group, group_id = self._group_attrs(zarr)
        if group is None:
            return None
        datasets = _datasets(group)
        if datasets is None or index >= len(datasets):
            return None
        array_path = f"{zarr}/{datasets[index].get('path', '')}".rstrip("/")
        array, array_id = self._array_meta(array_path)
        if array is None:
            return None
        key = (zarr, index, group_id, array_id)
        with self._lock:
            if key in self._levels:
                self._levels.move_to_end(key)
                return self._levels[key]
        try:
            made = _make_level(zarr, array_path, group, datasets[index], array, key)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            made = None  # metadata that does not describe a volume we can serve
        self._remember(self._levels, key, made)
        return made

    def levels(self, zarr: str) -> int:
        """How many levels the group's first multiscale lists (0 if it is none)."""
        group, _ = self._group_attrs(zarr)
        datasets = None if group is None else _datasets(group)
        return 0 if datasets is None else len(datasets)

    # ------------------------------------------------------------ documents

    def _group_attrs(self, zarr: str) -> tuple[dict[str, Any] | None, Any]:
        """A group's attributes: Zarr 2's ``.zattrs``, or Zarr 3's ``attributes``."""
        doc, ident, v3 = self._node(zarr, ".zattrs", "group")
        return ((doc.get("attributes") or {}) if v3 and doc is not None else doc), ident

    def _array_meta(self, path: str) -> tuple[dict[str, Any] | None, Any]:
        doc, ident, _ = self._node(path, ".zarray", "array")
        return doc, ident

    def _node(self, path: str, v2_name: str, node_type: str) -> tuple[dict[str, Any] | None, Any, bool]:
        """The Zarr 2 document ``v2_name`` of ``path``, else its ``zarr.json`` if that is a
        ``node_type``; its identity; whether it is Zarr 3's."""
        v2, v2_id = self._doc(f"{path}/{v2_name}")
        if v2 is not None:
            return v2, v2_id, False
        v3, v3_id = self._doc(f"{path}/zarr.json")
        if v3 is None or v3.get("node_type") != node_type:
            return None, v3_id, True
        return v3, v3_id, True

    def _doc(self, path: str) -> tuple[dict[str, Any] | None, Any]:
        """The JSON object at ``path`` and its identity; (None, None) if absent or not JSON."""
        hit = self.union.lookup(path)
        if hit is None or not hit.stat.is_file:
            return None, None
        st = hit.stat
        key = (path, id(hit.layer), st.dev, st.ino, st.size, st.mtime_ns)
        with self._lock:
            if key in self._docs:
                self._docs.move_to_end(key)
                return self._docs[key], key
        try:
            with self.union.open(path, "rb") as f:
                doc = json.loads(f.read(1 << 22))
            doc = doc if isinstance(doc, dict) else None
        except (OSError, ValueError):
            doc = None
        self._remember(self._docs, key, doc)
        return doc, key

    def _remember(self, table: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            table[key] = value
            while len(table) > _MAX_DOCUMENTS:
                table.popitem(last=False)


def _datasets(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        return None
    datasets = multiscales[0].get("datasets")
    if not isinstance(datasets, list) or not all(isinstance(d, dict) for d in datasets):
        return None
    return datasets


def _make_level(zarr: str, array_path: str, group: dict[str, Any], dataset: dict[str, Any],
                array: dict[str, Any], identity: tuple[Any, ...]) -> Level | None:
    if array.get("zarr_format") == 2:
        shape, chunks = tuple(array["shape"]), tuple(array["chunks"])
        decoded = v2_decoder(array, chunks)
    else:
        shape = tuple(array["shape"])
        grid = array["chunk_grid"]
        if grid.get("name") != "regular":
            return None
        chunks = tuple(grid["configuration"]["chunk_shape"])
        decoded = v3_decoder(array, chunks)
    if decoded is None or len(shape) not in (3, 4) or len(chunks) != len(shape):
        return None
    decoder, stored_dtype, fill, chunk_key = decoded
    if min(shape) < 1 or min(chunks) < 1:
        return None
    modes = mode_for(stored_dtype)
    if modes is None:
        return None
    mode, dtype = modes
    multiscale = (group.get("multiscales") or group["ome"]["multiscales"])[0]
    axes = multiscale.get("axes")
    if axes is not None and not _zyx_last(axes, len(shape)):
        return None
    voxel, origin = _placement(dataset, multiscale, axes, len(shape))
    shape4 = (1, *shape) if len(shape) == 3 else shape
    chunks4 = (1, *chunks) if len(chunks) == 3 else chunks
    c, z, y, x = shape4
    label = f"copickfs {zarr}/{array_path[len(zarr) + 1:]}"
    header = pack_header(Geometry(x, y, z, c, mode, voxel, origin, label))
    return Level(zarr, array_path, shape4, chunks4, len(shape), dtype, decoder, fill, chunk_key,  # type: ignore[arg-type]
                 header, identity)


def _zyx_last(axes: list[Any], ndim: int) -> bool:
    names = [a.get("name") if isinstance(a, dict) else a for a in axes]
    return len(names) == ndim and names[-3:] == ["z", "y", "x"]


def _placement(dataset: dict[str, Any], multiscale: dict[str, Any], axes: list[Any] | None,
               ndim: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(voxel size, origin) in Å, x first."""
    scale, shift = [1.0] * ndim, [0.0] * ndim
    for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
        for t in transforms or []:  # the multiscale's apply after the dataset's
            if t.get("type") == "scale" and len(t.get("scale", ())) == ndim:
                scale = [a * float(b) for a, b in zip(scale, t["scale"])]
                shift = [a * float(b) for a, b in zip(shift, t["scale"])]
            elif t.get("type") == "translation" and len(t.get("translation", ())) == ndim:
                shift = [a + float(b) for a, b in zip(shift, t["translation"])]
    units = [None] * ndim
    if axes is not None:
        units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    factors = [_UNITS_IN_ANGSTROM.get(u, 1.0) for u in units]
    voxel = [s * f for s, f in zip(scale, factors)][-3:]
    origin = [s * f for s, f in zip(shift, factors)][-3:]
    if not all(math.isfinite(v) and v > 0 for v in voxel) or not all(math.isfinite(o) for o in origin):
        raise ValueError("voxel sizes must be positive, origins finite")
    return (voxel[2], voxel[1], voxel[0]), (origin[2], origin[1], origin[0])


__all__ = ["Catalog", "Level"]
