"""`View`: the method surface the mount calls, passed through to the object below.

A view (chunk-name aliases, virtual MRC files, ...) sits between the mount and the union
and changes what a few paths mean. Subclasses override the methods whose meaning they
change and inherit the rest from here, one explicit delegating method per call (as
fsspec's ``dirfs``), so the surface is easy to read and grep and views stack:
``MrcView(PrecomputedView(union))``.

``union`` is always the `UnionFileSystem` at the bottom: a view that reads the data it
derives from (chunk files, metadata documents) reads them there, below every view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from .union import UnionFileSystem
from .union.openfile import OpenFile
from .union.stat import Stat

Child = tuple[str, int, "Callable[[], Stat | None] | Stat", str]


def bottom(source: Any) -> UnionFileSystem:
    """The union below ``source`` (a union, or a view over one)."""
    while not isinstance(source, UnionFileSystem):
        source = source.union
    return source


class View:
    """Every call goes to ``inner`` unchanged; subclasses override what they change."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.union = bottom(inner)

    # ------------------------------------------------------------ lookups and listings

    def stat_entry(self, path: str) -> tuple[Stat, str]:
        return self.inner.stat_entry(path)

    def layer_of(self, path: str) -> str | None:
        return self.inner.layer_of(path)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def statfs(self) -> dict[str, int]:
        return self.inner.statfs()

    def listdir_types(self, path: str) -> dict[str, int]:
        return self.inner.listdir_types(path)

    def children(self, path: str) -> list[Child]:
        return self.inner.children(path)

    def open_directory(self, path: str) -> Any:
        return self.inner.open_directory(path)

    def cacheable(self, path: str) -> bool:
        return self.inner.cacheable(path)

    def aliases(self, path: str) -> list[str]:
        """Other names of the file at ``path`` whose kernel caches a change must drop
        (precomputed chunk names); none where the views below have no aliases."""
        below = getattr(self.inner, "aliases", None)
        return below(path) if below is not None else []

    # ------------------------------------------------------------ files

    def open_fd(self, path: str, flags: int) -> int | None:
        file = self.open_file(path, flags)
        return None if file is None else file.fd

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        return self.inner.open_file(path, flags)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        return self.inner.open(path, mode, **kwargs)

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        return self.inner.create(path, mode, flags)

    def truncate(self, path: str, size: int, **kwargs: Any) -> None:
        self.inner.truncate(path, size, **kwargs)

    def chmod(self, path: str, mode: int) -> None:
        self.inner.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.inner.chown(path, uid, gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self.inner.utime(path, atime_ns, mtime_ns)

    # ------------------------------------------------------------ names

    def unlink(self, path: str) -> None:
        self.inner.unlink(path)

    def mkdir(self, path: str, create_parents: bool = True, mode: int = 0o777, **kwargs: Any) -> None:
        self.inner.mkdir(path, create_parents=create_parents, mode=mode, **kwargs)

    def rmdir(self, path: str) -> None:
        self.inner.rmdir(path)

    def symlink(self, target: str, path: str, **kwargs: Any) -> None:
        self.inner.symlink(target, path, **kwargs)

    def link(self, src: str, dst: str, **kwargs: Any) -> None:
        self.inner.link(src, dst, **kwargs)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        self.inner.mknod(path, mode, device)

    def posix_rename(self, src: str, dst: str, replace: bool = True) -> None:
        self.inner.posix_rename(src, dst, replace=replace)


__all__ = ["Child", "View", "bottom"]
