"""Which layer a union path comes from: whiteouts, opaque directories, merged listings.

Read-only questions about the two layers; nothing here writes.
"""

from __future__ import annotations

import posixpath
import stat as S
from collections.abc import Callable
from dataclasses import dataclass

from . import markers
from .layers import Layer
from .stat import Stat


@dataclass(frozen=True, slots=True)
class Child:
    """A name in a merged listing: where it comes from and its file type bits."""

    layer: Layer
    kind: int


@dataclass(frozen=True, slots=True)
class Hit:
    """A union path found in its winning layer."""

    layer: Layer
    stat: Stat

    @property
    def is_dir(self) -> bool:
        return self.stat.is_dir


class Resolver:
    def __init__(self, overlay: Layer, static: Layer | None) -> None:
        self.overlay = overlay
        self.static = static

    def lookup(self, path: str) -> Hit | None:
        """The winning entry for ``path``: overlay first, then static unless hidden."""
        if _has_reserved_part(path):
            return None
        found = self.overlay.stat(path)
        if found is None and not path:
            found = _UNMADE_ROOT  # an overlay root made at the first write (as fsspec's auto_mkdir)
        if found is not None:
            return Hit(self.overlay, found)
        static = self.static_entry(path)
        return None if static is None else Hit(self.static, static)  # type: ignore[arg-type]

    def static_entry(self, path: str) -> Stat | None:
        """static's entry at ``path`` if the overlay lets it show (even under an overlay entry)."""
        if self.static is None or not self.static_visible(path):
            return None
        return self.static.stat(path)

    def static_visible(self, path: str) -> bool:
        """Whether no overlay ancestor hides static's ``path``.

        Walks down from the root while the overlay holds the ancestors: at each overlay
        directory an opaque marker or a whiteout of the next name hides everything below;
        an overlay non-directory on the way hides it too. Once the overlay lacks an
        ancestor, nothing deeper can hide anything.
        """
        if self.static is None:
            return False
        current = ""
        for name in path.split("/") if path else ():
            if current:  # the overlay root always exists
                here = self.overlay.stat(current)
                if here is None:
                    return True
                if not here.is_dir:
                    return False
            if self.overlay.stat(posixpath.join(current, markers.OPAQUE)) is not None:
                return False
            if self.overlay.stat(posixpath.join(current, markers.whiteout_name(name))) is not None:
                return False
            current = posixpath.join(current, name)
        return True

    def listing(self, path: str, hit: Hit) -> dict[str, Child]:
        """Names in the merged directory ``path``; the overlay's entry wins a shared name."""
        overlay = self.overlay.listdir(path) if hit.layer is self.overlay else None
        static = self.static
        shows = static is not None and (hit.layer is static or self.static_visible(path))
        return merge(self.overlay, overlay, static, (lambda: static.listdir(path)) if shows else None)


def merge(overlay: Layer, overlay_names: dict[str, int] | None, static: Layer | None,
          static_names: Callable[[], dict[str, int] | None] | None) -> dict[str, Child]:
    """One merged listing from the overlay directory's names (markers included) and, unless
    its opaque marker hides them, the static directory's (``static_names``: None where
    static shows nothing here)."""
    names: dict[str, Child] = {}
    marks: set[str] = set()
    for name, kind in (overlay_names or {}).items():
        if markers.is_reserved(name):
            marks.add(name)
        else:
            names[name] = Child(overlay, kind)
    if markers.OPAQUE in marks or static is None or static_names is None:
        return names
    whiteout_name = markers.whiteout_name
    for name, kind in (static_names() or {}).items():
        if name not in names and not markers.is_reserved(name) and (
                not marks or whiteout_name(name) not in marks):
            names[name] = Child(static, kind)
    return names


_UNMADE_ROOT = Stat(mode=S.S_IFDIR | 0o755, size=0, mtime_ns=0, atime_ns=0, ctime_ns=0, nlink=2)


def _has_reserved_part(path: str) -> bool:
    return bool(path) and any(markers.is_reserved(part) for part in path.split("/"))
