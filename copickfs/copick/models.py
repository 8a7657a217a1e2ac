"""Pydantic schemas of what copick keeps on disk, apart from the classes that behave.

Field names, defaults and JSON shapes are copick's (copick.models), so a file written
from these models is read by released copick and the other way round. The project config
and `PickableObject` live in `copickfs.config`, since the mount reads the same file.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ..config import CopickConfig, PickableObject
from .filament_models import AnnotationFile, CopickFilament, CopickFilamentCurve, CopickFilamentsFile
from .paths import segmentation_type

#: copick's name for the filesystem config; it is the very config the mount reads.
CopickConfigFSSpec = CopickConfig

IDENTITY: list[list[float]] = np.eye(4).tolist()


class PicksFileError(ValueError):
    """A picks file that cannot be read; the message names the file."""


class CopickLocation(BaseModel):
    """A point's position in angstrom."""

    x: float
    y: float
    z: float


class CopickPoint(BaseModel):
    """One pick: location, orientation (object to tomogram, 4x4), instance and score."""

    location: CopickLocation
    transformation_: list[list[float]] = Field(default_factory=lambda: [row[:] for row in IDENTITY])
    instance_id: int | None = 0
    score: float | None = 1.0

    @field_validator("transformation_")
    @classmethod
    def _affine(cls, value: list[list[float]]) -> list[list[float]]:
        matrix = np.asarray(value, dtype=float)
        if matrix.shape != (4, 4):
            raise ValueError(f"transformation_ must be a 4x4 matrix, got shape {matrix.shape}")
        if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError("the last row of transformation_ must be [0, 0, 0, 1]")
        return value

    @property
    def transformation(self) -> np.ndarray:
        return np.asarray(self.transformation_, dtype=float)

    @transformation.setter
    def transformation(self, value: np.ndarray) -> None:
        self.transformation_ = self._affine(np.asarray(value, dtype=float).tolist())


class CopickPicksFile(AnnotationFile):
    """A picks JSON file: the points of one object by one user in one session."""

    points: list[CopickPoint] | None = Field(default_factory=list)
    trust_orientation: bool | None = True

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> CopickPicksFile:
        """Parse a picks file; `PicksFileError` names ``source`` and what is wrong."""
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as e:
            raise PicksFileError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "file"
            raise PicksFileError(f"{source}: not a copick picks file: {field}: {first['msg']}") from None

    def to_json(self) -> str:
        """copick's own layout (``json.dump(model_dump(), indent=4)``)."""
        return json.dumps(self.model_dump(), indent=4)


class CopickRunMeta(BaseModel):
    name: str


class CopickVoxelSpacingMeta(BaseModel):
    voxel_size: float


class CopickTomogramMeta(BaseModel):
    tomo_type: str


class CopickFeaturesMeta(BaseModel):
    tomo_type: str
    feature_type: str


class CopickMeshMeta(BaseModel):
    pickable_object_name: str
    user_id: str
    session_id: str


class CopickSegmentationMeta(BaseModel):
    """A segmentation's key; at most one of the type flags is set (none: binary)."""

    user_id: str
    session_id: str
    name: str
    is_multilabel: bool
    is_instance: bool = False
    is_panoptic: bool = False
    voxel_size: float

    @model_validator(mode="after")
    def _one_type(self) -> CopickSegmentationMeta:
        segmentation_type(self.is_multilabel, self.is_instance, self.is_panoptic)
        return self


__all__ = ["CopickConfig", "CopickConfigFSSpec", "CopickFeaturesMeta", "CopickFilament", "CopickFilamentCurve",
           "CopickFilamentsFile",
           "CopickLocation", "CopickMeshMeta",
           "CopickPicksFile", "CopickPoint", "CopickRunMeta", "CopickSegmentationMeta", "CopickTomogramMeta",
           "CopickVoxelSpacingMeta", "PickableObject", "PicksFileError"]


def as_config(config: CopickConfig | dict[str, Any]) -> CopickConfig:
    """Accept a config model or its decoded JSON."""
    return config if isinstance(config, CopickConfig) else CopickConfig.model_validate(config)
