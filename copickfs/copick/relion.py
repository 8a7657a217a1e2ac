"""Picks as RELION particle tables and back (copick's ``CopickPicks.df`` / ``from_df``, format "relion").

Positions are copick's: corner-origin angstrom, each point's location plus its transform's
translation. RELION 5 reads centred coordinates (``rlnCenteredCoordinate*Angst``, relative
to the tomogram centre), RELION 4 pixel coordinates (``rlnCoordinate*``, in tilt-series
pixels). Angles are RELION's ZYZ Euler angles of the inverse rotation. Filament columns
(helical tube IDs) are not written; they are read back as instance IDs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .files import CopickPicksFSSpec

log = logging.getLogger("copickfs.copick")
CENTERED = ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
PIXELS = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]
ANGLES = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
SUBTOMOGRAM = ["rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"]
ORIGINS = ["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"]


def copick_tomogram_center(picks: CopickPicksFSSpec) -> tuple[float, float, float] | None:
    """Centre in angstrom of the run's first tomogram at its smallest voxel spacing that has one (as copick)."""
    spacings = [vs for vs in picks.run.voxel_spacings if vs.tomograms]
    if not spacings:
        return None
    vs = min(spacings, key=lambda v: v.voxel_size)
    import zarr

    nz, ny, nx = zarr.open_group(vs.tomograms[0].zarr(), mode="r")["0"].shape[-3:]  # type: ignore[union-attr]
    return nx / 2 * vs.voxel_size, ny / 2 * vs.voxel_size, nz / 2 * vs.voxel_size


def _smallest_voxel_spacing(picks: CopickPicksFSSpec) -> float | None:
    spacings = picks.run.voxel_spacings
    return min(vs.voxel_size for vs in spacings) if spacings else None


def _eulers(rotations: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    eulers = np.zeros((rotations.shape[0], 3))
    for i, matrix in enumerate(rotations):
        if not np.allclose(matrix, np.eye(3)):  # identities: zero angles, without scipy's gimbal-lock warning
            eulers[i] = Rotation.from_matrix(matrix).inv().as_euler("ZYZ", degrees=True)
    return eulers


def _rotations(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    n = len(df)
    if not set(columns) <= set(df.columns):
        return np.tile(np.eye(3), (n, 1, 1))
    angles = df[columns].to_numpy(dtype=float)
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(n, 3, 3)


def picks_to_df(picks: CopickPicksFSSpec, *, voxel_spacing: float | None = None,
                tilt_series_pixel_size: float | None = None,
                tomogram_center: tuple[float, float, float] | None = None, **_: Any) -> pd.DataFrame:
    """The picks as RELION rows: centred coordinates when the centre is known, pixels with a pixel size."""
    import pandas as pd

    points, transforms = picks.numpy()
    full = points + transforms[:, :3, 3]
    center = tomogram_center if tomogram_center is not None else copick_tomogram_center(picks)
    data: dict[str, Any] = {"rlnTomoName": [picks.run.name] * len(points)}
    pixel_size = tilt_series_pixel_size
    if pixel_size is None and center is None:
        pixel_size = voxel_spacing if voxel_spacing is not None else _smallest_voxel_spacing(picks)
        if pixel_size is None:
            raise ValueError("Cannot write RELION coordinates: need the tomogram centre (for centred coordinates) or "
                             "the tilt-series pixel size.")
        log.warning("writing rlnCoordinateX/Y/Z in pixels of a tomogram at %s A", pixel_size)
    if pixel_size is not None:
        for column, values in zip(PIXELS, (full / float(pixel_size)).T, strict=True):
            data[column] = values
    for column, values in zip(ANGLES, _eulers(transforms[:, :3, :3]).T, strict=True):
        data[column] = values
    if center is not None:
        for column, values in zip(CENTERED, (full - np.asarray(center, dtype=float)).T, strict=True):
            data[column] = values
    return pd.DataFrame(data)


def df_to_picks(picks: CopickPicksFSSpec, df: pd.DataFrame, *, tilt_series_pixel_size: float | None = None,
                tomogram_center: tuple[float, float, float] | None = None, relion_version: str | None = None,
                **_: Any) -> None:
    """Set and store the picks from RELION rows (centred coordinates first, then pixel coordinates)."""
    if relion_version not in (None, "relion4", "relion5"):
        raise ValueError(f"Unknown RELION version '{relion_version}'; expected 'relion4' or 'relion5'.")
    has_centered, has_pixels = set(CENTERED) <= set(df.columns), set(PIXELS) <= set(df.columns)
    if not has_centered and not has_pixels:
        raise ValueError("DataFrame does not contain required RELION columns.")
    coordinates = None
    if has_centered and relion_version != "relion4":
        center = tomogram_center if tomogram_center is not None else copick_tomogram_center(picks)
        if center is not None:
            coordinates = df[CENTERED].to_numpy(dtype=float) + np.asarray(center, dtype=float)
        elif relion_version == "relion5" or not has_pixels:
            raise ValueError("RELION 5.0 coordinates require tomogram dimensions: the run has no tomogram.")
    if coordinates is None:
        if not has_pixels:
            raise ValueError("the table must contain rlnCoordinateX, rlnCoordinateY, rlnCoordinateZ columns")
        size = tilt_series_pixel_size if tilt_series_pixel_size is not None else _smallest_voxel_spacing(picks)
        if size is None:
            raise ValueError("rlnCoordinateX/Y/Z need a pixel size: pass tilt_series_pixel_size")
        coordinates = df[PIXELS].to_numpy(dtype=float) * float(size)
    sub, particle = _rotations(df, SUBTOMOGRAM), _rotations(df, ANGLES)
    origins = df[ORIGINS].to_numpy(dtype=float) if set(ORIGINS) <= set(df.columns) else np.zeros((len(df), 3))
    transforms = np.zeros((len(df), 4, 4))
    transforms[:, :3, :3] = np.einsum("nij,njk->nik", sub, particle)
    transforms[:, 3, 3] = 1.0
    ids = df["rlnHelicalTubeID"].to_numpy().astype(np.int64) if "rlnHelicalTubeID" in df.columns else None
    picks.from_numpy(coordinates - np.einsum("nij,nj->ni", sub, origins), transforms, instance_ids=ids)
