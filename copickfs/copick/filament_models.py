"""Schemas of a filaments file: the file, each filament, and the curve its points may come from.

Field names, defaults, validation and the JSON shape (a curve leaves out the fields its kind
does not use) are copick 1.31's, so either side reads what the other wrote and a curve
stays ``current`` across them. The numerics are in `curves`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from . import curves

Point = tuple[float, float, float]


class CopickFilamentCurve(BaseModel):
    """The editable (``catmull-rom``, ``linear``) or fitted (``bspline``) curve a filament's points are regenerated
    from. Kinds copick does not evaluate are kept as written, extra fields included."""

    model_config = ConfigDict(extra="allow")

    kind: str = Field(min_length=1)
    control_points: list[Point]
    step: float = Field(gt=0)
    alpha: float | None = None
    degree: int | None = None
    knots: list[float] | None = None
    smoothing: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _known_kinds_follow_their_rules(self) -> CopickFilamentCurve:
        if self.kind == "catmull-rom" and self.alpha is None:
            self.alpha = 0.5
        if self.kind in curves.CURVE_KINDS:
            curves.check_curve(self.kind, self.control_points, self.step, alpha=self.alpha, degree=self.degree,
                               knots=self.knots)
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: Any) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}

    @property
    def is_known(self) -> bool:
        return self.kind in curves.CURVE_KINDS

    @property
    def passes_through_control_points(self) -> bool:
        return self.kind in ("catmull-rom", "linear")

    def evaluate(self) -> np.ndarray:
        """The (N, 3) points regenerated from this curve."""
        if not self.is_known:
            raise ValueError(f"Cannot evaluate a curve of unknown kind {self.kind!r}.")
        return curves.evaluate_curve(self.control_points, self.step, kind=self.kind, alpha=self.alpha,
                                     degree=self.degree, knots=self.knots)

    def anchors(self) -> np.ndarray:
        return curves.curve_anchors(self.control_points, kind=self.kind, degree=self.degree, knots=self.knots)

    def is_current_for(self, points: Any) -> bool:
        """Whether this curve still describes ``points`` (never, for an unknown kind)."""
        return curves.curve_is_current(points, self.control_points, self.step, kind=self.kind, degree=self.degree,
                                       knots=self.knots)

    def reversed(self) -> CopickFilamentCurve:
        update: dict[str, Any] = {"control_points": list(reversed(self.control_points))}
        if self.knots is not None:
            update["knots"] = [float(u) for u in curves.reverse_knots(self.knots)]
        return CopickFilamentCurve.model_validate({**self.model_dump(), **update})

    @classmethod
    def from_tck(cls, tck: Any, step: float, smoothing: float | None = None, scale: float = 1.0) -> CopickFilamentCurve:
        """A ``bspline`` from scipy's ``splprep`` output ``(knots, [cx, cy, cz], degree)``; ``scale`` to angstrom."""
        knots, coefficients, degree = tck
        coefficients = np.asarray([np.asarray(c, dtype=float) for c in coefficients])
        if coefficients.ndim != 2 or coefficients.shape[0] != 3:
            raise ValueError("tck must hold three coefficient arrays, for x, y and z.")
        count = len(knots) - int(degree) - 1
        control_points = coefficients[:, :count].T * float(scale)
        return cls(kind="bspline", degree=int(degree), knots=[float(u) for u in knots],
                   control_points=[tuple(map(float, c)) for c in control_points], step=step, smoothing=smoothing)


