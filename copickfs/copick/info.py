"""`copickfs info CONFIG`: a tree of a copick project, each entry marked static or overlay.

Listing a project with many runs on a remote root takes a while, so a progress line on
stderr appears once listing has taken more than a moment; quick listings show none.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import IO

import zarr

from .base import Entity
from .models import PicksFileError
from .omezarr import multiscales
from .root import CopickRootFSSpec
from .run import CopickRunFSSpec
from .volumes import VolumeEntity

BRANCH, LAST, PIPE, SPACE = "├── ", "└── ", "│   ", "    "


class Progress:
    """``listing runs n/total`` on a stream, shown only once ``delay`` seconds have passed."""

    def __init__(self, total: int, stream: IO[str] | None = None, delay: float = 0.5, force: bool = False) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.enabled = force or self.stream.isatty()
        self.start = time.monotonic()
        self.shown = False

    def update(self, done: int) -> None:
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        width = 30
        filled = width * done // max(self.total, 1)
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] listing runs {done}/{self.total}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def info_lines(root: CopickRootFSSpec, title: str, progress: Progress | None = None) -> Iterator[str]:
    """The project tree, one line at a time; runs are listed fully before they are shown."""
    runs = root.runs
    progress = progress if progress is not None else Progress(len(runs))
    described = []
    try:
        for index, run in enumerate(runs):
            described.append(run_tree(run))
            progress.update(index + 1)
    finally:
        progress.close()
    yield f"{title}  ({len(runs)} run{'s' if len(runs) != 1 else ''})"
    yield from _nest(described)


def run_tree(run: CopickRunFSSpec) -> list[str]:
    """A run and everything in it, as tree lines (the first is the run itself)."""
    children: list[list[str]] = []
    for vs in run.voxel_spacings:
        tomograms = []
        for tomogram in vs.tomograms:
            features = [[f"{f.feature_type} features  {_volume(f)}  {_layer(f)}"] for f in tomogram.features]
            tomograms.append([f"{tomogram.tomo_type}  {_volume(tomogram)}  {_layer(tomogram)}", *_nest(features)])
        children.append([f"VoxelSpacing{vs.voxel_size:.3f}  {_layer(vs)}", *_nest(tomograms)])
    sections = [
        ("Picks", [[f"{_who(p)}  {_points(p)}  {_layer(p)}"] for p in run.picks]),
        ("Meshes", [[f"{_who(m)}  {_layer(m)}"] for m in run.meshes]),
        ("Segmentations", [[f"{s.filename[:-len('.zarr')]}  {_volume(s)}  {_layer(s)}"] for s in run.segmentations]),
    ]
    children += [[title, *_nest(items)] for title, items in sections if items]
    return [f"{run.name}  {_layer(run)}", *_nest(children)]


def _nest(children: list[list[str]]) -> list[str]:
    lines = []
    for index, child in enumerate(children):
        last = index == len(children) - 1
        lines.append((LAST if last else BRANCH) + child[0])
        lines += [(SPACE if last else PIPE) + line for line in child[1:]]
    return lines


def _layer(entity: Entity) -> str:
    return f"[{entity.fs.layer_of(entity.path) or '?'}]"


def _who(entity: object) -> str:
    return f"{entity.user_id}_{entity.session_id}_{entity.pickable_object_name}"  # type: ignore[attr-defined]


def _points(picks: object) -> str:
    try:
        count = len(picks.points)  # type: ignore[attr-defined]
    except (PicksFileError, OSError) as e:
        return f"(unreadable: {e})"
    return f"{count} point{'s' if count != 1 else ''}"


def _volume(entity: VolumeEntity) -> str:
    """Shape and dtype of the full-resolution level, and how many levels there are."""
    try:
        group = zarr.open_group(entity.zarr(), mode="r")
        datasets = multiscales(group)[0]["datasets"] if multiscales(group) else [{"path": "0"}]
        array = group[datasets[0]["path"]]
    except (OSError, KeyError, IndexError, ValueError, TypeError) as e:
        return f"(unreadable zarr: {type(e).__name__})"
    shape = "×".join(str(n) for n in array.shape)
    return f"{array.dtype} {shape}, {len(datasets)} level{'s' if len(datasets) != 1 else ''}"
