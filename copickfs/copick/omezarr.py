"""Write a numpy volume as a multiscale OME-Zarr, the form copick keeps every volume in.

Zarr format 2 with OME-NGFF 0.4 metadata by default, because released copick (1.x) opens
stores with zarr<3, which cannot read format 3. Format 3 is written with OME-NGFF 0.5
metadata (the NGFF version made for it: the multiscales sit under ``attrs["ome"]``).
"""

from __future__ import annotations

from typing import Any, Literal

import numcodecs
import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.codecs import BloscCodec

from . import pyramid

MAX_CHUNK = 256
DEFAULT_LEVELS = 3


def write_multiscale(store: Store, data: np.ndarray, voxel_size: float, *, levels: int = DEFAULT_LEVELS,
                     labels: bool = False, dtype: Any = None, name: str = "",
                     zarr_format: Literal[2, 3] = 2, metadata: dict[str, Any] | None = None) -> zarr.Group:
    """Replace what ``store`` holds with ``data`` and its 2x-downsampled levels ``1 .. levels-1``.

    ``data`` is ``(z, y, x)``, or ``(c, z, y, x)`` with a channel axis that is never
    downsampled. Images are downsampled by the mean of each 2x2x2 block, label volumes
    (``labels``) by the nearest voxel, so no new label values appear (both as copick does).
    """
    volume = np.asarray(data if dtype is None else np.asarray(data).astype(dtype, copy=False))
    if volume.ndim not in (3, 4):
        raise ValueError(f"expected a (z, y, x) or (c, z, y, x) volume, got shape {volume.shape}")
    if levels < 1:
        raise ValueError(f"levels must be at least 1, got {levels}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    group = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    datasets = []
    level = volume
    for index in range(levels):
        _write_level(group, str(index), level, zarr_format)
        scale = [float(voxel_size) * 2**index] * 3
        if volume.ndim == 4:
            scale = [1.0, *scale]
        datasets.append({"path": str(index), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
        level = downsample(level, labels)
    multiscale: dict[str, Any] = {"name": name, "axes": axes(volume.ndim), "datasets": datasets}
    if metadata is not None:  # copick keeps e.g. a panoptic segmentation's channel names here
        multiscale["metadata"] = metadata
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return group


def axes(ndim: int) -> list[dict[str, str]]:
    spatial = [{"name": axis, "type": "space", "unit": "angstrom"} for axis in "zyx"]
    return ([{"name": "c", "type": "channel"}] if ndim == 4 else []) + spatial


def multiscales(group: zarr.Group) -> list[dict[str, Any]]:
    """The multiscales list of an OME-Zarr group of either NGFF version; [] if it has none."""
    attrs = group.attrs.asdict()
    found = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or []
    return list(found)


def chunks_for(shape: tuple[int, ...]) -> tuple[int, ...]:
    """At most 256 voxels a side; one channel per chunk."""
    spatial = tuple(max(1, min(MAX_CHUNK, n)) for n in shape[-3:])
    return ((1,) if len(shape) == 4 else ()) + spatial


def downsample(volume: np.ndarray, labels: bool) -> np.ndarray:
    """Halve the three spatial axes exactly as copick does (`pyramid`), so copick and copickfs write the same levels."""
    return pyramid.label_level(volume) if labels else pyramid.image_level(volume)


def _write_level(group: zarr.Group, path: str, level: np.ndarray, zarr_format: int) -> None:
    options: dict[str, Any]
    if zarr_format == 2:
        options = {"compressors": numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
                   "chunk_key_encoding": {"name": "v2", "separator": "/"}}
    else:
        options = {"compressors": BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")}
    array = group.create_array(path, shape=level.shape, chunks=chunks_for(level.shape), dtype=level.dtype,
                               fill_value=0, **options)
    array[...] = level
