"""Volume entities: tomograms, their feature maps, segmentations and object density maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import paths
from .base import ALL, VolumeEntity, discard, reuse
from .models import CopickFeaturesMeta, CopickSegmentationMeta, CopickTomogramMeta, PickableObject
from .query import query

if TYPE_CHECKING:
    from .root import CopickRootFSSpec
    from .run import CopickRunFSSpec, CopickVoxelSpacingFSSpec


class CopickTomogramFSSpec(VolumeEntity):
    """``VoxelSpacing<vs>/<tomo_type>.zarr``; its feature maps sit beside it."""

    def __init__(self, voxel_spacing: CopickVoxelSpacingFSSpec, meta: CopickTomogramMeta,
                 read_only: bool = False) -> None:
        self.voxel_spacing = voxel_spacing
        self.meta = meta
        self.read_only = read_only
        self._features: list[CopickFeaturesFSSpec] | None = None

    def __repr__(self) -> str:
        return f"CopickTomogramFSSpec(tomo_type={self.tomo_type!r}, read_only={self.read_only})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self.voxel_spacing.root

    @property
    def tomo_type(self) -> str:
        return self.meta.tomo_type

    @property
    def _relpath(self) -> str:
        run = self.voxel_spacing.run
        return paths.tomogram_path(run.name, self.voxel_spacing.voxel_size, self.tomo_type)

    @property
    def static_stem(self) -> str:
        return self.static_path[: -len(paths.ZARR)]

    @property
    def overlay_stem(self) -> str:
        return self.overlay_path[: -len(paths.ZARR)]

    def _name_for_metadata(self) -> str:
        return self.tomo_type

    def numpy(self, zarr_group: str = "0", x: slice = ALL, y: slice = ALL, z: slice = ALL) -> np.ndarray:
        """One scale level (``"0"`` is full resolution), optionally a region."""
        return self._volume(zarr_group, x, y, z)

    def from_numpy(self, data: np.ndarray, levels: int = 3, dtype: Any = np.float32, zarr_format: int = 2) -> None:
        """Write ``data`` (z, y, x) as a multiscale of ``levels`` levels."""
        self._write(data, self.voxel_spacing.voxel_size, levels, dtype, zarr_format)

    # ------------------------------------------------------------ features

    @property
    def features(self) -> list[CopickFeaturesFSSpec]:
        if self._features is None:
            self._features = self.query_features()
        return self._features

    def query_features(self) -> list[CopickFeaturesFSSpec]:
        directory = paths.voxel_spacing_path(self.voxel_spacing.run.name, self.voxel_spacing.voxel_size)
        found = query(self.fs, directory, lambda name: paths.parse_features(name, self.tomo_type), "dir")
        return [CopickFeaturesFSSpec(self, CopickFeaturesMeta(tomo_type=self.tomo_type, feature_type=f.key),
                                     read_only=f.read_only) for f in found]

    def get_features(self, feature_type: str) -> CopickFeaturesFSSpec | None:
        return next((f for f in self.features if f.feature_type == feature_type), None)

    def new_features(self, feature_type: str, exist_ok: bool = False) -> CopickFeaturesFSSpec:
        """Features of this tomogram, made in the overlay."""
        paths.check_name(feature_type, "feature type")
        existing = reuse(self.get_features(feature_type), exist_ok,
                         f"features {feature_type!r} of tomogram {self.tomo_type!r}")
        if existing is not None:
            return existing
        features = CopickFeaturesFSSpec(self, CopickFeaturesMeta(tomo_type=self.tomo_type, feature_type=feature_type))
        features.zarr()
        self.features.append(features)
        return features

    def refresh(self) -> None:
        self._features = None

    def _delete_data(self) -> None:
        for features in list(self.features):
            if not features.read_only:
                features.delete()
        super()._delete_data()

    def _forget(self) -> None:
        discard(self.voxel_spacing._tomograms, self)


class CopickFeaturesFSSpec(VolumeEntity):
    """``VoxelSpacing<vs>/<tomo_type>_<feature_type>_features.zarr``."""

    def __init__(self, tomogram: CopickTomogramFSSpec, meta: CopickFeaturesMeta, read_only: bool = False) -> None:
        self.tomogram = tomogram
        self.meta = meta
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"CopickFeaturesFSSpec(tomo_type={self.tomo_type!r}, feature_type={self.feature_type!r})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self.tomogram.root

    @property
    def tomo_type(self) -> str:
        return self.meta.tomo_type

    @property
    def feature_type(self) -> str:
        return self.meta.feature_type

    @property
    def _relpath(self) -> str:
        vs = self.tomogram.voxel_spacing
        return paths.features_path(vs.run.name, vs.voxel_size, self.tomo_type, self.feature_type)

    def numpy(self, zarr_group: str = "0", slices: tuple[slice, ...] | None = None) -> np.ndarray:
        array = self._array(zarr_group)
        return np.asarray(array[slices if slices is not None else ...])

    def from_numpy(self, data: np.ndarray, levels: int = 1, dtype: Any = np.float32, zarr_format: int = 2) -> None:
        """Write ``data`` ((c,) z, y, x) as a multiscale."""
        self._write(data, self.tomogram.voxel_spacing.voxel_size, levels, dtype, zarr_format)

    def _forget(self) -> None:
        discard(self.tomogram._features, self)


class CopickSegmentationFSSpec(VolumeEntity):
    """``Segmentations/<vs>_<user>_<session>_<name>[-multilabel].zarr``."""

    labels = True

    def __init__(self, run: CopickRunFSSpec, meta: CopickSegmentationMeta, read_only: bool = False) -> None:
        self.run = run
        self.meta = meta
        self.read_only = read_only

    def __repr__(self) -> str:
        return (f"CopickSegmentationFSSpec(user_id={self.user_id!r}, session_id={self.session_id!r}, "
                f"name={self.name!r}, is_multilabel={self.is_multilabel}, voxel_size={self.voxel_size})")

    @property
    def root(self) -> CopickRootFSSpec:
        return self.run.root

    user_id = property(lambda self: self.meta.user_id)
    session_id = property(lambda self: self.meta.session_id)
    name = property(lambda self: self.meta.name)
    is_multilabel = property(lambda self: self.meta.is_multilabel)
    voxel_size = property(lambda self: self.meta.voxel_size)
    from_tool = property(lambda self: self.session_id == "0")
    from_user = property(lambda self: self.session_id != "0")

    @property
    def key(self) -> paths.SegmentationKey:
        m = self.meta
        return paths.SegmentationKey(m.voxel_size, m.user_id, m.session_id, m.name, m.is_multilabel)

    @property
    def filename(self) -> str:
        return paths.segmentation_name(self.key)

    @property
    def _relpath(self) -> str:
        return paths.segmentation_path(self.run.name, self.key)

    @property
    def color(self) -> tuple[int, int, int, int] | None:
        obj = None if self.is_multilabel else self.root.get_object(self.name)
        return obj.color if obj is not None else (128, 128, 128, 0)

    def _name_for_metadata(self) -> str:
        return self.name

    def numpy(self, zarr_group: str = "0", x: slice = ALL, y: slice = ALL, z: slice = ALL) -> np.ndarray:
        return self._volume(zarr_group, x, y, z)

    def from_numpy(self, data: np.ndarray, levels: int = 1, dtype: Any = None, zarr_format: int = 2) -> None:
        """Write a label volume; levels are downsampled without interpolation."""
        self._write(data, self.voxel_size, levels, dtype, zarr_format)

    def _forget(self) -> None:
        discard(self.run._segmentations, self)


class CopickObjectFSSpec(VolumeEntity):
    """A pickable object of the config; particles may have a density map ``Objects/<name>.zarr``."""

    def __init__(self, root: CopickRootFSSpec, meta: PickableObject, read_only: bool = False) -> None:
        self._root = root
        self.meta = meta
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"CopickObjectFSSpec(name={self.name!r}, is_particle={self.is_particle})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self._root

    name = property(lambda self: self.meta.name)
    is_particle = property(lambda self: self.meta.is_particle)
    label = property(lambda self: self.meta.label)
    color = property(lambda self: self.meta.color)
    emdb_id = property(lambda self: self.meta.emdb_id)
    pdb_id = property(lambda self: self.meta.pdb_id)
    identifier = property(lambda self: self.meta.identifier)
    map_threshold = property(lambda self: self.meta.map_threshold)
    radius = property(lambda self: self.meta.radius)
    metadata = property(lambda self: self.meta.metadata)

    @property
    def _relpath(self) -> str:
        return paths.object_path(self.name)

    def zarr(self) -> Any:
        """The density map's store; None for objects that are not particles."""
        return super().zarr() if self.is_particle else None

    def numpy(self, zarr_group: str = "0", x: slice = ALL, y: slice = ALL, z: slice = ALL) -> np.ndarray | None:
        if not self.is_particle or not self.fs.exists(self._relpath):
            return None
        return self._volume(zarr_group, x, y, z)

    def from_numpy(self, data: np.ndarray, voxel_size: float, dtype: Any = np.float32, levels: int = 1,
                   zarr_format: int = 2) -> None:
        if not self.is_particle:
            raise ValueError(f"object {self.name!r} is not a particle, so it has no density map")
        self._write(data, voxel_size, levels, dtype, zarr_format)

    def _name_for_metadata(self) -> str:
        return self.name
