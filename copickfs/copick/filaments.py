"""Traced filaments: ``Filaments/<user>_<session>_<object>.json``, ordered centrelines in angstrom.

copick 1.31's file format and API, editable curves included: points may be regenerated from
a curve (`from_control_points`, `from_curves`), and a curve that no longer describes its
points is dropped when stored, with a warning, as copick does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from . import paths
from .curves import CURVE_KINDS
from .base import discard
from .files import _RunFile
from .models import CopickFilament, CopickFilamentCurve, CopickFilamentsFile, PicksFileError

if TYPE_CHECKING:
    from .run import CopickRunFSSpec

log = logging.getLogger("copickfs.copick")


class CopickFilamentsFSSpec(_RunFile):
    """The filaments of one object by one user in one session; read on first use."""

    _directory = paths.FILAMENTS
    _suffix = paths.JSON

    def __init__(self, run: CopickRunFSSpec, file: CopickFilamentsFile, read_only: bool = False) -> None:
        self.run = run
        self.meta = file
        self.read_only = read_only
        self._loaded = False

    def __repr__(self) -> str:
        return (f"CopickFilamentsFSSpec(pickable_object_name={self.pickable_object_name!r}, user_id={self.user_id!r}, "
                f"session_id={self.session_id!r}, read_only={self.read_only})")

    def load(self) -> CopickFilamentsFile:
        """Read the file; `PicksFileError` names it when it is not a filaments file."""
        try:
            self.meta = CopickFilamentsFile.model_validate_json(self._read())
        except ValidationError as e:
            raise PicksFileError(f"{self._relpath}: not a copick filaments file: {e.errors()[0]['msg']}") from None
        self._loaded = True
        return self.meta

    refresh = load

    def _encode(self) -> bytes:
        return self.meta.model_dump_json(indent=4, exclude_none=False).encode()

    @property
    def voxel_spacing(self) -> float | None:
        self._ensure_loaded()
        return self.meta.voxel_spacing

    @property
    def filaments(self) -> list[CopickFilament]:
        self._ensure_loaded()
        return self.meta.filaments

    @filaments.setter
    def filaments(self, value: list[CopickFilament]) -> None:
        self.meta = CopickFilamentsFile.model_validate({**self.meta.model_dump(), "filaments": value})
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded and not self.meta.filaments and self.fs.exists(self._relpath):
            self.load()

    def get(self, instance_id: int) -> CopickFilament | None:
        return next((f for f in self.filaments if f.instance_id == instance_id), None)

    def instance_ids(self) -> np.ndarray:
        return np.array([f.instance_id for f in self.filaments], dtype=np.int64)

    def numpy(self) -> list[np.ndarray]:
        """The centrelines, (M, 3) arrays of x, y, z in angstrom, in file order."""
        return [np.asarray(f.points, dtype=float).reshape(-1, 3) for f in self.filaments]

    def from_numpy(self, polylines: list[np.ndarray], instance_ids: list[int] | None = None,
                   polarity_known: list[bool] | None = None, scores: list[float] | None = None,
                   radii: list[float | None] | None = None, voxel_spacing: float | None = None,
                   metadata: list[dict[str, Any] | None] | None = None) -> None:
        """Replace the filaments by curve-less polylines (IDs default to 1..K) and store them."""
        fields = per_filament_fields(len(polylines), instance_ids, polarity_known, scores, radii, metadata)
        self._set([CopickFilament(points=_point_list(line), **f) for line, f in zip(polylines, fields)], voxel_spacing)

    def from_curves(self, curves: list[CopickFilamentCurve | dict[str, Any]], instance_ids: list[int] | None = None,
                    polarity_known: list[bool] | None = None, scores: list[float] | None = None,
                    radii: list[float | None] | None = None, voxel_spacing: float | None = None,
                    metadata: list[dict[str, Any] | None] | None = None) -> None:
        """Replace the filaments by ones regenerated from curves of known kinds, and store them."""
        fields = per_filament_fields(len(curves), instance_ids, polarity_known, scores, radii, metadata)
        self._set([CopickFilament.from_curve(curve=c, **f) for c, f in zip(curves, fields)], voxel_spacing)

    def from_control_points(self, control_points: list[Any], instance_ids: list[int] | None = None,
                            step: float | None = None, kind: str = "catmull-rom", alpha: float = 0.5,
                            polarity_known: list[bool] | None = None, scores: list[float] | None = None,
                            radii: list[float | None] | None = None, voxel_spacing: float | None = None,
                            metadata: list[dict[str, Any] | None] | None = None) -> None:
        """Replace the filaments by ones traced through control points, and store them.

        ``step`` (the spacing of the regenerated points) defaults to ``voxel_spacing``, then the file's.
        """
        step = step or voxel_spacing or self.meta.voxel_spacing
        if not step:
            raise ValueError("Pass step or voxel_spacing: the spacing of the regenerated points.")
        fields = per_filament_fields(len(control_points), instance_ids, polarity_known, scores, radii, metadata)
        self._set([CopickFilament.from_control_points(control_points=c, step=step, kind=kind, alpha=alpha, **f)
                   for c, f in zip(control_points, fields)], voxel_spacing)

    def control_points(self) -> list[np.ndarray | None]:
        """Per filament, the control points of its current curve, or None."""
        return [np.asarray(f.curve.control_points, dtype=float) if f.curve is not None and f.curve_is_current()
                else None for f in self.filaments]

    def editable_curve(self, instance_id: int, tolerance: float | None = None,
                       kinds: Iterable[str] = CURVE_KINDS) -> CopickFilamentCurve:
        """One filament's `CopickFilament.editable_curve`, derived at the file's voxel spacing; KeyError if absent."""
        filament = self.get(instance_id)
        if filament is None:
            raise KeyError(f"No filament with instance ID {instance_id}.")
        step = self.voxel_spacing or None
        return filament.editable_curve(tolerance=tolerance or (step / 2 if step else None), step=step, kinds=kinds)

    def store(self) -> None:
        """Write to the overlay; curves of known kinds that no longer describe their points are dropped first."""
        self._check_writable("store")
        if not self._loaded and self.fs.exists(self._relpath):
            self.load()
        self._drop_stale_curves()
        super().store()

    def _drop_stale_curves(self) -> None:
        stale = [f.instance_id for f in self.meta.filaments
                 if f.curve is not None and f.curve.is_known and not f.curve_is_current()]
        if not stale:
            return
        log.warning("Dropping the curves of filaments %s of %s (%s/%s): their points were changed without "
                    "regenerating them from the curve.", stale, self.pickable_object_name, self.user_id,
                    self.session_id)
        self.meta = CopickFilamentsFile.model_validate({**self.meta.model_dump(), "filaments": [
            f.model_copy(update={"curve": None}) if f.instance_id in stale else f for f in self.meta.filaments]})

    def _set(self, filaments: list[CopickFilament], voxel_spacing: float | None) -> None:
        self.meta = CopickFilamentsFile.model_validate({
            **self.meta.model_dump(), "filaments": filaments,
            "voxel_spacing": voxel_spacing if voxel_spacing is not None else self.meta.voxel_spacing})
        self._loaded = True
        self.store()

    def _forget(self) -> None:
        discard(self.run._filaments, self)


def _point_list(points: Any) -> list[tuple[float, float, float]]:
    return [tuple(map(float, p)) for p in np.asarray(points, dtype=float).reshape(-1, 3)]  # type: ignore[misc]


def per_filament_fields(count: int, instance_ids: list[int] | None, polarity_known: list[bool] | None,
                        scores: list[float] | None, radii: list[float | None] | None,
                        metadata: list[dict[str, Any] | None] | None) -> list[dict[str, Any]]:
    """The per-filament fields of the ``from_*`` setters, with copick's defaults; each list must have ``count``."""
    for name, values in (("instance_ids", instance_ids), ("polarity_known", polarity_known), ("scores", scores),
                         ("radii", radii), ("metadata", metadata)):
        if values is not None and len(values) != count:
            raise ValueError(f"{name} must have one entry per filament ({count}), got {len(values)}.")
    return [{"instance_id": int(instance_ids[i]) if instance_ids is not None else i + 1,
             "polarity_known": bool(polarity_known[i]) if polarity_known is not None else False,
             "score": float(scores[i]) if scores is not None else 1.0,
             "radius": None if radii is None or radii[i] is None else float(radii[i]),
             "metadata": {} if metadata is None or metadata[i] is None else dict(metadata[i])} for i in range(count)]
