"""copick.util.ome.write_ome_zarr_3d, written with zarr 3 (copick's own uses zarr 2 and ome-zarr)."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr


def write_ome_zarr_3d(store: Any, pyramid: dict[float, np.ndarray], chunk_size: tuple[int, int, int] = (256,) * 3,
                      **_: Any) -> None:
    """Levels ``0 .. n-1`` of ``pyramid`` (voxel size -> volume, finest first) as an OME-NGFF 0.4 multiscale."""
    group = zarr.open_group(store, mode="w", zarr_format=2)
    datasets = []
    for index, (voxel_size, data) in enumerate(pyramid.items()):
        array = group.create_array(str(index), shape=data.shape, chunks=chunk_size, dtype=data.dtype)
        array[...] = data
        datasets.append({"path": str(index),
                         "coordinateTransformations": [{"type": "scale", "scale": [float(voxel_size)] * 3}]})
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
