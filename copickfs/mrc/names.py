"""Where virtual MRC files appear and what their names mean; no I/O.

Beside every OME-Zarr volume copick knows:

    Objects/<object>.zarr
    ExperimentRuns/<run>/VoxelSpacing<vs>/<tomo_type>.zarr          (and features stores)
    ExperimentRuns/<run>/{Segmentations,InstanceSegmentations,PanopticSegmentations}/<...>.zarr

``<stem>.zarr`` shows level 0 as ``<stem>.mrc`` and level k >= 1 as ``<stem>.bin<2**k>.mrc``
(copick's levels are each 2x downsampled from the one before). A name that could mean
both (``a.bin2.mrc``: level 0 of ``a.bin2.zarr`` or level 1 of ``a.zarr``) means the first.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..copick import paths

MRC = ".mrc"
_BIN = ".bin"
_VOLUME_DIRECTORIES = frozenset(paths.SEGMENTATION_DIRECTORIES.values())


def is_volume_place(directory: str) -> bool:
    """Whether copick keeps OME-Zarr volumes in union directory ``directory``."""
    parts = directory.split("/")
    if parts == [paths.OBJECTS]:
        return True
    if len(parts) != 3 or parts[0] != paths.RUNS or paths.is_hidden(parts[1]):
        return False
    if parts[2] in _VOLUME_DIRECTORIES:
        return True
    try:
        return paths.parse_voxel_spacing(parts[2]) is not None
    except paths.MalformedName:
        return False


def mrc_name(zarr_name: str, level: int) -> str:
    """The virtual file's name for ``level`` of the volume ``<stem>.zarr``."""
    stem = zarr_name[: -len(paths.ZARR)]
    return f"{stem}{MRC}" if level == 0 else f"{stem}{_BIN}{2 ** level}{MRC}"


def zarr_name(name: str) -> str | None:
    """``<stem>.zarr`` if ``name`` is a volume store's name, else None."""
    if name.endswith(paths.ZARR) and len(name) > len(paths.ZARR) and not paths.is_hidden(name):
        return name
    return None


def candidates(name: str) -> Iterator[tuple[str, int]]:
    """The (zarr name, level) pairs ``name`` may stand for, the preferred first."""
    if not name.endswith(MRC) or paths.is_hidden(name):
        return
    stem = name[: -len(MRC)]
    if not stem:
        return
    yield stem + paths.ZARR, 0
    base, dot, factor = stem.rpartition(_BIN)
    if dot and base and factor.isdigit() and factor[0] != "0":
        n = int(factor)
        if n >= 2 and n & (n - 1) == 0:
            yield base + paths.ZARR, n.bit_length() - 1


__all__ = ["MRC", "candidates", "is_volume_place", "mrc_name", "zarr_name"]
