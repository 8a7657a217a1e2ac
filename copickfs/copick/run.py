"""Directory entities: runs and voxel spacings, and the children listed in them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import paths
from .base import Entity, discard, reuse
from .files import CopickMeshFSSpec, CopickPicksFSSpec
from .models import (CopickMeshMeta, CopickPicksFile, CopickRunMeta, CopickSegmentationMeta, CopickTomogramMeta,
                     CopickVoxelSpacingMeta)
from .query import query
from .volumes import CopickSegmentationFSSpec, CopickTomogramFSSpec

if TYPE_CHECKING:
    from .root import CopickRootFSSpec

T = TypeVar("T")


class DirectoryEntity(Entity):
    """A directory that holds other entities; read-only when only static holds it."""

    @property
    def read_only(self) -> bool:  # type: ignore[override]
        return self.fs.layer_of(self._relpath) == "static"

    def ensure(self, create: bool = False) -> bool:
        """Whether the directory exists in the union; with ``create``, make it in the overlay if not."""
        if self.fs.isdir(self._relpath):
            return True
        if not create:
            return False
        self.fs.makedirs(self._relpath, exist_ok=True)
        if not self.fs.overlay.is_local:  # object stores keep no empty directories: copick's marker
            self.fs.pipe_file(f"{self._relpath}/{paths.META_FILE}", b"meta")
        return True


class CopickRunFSSpec(DirectoryEntity):
    """``ExperimentRuns/<name>``: voxel spacings, picks, meshes and segmentations."""

    def __init__(self, root: CopickRootFSSpec, meta: CopickRunMeta) -> None:
        self._root = root
        self.meta = meta
        self._voxel_spacings: list[CopickVoxelSpacingFSSpec] | None = None
        self._picks: list[CopickPicksFSSpec] | None = None
        self._meshes: list[CopickMeshFSSpec] | None = None
        self._segmentations: list[CopickSegmentationFSSpec] | None = None

    def __repr__(self) -> str:
        return f"CopickRunFSSpec(name={self.name!r})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self._root

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def _relpath(self) -> str:
        return paths.run_path(self.name)

    def _sub(self, directory: str) -> str:
        return f"{self._relpath}/{directory}"

    # ------------------------------------------------------------ voxel spacings

    @property
    def voxel_spacings(self) -> list[CopickVoxelSpacingFSSpec]:
        if self._voxel_spacings is None:
            self._voxel_spacings = self.query_voxelspacings()
        return self._voxel_spacings

    def query_voxelspacings(self) -> list[CopickVoxelSpacingFSSpec]:
        found = query(self.fs, self._relpath, paths.parse_voxel_spacing, "dir")
        return [CopickVoxelSpacingFSSpec(self, CopickVoxelSpacingMeta(voxel_size=f.key)) for f in found]

    def get_voxel_spacing(self, voxel_size: float) -> CopickVoxelSpacingFSSpec | None:
        return next((vs for vs in self.voxel_spacings if vs.voxel_size == float(voxel_size)), None)

    def new_voxel_spacing(self, voxel_size: float, exist_ok: bool = False) -> CopickVoxelSpacingFSSpec:
        """A voxel spacing directory ``VoxelSpacing<vs:.3f>``, made in the overlay."""
        paths.format_voxel_size(voxel_size)
        existing = reuse(self.get_voxel_spacing(voxel_size), exist_ok,
                         f"voxel spacing {voxel_size} in run {self.name!r}")
        if existing is not None:
            return existing
        vs = CopickVoxelSpacingFSSpec(self, CopickVoxelSpacingMeta(voxel_size=float(voxel_size)))
        vs.ensure(create=True)
        self.voxel_spacings.append(vs)
        return vs

    # ------------------------------------------------------------ picks

    @property
    def picks(self) -> list[CopickPicksFSSpec]:
        if self._picks is None:
            self._picks = self.query_picks()
        return self._picks

    def query_picks(self) -> list[CopickPicksFSSpec]:
        found = query(self.fs, self._sub(paths.PICKS), paths.parse_picks, "file")
        return [CopickPicksFSSpec(self, CopickPicksFile(pickable_object_name=f.key.object_name, user_id=f.key.user_id,
                                                        session_id=f.key.session_id, run_name=self.name),
                                  read_only=f.read_only) for f in found]

    def get_picks(self, object_name: str | Iterable[str] | None = None, user_id: str | Iterable[str] | None = None,
                  session_id: str | Iterable[str] | None = None) -> list[CopickPicksFSSpec]:
        return _select(self.picks, pickable_object_name=object_name, user_id=user_id, session_id=session_id)

    def user_picks(self) -> list[CopickPicksFSSpec]:
        user = self.root.config.user_id
        return self.get_picks(user_id=user) if user is not None else [p for p in self.picks if p.from_user]

    def tool_picks(self) -> list[CopickPicksFSSpec]:
        return [p for p in self.picks if p.from_tool]

    def new_picks(self, object_name: str, session_id: str, user_id: str | None = None,
                  exist_ok: bool = False) -> CopickPicksFSSpec:
        """Empty picks of a pickable object, stored at once in the overlay."""
        key = self._new_key(object_name, session_id, user_id)
        existing = reuse(self.get_picks(object_name, key.user_id, key.session_id), exist_ok,
                         f"picks of {object_name!r} by {key.user_id!r} in session {session_id!r}")
        if existing is not None:
            return existing
        picks = CopickPicksFSSpec(self, CopickPicksFile(pickable_object_name=object_name, user_id=key.user_id,
                                                        session_id=key.session_id, run_name=self.name))
        picks.store()
        self.picks.append(picks)
        return picks

    # ------------------------------------------------------------ meshes

    @property
    def meshes(self) -> list[CopickMeshFSSpec]:
        if self._meshes is None:
            self._meshes = self.query_meshes()
        return self._meshes

    def query_meshes(self) -> list[CopickMeshFSSpec]:
        found = query(self.fs, self._sub(paths.MESHES), paths.parse_mesh, "file")
        return [CopickMeshFSSpec(self, CopickMeshMeta(pickable_object_name=f.key.object_name, user_id=f.key.user_id,
                                                      session_id=f.key.session_id), read_only=f.read_only)
                for f in found]

    def get_meshes(self, object_name: str | Iterable[str] | None = None, user_id: str | Iterable[str] | None = None,
                   session_id: str | Iterable[str] | None = None) -> list[CopickMeshFSSpec]:
        return _select(self.meshes, pickable_object_name=object_name, user_id=user_id, session_id=session_id)

    def new_mesh(self, object_name: str, session_id: str, user_id: str | None = None, exist_ok: bool = False,
                 mesh: Any = None) -> CopickMeshFSSpec:
        """A mesh of a pickable object; stored at once when ``mesh`` (trimesh object or .glb bytes) is given."""
        key = self._new_key(object_name, session_id, user_id)
        existing = reuse(self.get_meshes(object_name, key.user_id, key.session_id), exist_ok,
                         f"mesh of {object_name!r} by {key.user_id!r} in session {session_id!r}")
        if existing is not None:
            return existing
        created = CopickMeshFSSpec(self, CopickMeshMeta(pickable_object_name=object_name, user_id=key.user_id,
                                                        session_id=key.session_id), mesh=mesh)
        if mesh is not None:
            created.store()
        self.meshes.append(created)
        return created

    # ------------------------------------------------------------ segmentations

    @property
    def segmentations(self) -> list[CopickSegmentationFSSpec]:
        if self._segmentations is None:
            self._segmentations = self.query_segmentations()
        return self._segmentations

    def query_segmentations(self) -> list[CopickSegmentationFSSpec]:
        found = query(self.fs, self._sub(paths.SEGMENTATIONS), paths.parse_segmentation, "dir")
        return [CopickSegmentationFSSpec(self, CopickSegmentationMeta(**f.key._asdict()), read_only=f.read_only)
                for f in found]

    def get_segmentations(self, user_id: str | Iterable[str] | None = None,
                          session_id: str | Iterable[str] | None = None, is_multilabel: bool | None = None,
                          name: str | Iterable[str] | None = None,
                          voxel_size: float | Iterable[float] | None = None) -> list[CopickSegmentationFSSpec]:
        sizes = [voxel_size] if isinstance(voxel_size, (int, float)) else voxel_size
        found = _select(self.segmentations, user_id=user_id, session_id=session_id, name=name)
        if is_multilabel is not None:
            found = [s for s in found if s.is_multilabel == is_multilabel]
        if sizes is not None:
            found = [s for s in found if s.voxel_size in [float(v) for v in sizes]]
        return found

    def new_segmentation(self, voxel_size: float, name: str, session_id: str, is_multilabel: bool = False,
                         user_id: str | None = None, exist_ok: bool = False) -> CopickSegmentationFSSpec:
        """A segmentation store in the overlay; a binary one is named after a pickable object."""
        if is_multilabel:
            key = self._new_key(None, session_id, user_id)
            paths.check_name(name, "segmentation name")
        else:
            key = self._new_key(name, session_id, user_id)
        paths.format_voxel_size(voxel_size)
        found = self.get_segmentations(key.user_id, key.session_id, is_multilabel, name, float(voxel_size))
        existing = reuse(found, exist_ok, f"segmentation {name!r} by {key.user_id!r} in session "
                                          f"{session_id!r} at voxel size {voxel_size}")
        if existing is not None:
            return existing
        seg = CopickSegmentationFSSpec(self, CopickSegmentationMeta(
            user_id=key.user_id, session_id=key.session_id, name=name, is_multilabel=is_multilabel,
            voxel_size=float(voxel_size)))
        seg.zarr()
        self.segmentations.append(seg)
        return seg

    # ------------------------------------------------------------ shared

    def _new_key(self, object_name: str | None, session_id: str, user_id: str | None) -> paths.PartsKey:
        """Check the parts of a new entity's name: a known object, a user (argument or config), a session."""
        user = user_id if user_id is not None else self.root.config.user_id
        if user is None:
            raise ValueError("no user_id: pass one or set user_id in the config")
        paths.check_name(user, "user_id")
        paths.check_name(str(session_id), "session_id")
        if object_name is not None and self.root.get_object(object_name) is None:
            raise ValueError(f"{object_name!r} is not a pickable object of this project")
        return paths.PartsKey(user, str(session_id), object_name or "")

    def refresh(self) -> None:
        self._voxel_spacings = self._picks = self._meshes = self._segmentations = None

    def _forget(self) -> None:
        discard(self.root._runs, self)


