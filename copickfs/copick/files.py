"""File entities: picks (JSON) and meshes (binary glTF)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from . import paths, relion
from .base import Entity, discard
from .models import CopickLocation, CopickMeshMeta, CopickPicksFile, CopickPoint

if TYPE_CHECKING:
    from .root import CopickRootFSSpec
    from .run import CopickRunFSSpec


class _RunFile(Entity):
    """A file in one of a run's directories, named ``<user>_<session>_<object><suffix>``."""

    _directory = ""
    _suffix = ""
    run: CopickRunFSSpec

    @property
    def root(self) -> CopickRootFSSpec:
        return self.run.root

    @property
    def key(self) -> paths.PartsKey:
        return paths.PartsKey(self.user_id, self.session_id, self.pickable_object_name)

    @property
    def _relpath(self) -> str:
        return f"{paths.run_path(self.run.name)}/{self._directory}/{paths.parts_name(self.key, self._suffix)}"

    @property
    def directory(self) -> str:
        return f"{paths.run_path(self.run.name)}/{self._directory}/"

    pickable_object_name = property(lambda self: self.meta.pickable_object_name)
    user_id = property(lambda self: self.meta.user_id)
    session_id = property(lambda self: self.meta.session_id)
    from_tool = property(lambda self: self.session_id == "0")
    from_user = property(lambda self: self.session_id != "0")

    @property
    def color(self) -> tuple[int, int, int, int] | None:
        obj = self.root.get_object(self.pickable_object_name)
        if obj is None:
            raise ValueError(f"{self.pickable_object_name} is not a pickable object of this project")
        return obj.color

    def store(self) -> None:
        """Write to the overlay; a static entity raises PermissionError."""
        self._check_writable("store")
        self.fs.pipe_file(self._relpath, self._encode())

    def _encode(self) -> bytes:
        raise NotImplementedError

    def _read(self) -> bytes:
        return self.fs.cat_file(self._relpath)


class CopickPicksFSSpec(_RunFile):
    """``Picks/<user>_<session>_<object>.json``: points are read on first use."""

    _directory = paths.PICKS
    _suffix = paths.JSON

    def __init__(self, run: CopickRunFSSpec, file: CopickPicksFile, read_only: bool = False) -> None:
        self.run = run
        self.meta = file
        self.read_only = read_only
        self._loaded = False

    def __repr__(self) -> str:
        return (f"CopickPicksFSSpec(pickable_object_name={self.pickable_object_name!r}, user_id={self.user_id!r}, "
                f"session_id={self.session_id!r}, read_only={self.read_only})")

    def load(self) -> CopickPicksFile:
        """Read the file; `PicksFileError` names it when it is not a valid picks file."""
        self.meta = CopickPicksFile.from_json(self._read(), self._relpath)
        self._loaded = True
        return self.meta

    refresh = load

    @property
    def points(self) -> list[CopickPoint]:
        if not self._loaded and not self.meta.points:
            self.load()
        return self.meta.points or []

    @points.setter
    def points(self, value: list[CopickPoint]) -> None:
        self.meta.points = value
        self._loaded = True

    @property
    def trust_orientation(self) -> bool | None:
        return self.meta.trust_orientation

    def _encode(self) -> bytes:
        return self.meta.to_json().encode()

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3: x, y, z in angstrom) and transforms (N, 4, 4)."""
        points = self.points
        positions = np.array([[p.location.x, p.location.y, p.location.z] for p in points], dtype=float)
        transforms = np.array([p.transformation for p in points], dtype=float)
        return positions.reshape(len(points), 3), transforms.reshape(len(points), 4, 4)

    def instance_ids(self) -> np.ndarray:
        """Each point's instance ID (0 where none is set)."""
        return np.array([0 if p.instance_id is None else p.instance_id for p in self.points], dtype=np.int64)

    def scores(self) -> np.ndarray:
        """Each point's score (1.0 where none is set)."""
        return np.array([1.0 if p.score is None else p.score for p in self.points], dtype=float)

    def full_positions(self) -> np.ndarray:
        """Particle centres: each location plus its transform's translation (shifts from averaging)."""
        positions, transforms = self.numpy()
        return positions + transforms[:, :3, 3] if len(positions) else positions

    def from_numpy(self, positions: np.ndarray, transforms: np.ndarray | None = None,
                   instance_ids: np.ndarray | None = None, scores: np.ndarray | None = None) -> None:
        """Replace the points and store them; copick's checks and messages."""
        positions = np.asarray(positions, dtype=float).reshape(-1, 3)
        n = len(positions)
        if transforms is not None and n != np.shape(transforms)[0]:
            raise ValueError("Number of positions and transforms must be the same.")
        ids = _checked_instance_ids(instance_ids, n)
        if scores is not None:
            scores = np.asarray(scores, dtype=float)
            if scores.shape != (n,):
                raise ValueError(f"scores must have shape ({n},), got {scores.shape}.")
            if not np.all(np.isfinite(scores)):
                raise ValueError("scores must be finite.")
        points = []
        for i, (x, y, z) in enumerate(positions):
            point = CopickPoint(location=CopickLocation(x=x, y=y, z=z))
            if transforms is not None:
                point.transformation = np.asarray(transforms[i])
            if ids is not None:
                point.instance_id = int(ids[i])
            if scores is not None:
                point.score = float(scores[i])
            points.append(point)
        self.points = points
        self.store()

    def df(self, format: str = "relion", **kwargs: Any) -> Any:
        """The points as a pandas DataFrame of RELION columns (needs pandas and scipy)."""
        if format != "relion":
            raise ValueError(f"Format {format} is not supported.")
        return relion.picks_to_df(self, **kwargs)

    def from_df(self, df: Any, format: str = "relion", **kwargs: Any) -> None:
        """Set and store the points from a DataFrame of RELION columns."""
        if format != "relion":
            raise ValueError(f"Format {format} is not supported.")
        relion.df_to_picks(self, df, **kwargs)

    def _forget(self) -> None:
        discard(self.run._picks, self)


