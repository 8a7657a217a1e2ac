"""The one listing every entity type uses: list a union directory, parse names, merge by key.

The union already lists each name once with the layer it wins in (overlay over static),
so "query each layer, merge by key" is one merged listing here. A name that is of the
right kind but does not parse is skipped with a warning naming its path, so one odd
entry never hides the rest of a listing.
"""

from __future__ import annotations

import logging
import stat as S
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from ..union import UnionFileSystem
from .paths import MalformedName, is_hidden

K = TypeVar("K")
Kind = Literal["dir", "file"]
log = logging.getLogger("copickfs.copick")


@dataclass(frozen=True)
class Found(Generic[K]):
    """One entity found in a listing: its key, union path and winning layer."""

    key: K
    path: str
    layer: str

    @property
    def read_only(self) -> bool:
        return self.layer == "static"


def query(union: UnionFileSystem, directory: str, parse: Callable[[str], K | None], kind: Kind) -> list[Found[K]]:
    """Entities in ``directory`` (missing: none), sorted by name; overlay wins a shared key."""
    try:
        layers = union.names(directory)
        types = union.listdir_types(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: dict[K, Found[K]] = {}
    for name in sorted(layers):
        if is_hidden(name) or not _is_kind(types.get(name, 0), kind):
            continue
        path = f"{directory}/{name}"
        try:
            key = parse(name)
        except MalformedName as e:
            log.warning("skipping %s: %s", path, e)
            continue
        if key is None:
            continue
        entry = Found(key, path, layers[name])
        if key not in found or (found[key].layer == "static" and entry.layer == "overlay"):
            found[key] = entry
    return list(found.values())


def _is_kind(mode: int, kind: Kind) -> bool:
    if S.S_ISLNK(mode):
        return True  # a link is taken at its word, as copick takes linked runs
    return S.S_ISDIR(mode) if kind == "dir" else S.S_ISREG(mode) or mode == 0
