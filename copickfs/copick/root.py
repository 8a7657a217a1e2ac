"""`CopickRootFSSpec`: a copick project over the union of its overlay and static roots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from ..config import load_config
from ..union import UnionFileSystem
from . import objects, paths
from .base import reuse
from .models import CopickConfig, CopickRunMeta, as_config
from .query import query
from .run import CopickRunFSSpec
from .volumes import CopickObjectFSSpec


class CopickRootFSSpec:
    """The project: runs and pickable objects, read through the union, written to the overlay."""

    def __init__(self, config: CopickConfig | dict[str, Any]) -> None:
        self.config = as_config(config)
        self.fs = UnionFileSystem(self.config.overlay_root, self.config.static_root,
                                  overlay_options=self.config.overlay_fs_args,
                                  static_options=self.config.static_fs_args)
        self.fs_overlay: AbstractFileSystem = _as_configured(self.fs.overlay.fs, self.config.overlay_fs_args)
        self.root_overlay: str = self.fs.overlay.root
        static = self.fs.static if self.fs.static is not None else self.fs.overlay
        self.fs_static: AbstractFileSystem = static.fs
        self.root_static: str = static.root
        self._runs: list[CopickRunFSSpec] | None = None
        self._objects: list[CopickObjectFSSpec] | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> CopickRootFSSpec:
        """The project of a config file; `ConfigError` names a bad field."""
        return cls(load_config(path))

    def __repr__(self) -> str:
        return f"CopickRootFSSpec(overlay={self.root_overlay!r}, static={self.root_static!r})"

    @property
    def static_is_overlay(self) -> bool:
        return self.fs.static is None

    @property
    def user_id(self) -> str | None:
        return self.config.user_id

    @user_id.setter
    def user_id(self, value: str) -> None:
        self.config.user_id = value

    @property
    def session_id(self) -> str | None:
        return self.config.session_id

    @session_id.setter
    def session_id(self, value: str) -> None:
        self.config.session_id = value

    # ------------------------------------------------------------ runs

    @property
    def runs(self) -> list[CopickRunFSSpec]:
        if self._runs is None:
            self._runs = self.query()
        return self._runs

    def query(self) -> list[CopickRunFSSpec]:
        found = query(self.fs, paths.RUNS, paths.parse_run, "dir")
        return [CopickRunFSSpec(self, CopickRunMeta(name=f.key)) for f in found]

    def get_run(self, name: str) -> CopickRunFSSpec | None:
        """The run called ``name``; without listing every run when none were listed yet."""
        if self._runs is not None:
            return next((run for run in self._runs if run.name == name), None)
        try:
            paths.check_run_name(name)
        except ValueError:
            return None
        run = CopickRunFSSpec(self, CopickRunMeta(name=name))
        return run if run.ensure(create=False) else None

    def new_run(self, name: str, exist_ok: bool = False) -> CopickRunFSSpec:
        """A run directory in the overlay, added to ``runs`` (listed first, as copick: the same object comes back)."""
        paths.check_run_name(name)
        existing = reuse(self.get_run(name) if name in [r.name for r in self.runs] else None, exist_ok,
                         f"run {name!r}")
        if existing is not None:
            return existing
        run = CopickRunFSSpec(self, CopickRunMeta(name=name))
        run.ensure(create=True)
        self.runs.append(run)
        return run

    def delete_run(self, name: str) -> None:
        run = self.get_run(name)
        if run is not None:
            run.delete()

    # ------------------------------------------------------------ objects

    @property
    def pickable_objects(self) -> list[CopickObjectFSSpec]:
        if self._objects is None:
            self._objects = [CopickObjectFSSpec(self, meta, read_only=self.fs.layer_of(paths.object_path(meta.name))
                                                == "static") for meta in self.config.pickable_objects]
        return self._objects

    def get_object(self, name: str) -> CopickObjectFSSpec | None:
        return next((obj for obj in self.pickable_objects if obj.name == name), None)

    def new_object(self, name: str, is_particle: bool, label: int | None = None,
                   color: tuple[int, int, int, int] | None = None, emdb_id: str | None = None,
                   pdb_id: str | None = None, identifier: str | None = None, map_threshold: float | None = None,
                   radius: float | None = None, metadata: dict[str, Any] | None = None,
                   exist_ok: bool = False) -> CopickObjectFSSpec:
        """Add a pickable object to the config (in memory; `save_config` writes it), or update one with ``exist_ok``."""
        return objects.new_object(self, name, is_particle, exist_ok, label=label, color=color, emdb_id=emdb_id,
                                  pdb_id=pdb_id, identifier=identifier, map_threshold=map_threshold, radius=radius,
                                  metadata=metadata)

    def save_config(self, config_path: str | os.PathLike[str]) -> None:
        """Write the config as JSON (copick's layout, ``indent=4``)."""
        Path(config_path).write_text(json.dumps(self.config.model_dump(mode="json", exclude_none=True), indent=4))

    def refresh(self) -> None:
        """List the runs again now and forget the objects (copick's refresh)."""
        self._runs = self.query()
        self._objects = None


def _as_configured(fs: AbstractFileSystem, options: dict[str, Any] | None) -> AbstractFileSystem:
    """A local layer's filesystem with the config's options (auto_mkdir), as copick hands it out."""
    if isinstance(fs, LocalFileSystem) and options:
        return LocalFileSystem(**{k: v for k, v in options.items() if k == "auto_mkdir"})
    return fs