class CopickMeshFSSpec(_RunFile):
    """``Meshes/<user>_<session>_<object>.glb``: a trimesh object when trimesh is installed, else bytes."""

    _directory = paths.MESHES
    _suffix = paths.GLB

    def __init__(self, run: CopickRunFSSpec, meta: CopickMeshMeta, mesh: Any = None, read_only: bool = False) -> None:
        self.run = run
        self.meta = meta
        self._mesh = mesh
        self.read_only = read_only

    def __repr__(self) -> str:
        return (f"CopickMeshFSSpec(pickable_object_name={self.pickable_object_name!r}, user_id={self.user_id!r}, "
                f"session_id={self.session_id!r}, read_only={self.read_only})")

    def load(self) -> Any:
        """The mesh: a trimesh Scene when trimesh is importable, else the .glb bytes."""
        data = self._read()
        try:
            import trimesh
        except ImportError:
            self._mesh = data
        else:
            self._mesh = trimesh.load(io.BytesIO(data), file_type="glb")
        return self._mesh

    refresh = load

    @property
    def mesh(self) -> Any:
        if self._mesh is None:
            self.load()
        return self._mesh

    @mesh.setter
    def mesh(self, value: Any) -> None:
        self._mesh = value

    def glb(self) -> bytes:
        """The stored .glb file's bytes."""
        return self._read()

    def _encode(self) -> bytes:
        if self._mesh is None:  # never loaded: what is stored stays, a new mesh is an empty scene (as copick)
            return self._read() if self.fs.exists(self._relpath) else empty_glb()
        if isinstance(self._mesh, (bytes, bytearray, memoryview)):
            return bytes(self._mesh)
        return self._mesh.export(file_type="glb")

    def _forget(self) -> None:
        discard(self.run._meshes, self)


def _checked_instance_ids(values: np.ndarray | None, n: int) -> np.ndarray | None:
    """Instance IDs as int64: ``n`` of them, integral and non-negative."""
    if values is None:
        return None
    ids = np.asarray(values)
    if ids.shape != (n,):
        raise ValueError(f"instance_ids must have shape ({n},), got {ids.shape}.")
    as_float = ids.astype(float)
    if ids.size and (not np.all(np.isfinite(as_float)) or not np.all(np.mod(as_float, 1) == 0)):
        raise ValueError("instance_ids must be integers.")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError("instance_ids must be >= 0.")
    return ids


def empty_glb() -> bytes:
    """A binary glTF of an empty scene: what copick stores for a new mesh before it has geometry."""
    import json
    import struct

    text = json.dumps({"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}]}).encode()
    text += b" " * (-len(text) % 4)
    return struct.pack("<III", 0x46546C67, 2, 12 + 8 + len(text)) + struct.pack("<II", len(text), 0x4E4F534A) + text
