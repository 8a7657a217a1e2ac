"""Directory entities: runs and voxel spacings, and the children listed in them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from . import paths
from .base import Entity, discard, reuse
from .filaments import CopickFilamentsFSSpec
from .files import CopickMeshFSSpec, CopickPicksFSSpec
from .models import (CopickFilamentsFile, CopickMeshMeta, CopickPicksFile, CopickRunMeta, CopickSegmentationMeta,
                     CopickTomogramMeta, CopickVoxelSpacingMeta)
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
        self._filaments: list[CopickFilamentsFSSpec] | None = None

    def __repr__(self) -> str:
        return f"CopickRunFSSpec(name={self.name!r})"

    @property
    def root(self) -> CopickRootFSSpec:
        return self._root

    @property
    def name(self) -> str:
        return self.meta.name

    @name.setter
    def name(self, value: str) -> None:
        """As copick: renames the object only; its paths follow, nothing moves on storage."""
        self.meta.name = value

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
        """The voxel spacing; before the first listing, looked up alone (the listing is not made), as copick."""
        if self._voxel_spacings is None:
            try:
                paths.format_voxel_size(voxel_size)
            except ValueError:
                return None
            vs = CopickVoxelSpacingFSSpec(self, CopickVoxelSpacingMeta(voxel_size=float(voxel_size)))
            return vs if vs.ensure(create=False) else None
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

    def delete_picks(self, object_name: str | None = None, user_id: str | None = None,
                     session_id: str | None = None) -> None:
        for picks in list(self.get_picks(object_name, user_id, session_id)):
            picks.delete()

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
        created.store()  # as copick: the file exists at once (an empty scene until geometry is set)
        self.meshes.append(created)
        return created

    def user_meshes(self) -> list[CopickMeshFSSpec]:
        user = self.root.config.user_id
        return self.get_meshes(user_id=user) if user is not None else [m for m in self.meshes if m.from_user]

    def tool_meshes(self) -> list[CopickMeshFSSpec]:
        return [m for m in self.meshes if m.from_tool]

    def delete_meshes(self, object_name: str | None = None, user_id: str | None = None,
                      session_id: str | None = None) -> None:
        for mesh in list(self.get_meshes(object_name, user_id, session_id)):
            mesh.delete()

    # ------------------------------------------------------------ filaments

    @property
    def filaments(self) -> list[CopickFilamentsFSSpec]:
        if self._filaments is None:
            self._filaments = self.query_filaments()
        return self._filaments

    def query_filaments(self) -> list[CopickFilamentsFSSpec]:
        found = query(self.fs, self._sub(paths.FILAMENTS), paths.parse_filaments, "file")
        return [CopickFilamentsFSSpec(self, CopickFilamentsFile(
            pickable_object_name=f.key.object_name, user_id=f.key.user_id, session_id=f.key.session_id,
            run_name=self.name), read_only=f.read_only) for f in found]

    def get_filaments(self, object_name: str | Iterable[str] | None = None,
                      user_id: str | Iterable[str] | None = None,
                      session_id: str | Iterable[str] | None = None) -> list[CopickFilamentsFSSpec]:
        return _select(self.filaments, pickable_object_name=object_name, user_id=user_id, session_id=session_id)

    def new_filaments(self, object_name: str, session_id: str, user_id: str | None = None,
                      exist_ok: bool = False) -> CopickFilamentsFSSpec:
        """Empty filaments of a pickable object, stored at once in the overlay."""
        key = self._new_key(object_name, session_id, user_id)
        existing = reuse(self.get_filaments(object_name, key.user_id, key.session_id), exist_ok,
                         f"filaments of {object_name!r} by {key.user_id!r} in session {session_id!r}")
        if existing is not None:
            return existing
        created = CopickFilamentsFSSpec(self, CopickFilamentsFile(
            pickable_object_name=object_name, user_id=key.user_id, session_id=key.session_id, run_name=self.name))
        created._loaded = True
        created.store()
        self.filaments.append(created)
        return created

    def delete_filaments(self, object_name: str | None = None, user_id: str | None = None,
                         session_id: str | None = None) -> None:
        for filaments in list(self.get_filaments(object_name, user_id, session_id)):
            filaments.delete()

    # ------------------------------------------------------------ segmentations

    @property
    def segmentations(self) -> list[CopickSegmentationFSSpec]:
        if self._segmentations is None:
            self._segmentations = self.query_segmentations()
        return self._segmentations

    def query_segmentations(self) -> list[CopickSegmentationFSSpec]:
        """Every type: binary and multilabel first, then instance, then panoptic (copick's order)."""
        segmentations = []
        for kind in ("binary", "instance", "panoptic"):
            found = query(self.fs, self._sub(paths.SEGMENTATION_DIRECTORIES[kind]), paths.segmentation_parser(kind),
                          "dir")
            segmentations += [CopickSegmentationFSSpec(self, CopickSegmentationMeta(**f.key._asdict()),
                                                       read_only=f.read_only) for f in found]
        return segmentations

    def get_segmentations(self, user_id: str | Iterable[str] | None = None,
                          session_id: str | Iterable[str] | None = None, is_multilabel: bool | None = None,
                          name: str | Iterable[str] | None = None,
                          voxel_size: float | Iterable[float] | None = None, *, is_instance: bool | None = False,
                          is_panoptic: bool | None = False) -> list[CopickSegmentationFSSpec]:
        """Without a type, binary and multilabel ones (as copick); ``is_instance=None, is_panoptic=None``: any type."""
        sizes = [voxel_size] if isinstance(voxel_size, (int, float)) else voxel_size
        found = _select(self.segmentations, user_id=user_id, session_id=session_id, name=name)
        for flag, wanted in (("is_multilabel", is_multilabel), ("is_instance", is_instance),
                             ("is_panoptic", is_panoptic)):
            if wanted is not None:
                found = [s for s in found if getattr(s, flag) == wanted]
        if sizes is not None:
            found = [s for s in found if s.voxel_size in [float(v) for v in sizes]]
        return found

    def new_segmentation(self, voxel_size: float, name: str, session_id: str, is_multilabel: bool = False,
                         user_id: str | None = None, exist_ok: bool = False, *, is_instance: bool = False,
                         is_panoptic: bool = False) -> CopickSegmentationFSSpec:
        """A segmentation store in the overlay; binary and instance ones are named after a pickable object."""
        kind = paths.segmentation_type(is_multilabel, is_instance, is_panoptic)
        if kind in ("binary", "instance") and self.root.get_object(name) is None:
            raise ValueError(f"Object name {name} not found in pickable objects ({kind} segmentations are named "
                             "after one).")
        key = self._new_key(None, session_id, user_id)
        paths.check_name(name, "segmentation name")
        paths.format_voxel_size(voxel_size)
        found = self.get_segmentations(key.user_id, key.session_id, is_multilabel, name, float(voxel_size),
                                       is_instance=is_instance, is_panoptic=is_panoptic)
        existing = reuse(found, exist_ok, f"A {kind} segmentation {name!r} by {key.user_id!r} in session "
                                          f"{session_id!r} at voxel size {voxel_size}")
        if existing is not None:
            return existing
        seg = CopickSegmentationFSSpec(self, CopickSegmentationMeta(
            user_id=key.user_id, session_id=key.session_id, name=name, is_multilabel=is_multilabel,
            is_instance=is_instance, is_panoptic=is_panoptic, voxel_size=float(voxel_size)))
        seg.zarr()
        self.segmentations.append(seg)
        return seg

    def user_segmentations(self) -> list[CopickSegmentationFSSpec]:
        user = self.root.config.user_id
        if user is None:
            return [s for s in self.segmentations if s.from_user]
        return self.get_segmentations(user_id=user, is_instance=None, is_panoptic=None)

    def tool_segmentations(self) -> list[CopickSegmentationFSSpec]:
        return [s for s in self.segmentations if s.from_tool]

    def delete_segmentations(self, user_id: str | None = None, session_id: str | None = None,
                             is_multilabel: bool | None = None, name: str | None = None,
                             voxel_size: float | None = None, *, is_instance: bool | None = False,
                             is_panoptic: bool | None = False) -> None:
        """Like get_segmentations, without a type only binary and multilabel ones."""
        for seg in list(self.get_segmentations(user_id, session_id, is_multilabel, name, voxel_size,
                                               is_instance=is_instance, is_panoptic=is_panoptic)):
            seg.delete()

    def delete_voxel_spacings(self, voxel_size: float | None = None) -> None:
        targets = self.voxel_spacings if voxel_size is None else [self.get_voxel_spacing(voxel_size)]
        for vs in list(targets):
            if vs is not None:
                vs.delete()

    # ------------------------------------------------------------ shared

    def _new_key(self, object_name: str | None, session_id: str, user_id: str | None) -> paths.PartsKey:
        """Check the parts of a new entity's name: a known object, a user (argument or config), a session."""
        user = user_id if user_id is not None else self.root.config.user_id
        if user is None:
            raise ValueError("no user_id: pass one or set user_id in the config")
        user = paths.sanitize_name(user, "user_id")  # copick replaces invalid characters rather than refusing
        session_id = paths.sanitize_name(str(session_id), "session_id")
        if object_name is not None and self.root.get_object(object_name) is None:
            raise ValueError(f"{object_name!r} is not a pickable object of this project")
        return paths.PartsKey(user, str(session_id), object_name or "")

    def refresh_voxel_spacings(self) -> None:
        self._voxel_spacings = self.query_voxelspacings()

    def refresh_picks(self) -> None:
        self._picks = self.query_picks()

    def refresh_meshes(self) -> None:
        self._meshes = self.query_meshes()

    def refresh_segmentations(self) -> None:
        self._segmentations = self.query_segmentations()

    def refresh_filaments(self) -> None:
        self._filaments = self.query_filaments()

    def refresh(self) -> None:
        """List every child kind again now (copick re-queries; it does not merely forget)."""
        self.refresh_voxel_spacings()
        self.refresh_picks()
        self.refresh_meshes()
        self.refresh_segmentations()
        self.refresh_filaments()

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

    def refresh_tomograms(self) -> None:
        self._tomograms = self.query_tomograms()

    def refresh(self) -> None:
        self.refresh_tomograms()

    def delete_tomograms(self, tomo_type: str | None = None) -> None:
        for tomogram in list(self.get_tomograms(tomo_type)):
            tomogram.delete()

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
