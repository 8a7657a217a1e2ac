"""The MRC2014 header of a virtual MRC file, and the file mode each zarr dtype maps to.

Why these choices (https://www.ccpem.ac.uk/mrc_format/mrc2014.php):

- Modes follow what `mrcfile` writes, so every MRC2014 reader sees the zarr's values:
  float32 -> 2, int16 -> 1, uint16 -> 6, int8 -> 0 (signed, as MRC2014 says), float16 -> 12.
  uint8 is *widened* to mode 6 (uint16): MRC2014's mode 0 is signed, and only readers that
  honour IMOD's flags would read 200 as 200 rather than -56. bool becomes mode 0 (0/1).
  float64 and 32/64-bit integers are converted to float32 (mode 2): exact for integers up
  to 2**24 in magnitude (label ids), rounded otherwise. Anything else (complex, strings,
  structured) has no virtual file.
- The statistics are marked "not determined" as MRC2014 allows (DMAX < DMIN, DMEAN below
  both, RMS < 0; the values `mrcfile` uses): computing them needs every voxel, and a header
  whose bytes changed once they were known would contradict pages a reader already has.
- Signed bytes also carry IMOD's stamp with its "signed bytes" flag, since IMOD reads mode
  0 as unsigned without it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEADER_BYTES = 1024
MAP_ID = b"MAP "
MACHINE_STAMP_LITTLE = b"\x44\x44\x00\x00"
NVERSION = 20141
#: Space group of a single volume, and of a stack of volumes (a channel axis).
VOLUME_SPACEGROUP, VOLUME_STACK_SPACEGROUP = 1, 401
#: "Not determined" statistics (MRC2014: DMAX < DMIN, DMEAN < min, RMS < 0).
UNKNOWN_STATS = (0.0, -1.0, -2.0, -1.0)
IMOD_STAMP, IMOD_SIGNED_BYTES = 1146047817, 1

_MODES: dict[str, tuple[int, str]] = {
    "f4": (2, "<f4"), "i2": (1, "<i2"), "u2": (6, "<u2"), "i1": (0, "i1"), "f2": (12, "<f2"),
    "u1": (6, "<u2"), "b1": (0, "i1"),
    "f8": (2, "<f4"), "i4": (2, "<f4"), "u4": (2, "<f4"), "i8": (2, "<f4"), "u8": (2, "<f4"),
}


def mode_for(dtype: np.dtype) -> tuple[int, np.dtype] | None:
    """(MRC mode, little-endian dtype of the file's voxels) for a zarr dtype; None if refused."""
    found = _MODES.get(f"{dtype.kind}{dtype.itemsize}")
    return None if found is None else (found[0], np.dtype(found[1]))


@dataclass(frozen=True, slots=True)
class Geometry:
    """What the header says of a volume: sizes in voxels, voxel size and origin in Å (x, y, z)."""

    nx: int
    ny: int
    nz: int
    volumes: int  # > 1: a volume stack (MRC2014 ISPG 401), the zarr's channel axis
    mode: int
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    label: str


def pack_header(g: Geometry) -> bytes:
    """The 1024 header bytes (little-endian, no extended header)."""
    vx, vy, vz = g.voxel_size
    dmin, dmax, dmean, rms = UNKNOWN_STATS
    ispg = VOLUME_STACK_SPACEGROUP if g.volumes > 1 else VOLUME_SPACEGROUP
    head = bytearray(HEADER_BYTES)
    struct.pack_into("<3i i 3i 3i 3f 3f 3i 3f i i", head, 0,
                     g.nx, g.ny, g.nz * g.volumes, g.mode,
                     0, 0, 0,                          # nxstart, nystart, nzstart
                     g.nx, g.ny, g.nz,                 # mx, my, mz: one volume
                     g.nx * vx, g.ny * vy, g.nz * vz,  # cella (Å)
                     90.0, 90.0, 90.0,                 # cellb
                     1, 2, 3,                          # mapc, mapr, maps: x fastest, then y, z
                     dmin, dmax, dmean,
                     ispg, 0)                          # nsymbt: no extended header
    struct.pack_into("<i", head, 108, NVERSION)
    if g.mode == 0:
        struct.pack_into("<ii", head, 152, IMOD_STAMP, IMOD_SIGNED_BYTES)
    struct.pack_into("<3f", head, 196, *g.origin)
    head[208:212] = MAP_ID
    head[212:216] = MACHINE_STAMP_LITTLE
    struct.pack_into("<f i", head, 216, rms, 1)     # rms, nlabl
    label = g.label.encode("ascii", "replace")[:80]
    head[224:224 + len(label)] = label
    return bytes(head)


__all__ = ["HEADER_BYTES", "Geometry", "UNKNOWN_STATS", "mode_for", "pack_header"]
