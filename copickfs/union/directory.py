"""An open union directory, listed through descriptors of its layer directories.

`UnionFileSystem.open_directory` resolves the directory once, beneath each layer's root,
and keeps a descriptor of the overlay's and of static's directory (where the layer has
descriptors); every later listing reads those descriptors, so a directory renamed or
replaced by a symlink behind the union's back cannot redirect an open handle. Which layers
show is settled at open (static's visibility through whiteouts of its ancestors); the
overlay directory's own markers (whiteouts, opaque) are read at each listing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from .layers import Layer
from .lookup import merge
from .stat import Stat

Entry = tuple[str, int, Callable[[], Stat | None], str]


class Directory:
    """``children()`` as the union's, from descriptors held since the directory was opened."""

    def __init__(self, overlay: Layer, static: Layer | None, path: str, static_shows: bool) -> None:
        self.overlay, self.static, self.path = overlay, static, path
        self._overlay_fd = overlay.open_dir(path)
        self._static_fd = static.open_dir(path) if static is not None and static_shows else None
        self._static_shows = static_shows

    def children(self, path: str | None = None) -> list[Entry]:
        """The merged listing: (name, type bits, stat call, layer name). ``path``, the
        directory's current union path, lets a listing see an overlay directory made
        since the open (the first write into a static directory copies it up)."""
        if self._overlay_fd is None and path is not None:
            self._overlay_fd = self.overlay.open_dir(path)
        overlay_names = self._names(self.overlay, self._overlay_fd)
        static_names = None
        if self.static is not None and self._static_shows:
            static_names = partial(self._names, self.static, self._static_fd)
        listing = merge(self.overlay, overlay_names, self.static, static_names)
        return [(name, child.kind, self._stat(child.layer, name), "overlay" if child.layer is self.overlay
                 else "static") for name, child in listing.items()]

    def _names(self, layer: Layer, fd: int | None) -> dict[str, int] | None:
        if fd is not None:
            return layer.listdir_at(fd)
        if layer.is_local:
            return None  # a local layer without this directory
        return layer.listdir(self.path)  # no descriptors (object stores): by path, no symlinks there

    def _stat(self, layer: Layer, name: str) -> Callable[[], Stat | None]:
        fd = self._overlay_fd if layer is self.overlay else self._static_fd
        if fd is not None:
            return partial(layer.stat_at, fd, name)
        return partial(layer.stat, f"{self.path}/{name}" if self.path else name)

    def close(self) -> None:
        for fd in (self._overlay_fd, self._static_fd):
            if fd is not None:
                os.close(fd)
        self._overlay_fd = self._static_fd = None