class CopickVoxelSpacingFSSpec(DirectoryEntity):
    """``ExperimentRuns/<run>/VoxelSpacing<vs:.3f>``: tomograms and their features."""

    def __init__(self, run: CopickRunFSSpec, meta: CopickVoxelSpacingMeta) -> None:
        self.run = run
        self.meta = meta
        self._tomograms: list[CopickTomogramFSSpec] | None = None

    def __repr__(self) -> str:
        return f"CopickVoxelSpacingFSSpec(voxel_size={self.voxel_size})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self.run.root

    @property
    def voxel_size(self) -> float:
        return self.meta.voxel_size

    @property
    def _relpath(self) -> str:
        return paths.voxel_spacing_path(self.run.name, self.voxel_size)

    @property
    def tomograms(self) -> list[CopickTomogramFSSpec]:
        if self._tomograms is None:
            self._tomograms = self.query_tomograms()
        return self._tomograms

    def query_tomograms(self) -> list[CopickTomogramFSSpec]:
        found = query(self.fs, self._relpath, paths.parse_tomogram, "dir")
        return [CopickTomogramFSSpec(self, CopickTomogramMeta(tomo_type=f.key), read_only=f.read_only)
                for f in found]

    def get_tomogram(self, tomo_type: str) -> CopickTomogramFSSpec | None:
        return next((t for t in self.tomograms if t.tomo_type == tomo_type), None)

    def get_tomograms(self, tomo_type: str | None = None) -> list[CopickTomogramFSSpec]:
        return [t for t in self.tomograms if tomo_type is None or t.tomo_type == tomo_type]

    def new_tomogram(self, tomo_type: str, exist_ok: bool = False) -> CopickTomogramFSSpec:
        """A tomogram store in the overlay."""
        paths.check_name(tomo_type, "tomogram type")
        existing = reuse(self.get_tomogram(tomo_type), exist_ok,
                         f"tomogram {tomo_type!r} at voxel spacing {self.voxel_size}")
        if existing is not None:
            return existing
        tomogram = CopickTomogramFSSpec(self, CopickTomogramMeta(tomo_type=tomo_type))
        tomogram.zarr()
        self.tomograms.append(tomogram)
        return tomogram

    def refresh(self) -> None:
        self._tomograms = None

    def _forget(self) -> None:
        discard(self.run._voxel_spacings, self)


def _select(items: list[T], **wanted: str | Iterable[str] | None) -> list[T]:
    """Items whose attributes match every given value (a string, or any of an iterable's)."""
    for attribute, value in wanted.items():
        if value is None:
            continue
        allowed = {value} if isinstance(value, str) else set(value)
        items = [item for item in items if getattr(item, attribute) in allowed]
    return items