class CopickFilament(BaseModel):
    """One traced filament: an ordered centreline in angstrom (at least two finite points), maybe with its curve."""

    model_config = ConfigDict(extra="allow")

    instance_id: int = Field(ge=1)
    points: list[Point]
    polarity_known: bool = False
    score: float = 1.0
    radius: float | None = Field(None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    curve: CopickFilamentCurve | None = None

    @field_validator("points")
    @classmethod
    def _points(cls, value: list[Point]) -> list[Point]:
        if len(value) < 2:
            raise ValueError("A filament needs at least two points.")
        if not np.all(np.isfinite(np.asarray(value, dtype=float))):
            raise ValueError("Filament points must be finite.")
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @classmethod
    def from_curve(cls, instance_id: int, curve: CopickFilamentCurve | dict[str, Any], **fields: Any) -> CopickFilament:
        """A filament whose points are regenerated from ``curve`` (a known kind)."""
        curve = CopickFilamentCurve.model_validate(curve)
        return cls(instance_id=instance_id, points=point_list(curve.evaluate()), curve=curve, **fields)

    @classmethod
    def from_control_points(cls, instance_id: int, control_points: Any, step: float, kind: str = "catmull-rom",
                            alpha: float = 0.5, **fields: Any) -> CopickFilament:
        """A filament traced through ``control_points`` (``catmull-rom`` or ``linear``; a bspline: `from_curve`)."""
        if kind not in ("catmull-rom", "linear"):
            raise ValueError(f"from_control_points makes catmull-rom or linear curves, not {kind!r}; use from_curve.")
        curve = CopickFilamentCurve(kind=kind, control_points=point_list(control_points), step=step,
                                    alpha=alpha if kind == "catmull-rom" else None)
        return cls.from_curve(instance_id, curve, **fields)

    def curve_is_current(self) -> bool:
        """Whether the filament has a curve of a known kind that still describes its points."""
        return self.curve is not None and self.curve.is_current_for(self.points)

    def with_control_points(self, control_points: Any, step: float | None = None) -> CopickFilament:
        """A copy with new control points and regenerated points, keeping a current curve's kind (else catmull-rom).

        A bspline keeps its knots, so it needs as many control points as before.
        """
        control_points = point_list(control_points)
        if self.curve is not None and self.curve_is_current():
            if self.curve.kind == "bspline" and len(control_points) != len(self.curve.control_points):
                raise ValueError(
                    f"A bspline keeps its knots, so it needs {len(self.curve.control_points)} control points, got "
                    f"{len(control_points)}. Convert it with editable_curve(kinds=('catmull-rom',)) to add or remove "
                    "points.")
            curve = {**self.curve.model_dump(), "control_points": control_points, "step": step or self.curve.step}
        else:
            curve = {"kind": "catmull-rom", "alpha": 0.5, "control_points": control_points,
                     "step": step or default_step(self.points)}
        fields = self.model_dump(exclude={"instance_id", "points", "curve"})
        return CopickFilament.from_curve(self.instance_id, CopickFilamentCurve.model_validate(curve), **fields)

    def editable_curve(self, tolerance: float | None = None, step: float | None = None,
                       kinds: Iterable[str] = curves.CURVE_KINDS) -> CopickFilamentCurve:
        """The curve an editor should show: its own if current and of one of ``kinds``, else a catmull-rom curve
        derived from the points (within ``tolerance``, default half ``step``; ``step`` default: median spacing)."""
        if self.curve is not None and self.curve_is_current() and self.curve.kind in tuple(kinds):
            return self.curve
        step = step or default_step(self.points)
        control_points = curves.control_points_from_polyline(self.points, tolerance or step / 2)
        return CopickFilamentCurve(kind="catmull-rom", alpha=0.5, control_points=point_list(control_points), step=step)

    def editable_control_points(self, tolerance: float | None = None, step: float | None = None,
                                kinds: Iterable[str] = curves.CURVE_KINDS) -> np.ndarray:
        return np.asarray(self.editable_curve(tolerance=tolerance, step=step, kinds=kinds).control_points, dtype=float)

    def reversed(self) -> CopickFilament:
        """The filament traversed backwards: points and curve both reversed."""
        curve = None if self.curve is None else self.curve.reversed()
        return CopickFilament.model_validate({**self.model_dump(exclude={"curve"}),
                                              "points": list(reversed(self.points)), "curve": curve})


def point_list(points: Any) -> list[Point]:
    return [tuple(map(float, p)) for p in curves.as_points(points)]  # type: ignore[misc]


def default_step(points: Any) -> float:
    spacing = curves.median_spacing(points)
    if spacing <= 0:
        raise ValueError("Cannot derive a step from coincident points; pass step.")
    return spacing


class AnnotationFile(BaseModel):
    """What copick's picks and filaments files share: whose annotations of which object,
    in which run (their fields come first, in this order, as copick writes them)."""

    model_config = ConfigDict(extra="allow")

    pickable_object_name: str
    user_id: str
    session_id: str
    run_name: str | None = None
    voxel_spacing: float | None = None
    unit: str = "angstrom"


class CopickFilamentsFile(AnnotationFile):
    """``Filaments/<user>_<session>_<object>.json``: the filaments of one object by one user in one session."""

    version: int = 1
    filaments: list[CopickFilament] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> CopickFilamentsFile:
        ids = [f.instance_id for f in self.filaments]
        if len(ids) != len(set(ids)):
            raise ValueError("Filament instance IDs must be unique within a file.")
        return self
