"""Volume entities: tomograms, their feature maps, segmentations and object density maps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import labels, paths
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

    def refresh_features(self) -> None:
        self._features = self.query_features()

    def refresh(self) -> None:
        self.refresh_features()

    def delete_features(self) -> None:
        for features in list(self.features):
            features.delete()

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

    def set_region(self, data: np.ndarray, zarr_group: str = "0",  # type: ignore[override]
                   slices: tuple[slice, ...] | None = None) -> None:
        """Write ``data`` into ``slices`` of one level (copick's features take slices over all axes)."""
        self._writable_array(zarr_group)[slices if slices is not None else ...] = data

    def from_numpy(self, data: np.ndarray, levels: int = 1, dtype: Any = np.float32, zarr_format: int = 2) -> None:
        """Write ``data`` ((c,) z, y, x) as a multiscale."""
        self._write(data, self.tomogram.voxel_spacing.voxel_size, levels, dtype, zarr_format)

    def _forget(self) -> None:
        discard(self.tomogram._features, self)


class CopickSegmentationFSSpec(VolumeEntity):
    """A segmentation store: binary or multilabel in ``Segmentations/``, instance and panoptic in their own directories.

    Binary: one object, 1 inside. Multilabel: voxels hold object labels. Instance: one object,
    voxels hold instance IDs. Panoptic: two channels, object label and instance ID.
    """

    labels = True

    def __init__(self, run: CopickRunFSSpec, meta: CopickSegmentationMeta, read_only: bool = False) -> None:
        self.run = run
        self.meta = meta
        self.read_only = read_only

    def __repr__(self) -> str:
        return (f"CopickSegmentationFSSpec(user_id={self.user_id!r}, session_id={self.session_id!r}, "
                f"name={self.name!r}, type={self.segmentation_type!r}, voxel_size={self.voxel_size})")

    @property
    def root(self) -> CopickRootFSSpec:
        return self.run.root

    user_id = property(lambda self: self.meta.user_id)
    session_id = property(lambda self: self.meta.session_id)
    name = property(lambda self: self.meta.name)
    is_multilabel = property(lambda self: self.meta.is_multilabel)
    is_instance = property(lambda self: self.meta.is_instance)
    is_panoptic = property(lambda self: self.meta.is_panoptic)
    voxel_size = property(lambda self: self.meta.voxel_size)
    from_tool = property(lambda self: self.session_id == "0")
    from_user = property(lambda self: self.session_id != "0")

    @property
    def segmentation_type(self) -> str:
        return self.key.kind

    @property
    def directory(self) -> str:
        """The run directory holding the store (copick names it, not the path)."""
        return paths.SEGMENTATION_DIRECTORIES[self.segmentation_type]

    @property
    def key(self) -> paths.SegmentationKey:
        m = self.meta
        return paths.SegmentationKey(m.voxel_size, m.user_id, m.session_id, m.name, m.is_multilabel, m.is_instance,
                                     m.is_panoptic)

    @property
    def filename(self) -> str:
        return paths.segmentation_name(self.key)

    @property
    def _relpath(self) -> str:
        return paths.segmentation_path(self.run.name, self.key)

    @property
    def color(self) -> list[int] | tuple[int, int, int, int] | None:
        """The object's colour; copick's grey ``[128, 128, 128, 0]`` for multilabel, panoptic and unknown names."""
        obj = None if self.is_multilabel or self.is_panoptic else self.root.get_object(self.name)
        return obj.color if obj is not None else [128, 128, 128, 0]

    def _name_for_metadata(self) -> str:
        return self.name

    def numpy(self, zarr_group: str = "0", x: slice = ALL, y: slice = ALL, z: slice = ALL,
              channel: str | int | None = None) -> np.ndarray:
        """One level; a panoptic segmentation gives ``(2, Z, Y, X)``, or one channel by name or index."""
        if self.is_panoptic:
            c: Any = slice(None) if channel is None else labels.channel_index(channel)
            return np.asarray(self._array(zarr_group)[c, z, y, x])
        self._no_channels(channel)
        return self._volume(zarr_group, x, y, z)

    def from_numpy(self, data: np.ndarray, levels: int = 1, dtype: Any = None, zarr_format: int = 2) -> None:
        """Write a label volume; levels are downsampled without interpolation and values are never narrowed."""
        data = np.asarray(data)
        if self.is_panoptic and (data.ndim != 4 or data.shape[0] != 2):
            raise ValueError(f"A panoptic segmentation is a (2, Z, Y, X) array (channels {labels.PANOPTIC_CHANNELS}), "
                             f"not {data.shape}.")
        if dtype is None:
            dtype = labels.label_dtype(data, floor=np.uint16 if self.is_instance or self.is_panoptic else np.uint8)
        data = labels.checked_cast(data, dtype)
        metadata = None
        if self.is_panoptic:
            labels.check_panoptic(data[0], data[1], self._object_labels())
            metadata = {"copick": {"segmentation_type": "panoptic", "channels": list(labels.PANOPTIC_CHANNELS)}}
        self._write(data, self.voxel_size, levels, None, zarr_format, metadata)

    def set_region(self, data: np.ndarray, zarr_group: str = "0", x: slice = ALL, y: slice = ALL,  # type: ignore[override]
                   z: slice = ALL, channel: str | int | None = None) -> None:
        """Write a region; values that do not fit the stored dtype raise, panoptic values are checked as in from_numpy."""
        array = self._writable_array(zarr_group)
        if not self.is_panoptic:
            self._no_channels(channel)
            array[z, y, x] = labels.checked_cast(data, array.dtype)
            return
        if channel is None:
            data = labels.checked_cast(data, array.dtype)
            if data.ndim != 4 or data.shape[0] != 2:
                raise ValueError(f"A panoptic region is a (2, z, y, x) array, not {data.shape}.")
            labels.check_panoptic(data[0], data[1], self._object_labels())
            array[:, z, y, x] = data
            return
        index = labels.channel_index(channel)
        other = np.asarray(array[1 - index, z, y, x])
        data = np.broadcast_to(labels.checked_cast(data, array.dtype), other.shape)
        label_values, instances = (data, other) if index == 0 else (other, data)
        labels.check_panoptic(label_values, instances, self._object_labels())
        array[index, z, y, x] = data

    def instance_ids(self, zarr_group: str = "0", object_name: str | None = None) -> np.ndarray:
        """Sorted non-zero instance IDs (of ``object_name`` in a panoptic segmentation)."""
        if self.is_instance:
            if object_name not in (None, self.name):
                raise ValueError(f"{self} holds instances of {self.name}, not {object_name}.")
            found = np.unique(self.numpy(zarr_group))
        elif self.is_panoptic:
            if object_name is None:
                raise ValueError("Instance IDs of a panoptic segmentation are per object; pass object_name.")
            label_values, instances = self.numpy(zarr_group)
            found = np.unique(instances[label_values == self._object_label(object_name)])
        else:
            raise ValueError(f"{self} is a {self.segmentation_type} segmentation; instance_ids() needs an instance or "
                             "panoptic one.")
        return found[found != 0].astype(np.int64)

    def segments(self, zarr_group: str = "0") -> list[tuple[str, int]]:
        """A panoptic segmentation's ``(object_name, instance_id)`` pairs; instance 0 is an unsplit region."""
        if not self.is_panoptic:
            raise ValueError(f"{self} is a {self.segmentation_type} segmentation; segments() needs a panoptic one.")
        label_values, instances = self.numpy(zarr_group)
        inside = label_values != 0
        pairs = {(int(a), int(b)) for a, b in np.unique(np.stack([label_values[inside], instances[inside]], axis=1),
                                                        axis=0)} if inside.any() else set()
        names = {o.label: o.name for o in self.root.config.pickable_objects}
        return sorted((names.get(label, str(label)), instance) for label, instance in pairs)

    def label_volume(self, zarr_group: str = "0") -> np.ndarray:
        return self.numpy(zarr_group, channel="label")

    def instance_volume(self, object_name: str, zarr_group: str = "0") -> np.ndarray:
        label_values, instances = self.numpy(zarr_group)
        return np.where(label_values == self._object_label(object_name), instances, 0)

    def _no_channels(self, channel: str | int | None) -> None:
        if channel is not None:
            raise ValueError(f"{self} is a {self.segmentation_type} segmentation; only panoptic ones have channels.")

    def _object_labels(self) -> list[int | None]:
        return [o.label for o in self.root.config.pickable_objects]

    def _object_label(self, object_name: str) -> int:
        obj = self.root.get_object(object_name)
        if obj is None or obj.label is None:
            raise ValueError(f"Object name {object_name} not found in pickable objects.")
        return obj.label

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
