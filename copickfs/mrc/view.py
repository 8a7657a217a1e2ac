"""`MrcView`: virtual, read-only MRC files beside copick's OME-Zarr volumes.

A `View` over the union (or over the precomputed view): in a directory where copick keeps
volumes (`names.is_volume_place`), ``<stem>.zarr`` with an OME-NGFF multiscale group also
shows as ``<stem>.mrc`` (level 0) and ``<stem>.bin<2**k>.mrc`` (other chosen levels), an
MRC2014 file assembled from the zarr chunks on demand (`volume.py`). Real files win: a
stored file of the same name hides the virtual one. Every other path goes straight to the
view below after a string check of its parent.

The virtual file is mode 0444 (readable as the store's directory is), owned as the store,
stamped with the newest mtime of the store's metadata, and of inode 0 (made up). It
cannot be written, truncated, renamed, linked or removed (EACCES/EPERM); renaming or
creating a real file onto its name works, and the real file then wins.

Its entry is reported as an overlay entry (short kernel cache times: it disappears within
``entry_timeout`` once its store is removed), while `layer_of` gives the store's layer,
so the kernel keeps the pages of a static volume's file across opens and drops those of
an overlay volume's at each open.
"""

from __future__ import annotations

import errno
import os
import stat as S
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from ..union.openfile import OpenFile
from ..union.stat import Stat
from ..view import Child, View
from . import names
from .chunks import ChunkCache
from .metadata import Catalog, Level
from .volume import MrcFile, VolumeReader

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
DEFAULT_CACHE_BYTES = 1 << 30


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass(frozen=True, slots=True)
class Virtual:
    """A virtual MRC file found: its level and the store's attributes and layer."""

    level: Level
    store: Stat
    layer: str


class MrcView(View):
    """The view below, plus virtual MRC files beside copick's OME-Zarr volumes."""

    def __init__(self, inner: Any, levels: tuple[int, ...] = (0,), cache_bytes: int = DEFAULT_CACHE_BYTES,
                 workers: int | None = None) -> None:
        super().__init__(inner)
        if not levels or min(levels) < 0:
            raise ValueError(f"levels must be non-negative level numbers: {levels!r}")
        self.levels = tuple(sorted(set(levels)))
        self.catalog = Catalog(self.union)
        self.chunks = ChunkCache(self.union, cache_bytes, workers or min(4, os.cpu_count() or 1))

    # ------------------------------------------------------------ finding virtual files

    def find(self, path: str) -> Virtual | None:
        """The virtual file at union path ``path`` (ignoring real files), or None."""
        directory, _, name = path.rpartition("/")
        if not name.endswith(names.MRC) or not names.is_volume_place(directory):
            return None
        for zarr_name, index in names.candidates(name):
            if index in self.levels:
                found = self._virtual(f"{directory}/{zarr_name}", index)
                if found is not None:
                    return found
        return None

    def _virtual(self, zarr: str, index: int) -> Virtual | None:
        hit = self.union.lookup(zarr)
        if hit is None or not hit.is_dir:
            return None
        level = self.catalog.level(zarr, index)
        if level is None:
            return None
        return Virtual(level, hit.stat, "overlay" if hit.layer is self.union.overlay else "static")

    def _virtual_only(self, path: str) -> Virtual | None:
        """The virtual file at ``path`` when no real entry holds the name."""
        path = self.union._strip_protocol(path)
        if not path.endswith(names.MRC) or self.union.lookup(path) is not None:
            return None
        return self.find(path)

    def _stat(self, found: Virtual) -> Stat:
        level, store = found.level, found.store
        mtime = max([store.mtime_ns, *(ident[5] for ident in level.identity[2:] if ident)])
        return Stat(mode=S.S_IFREG | (S.S_IMODE(store.mode) & 0o444), size=level.size, mtime_ns=mtime,
                    atime_ns=mtime, ctime_ns=mtime, uid=store.uid, gid=store.gid, nlink=1)

    # ------------------------------------------------------------ lookups and listings

    def stat_entry(self, path: str) -> tuple[Stat, str]:
        try:
            return self.inner.stat_entry(path)
        except FileNotFoundError:
            found = self.find(self.union._strip_protocol(path)) if path.endswith(names.MRC) else None
            if found is None:
                raise
        return self._stat(found), "overlay"  # short cache times: it goes when its store goes

    def layer_of(self, path: str) -> str | None:
        layer = self.inner.layer_of(path)
        if layer is not None or not path.endswith(names.MRC):
            return layer
        found = self.find(self.union._strip_protocol(path))
        return None if found is None else found.layer

    def listdir_types(self, path: str) -> dict[str, int]:
        listing = self.inner.listdir_types(path)
        path = self.union._strip_protocol(path)
        if names.is_volume_place(path):
            for name in self._added(path, listing):
                listing[name] = S.S_IFREG
        return listing

    def children(self, path: str) -> list[Child]:
        listing = self.inner.children(path)
        path = self.union._strip_protocol(path)
        if names.is_volume_place(path):
            listing = listing + self._virtual_children(path, listing)
        return listing

    def open_directory(self, path: str) -> Any:
        directory = self.inner.open_directory(path)
        path = self.union._strip_protocol(path)
        return _WithVirtualFiles(self, directory) if names.is_volume_place(path) else directory

    def _virtual_children(self, path: str, listing: list[Child]) -> list[Child]:
        kinds = {name: kind for name, kind, _, _ in listing}
        return [(name, S.S_IFREG, stat, "overlay") for name, stat in self._added(path, kinds).items()]

    def _added(self, path: str, listing: dict[str, int]) -> dict[str, Callable[[], Stat | None]]:
        """Virtual files of directory ``path`` whose names no real entry of ``listing`` holds."""
        out: dict[str, Callable[[], Stat | None]] = {}
        for name, kind in sorted(listing.items()):
            zarr_name = names.zarr_name(name)
            if zarr_name is None or kind not in (S.S_IFDIR, 0):
                continue
            zarr = f"{path}/{zarr_name}" if path else zarr_name
            for index in self.levels:
                mrc = names.mrc_name(zarr_name, index)
                if mrc in listing or mrc in out:
                    continue
                if index and self._taken_by_level_0(path, mrc, listing):
                    continue  # a.bin2.mrc is level 0 of a.bin2.zarr, not level 1 of a.zarr
                found = self._virtual(zarr, index)
                if found is not None:
                    out[mrc] = _stat_call(self._stat(found))
        return out

    def _taken_by_level_0(self, path: str, mrc: str, listing: dict[str, int]) -> bool:
        own = mrc[: -len(names.MRC)] + ".zarr"
        if 0 not in self.levels or own not in listing:
            return False
        return self._virtual(f"{path}/{own}" if path else own, 0) is not None

    def cacheable(self, path: str) -> bool:
        return self.inner.cacheable(path)

    # ------------------------------------------------------------ reading

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        try:
            return self.inner.open_file(path, flags)
        except FileNotFoundError:
            found = self._virtual_only(path)
            if found is None:
                raise
        if flags & _WRITE_FLAGS:
            raise _error(errno.EACCES, path)  # a view: write a real file of this name instead
        return None  # read through `open`, from memory

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        try:
            return self.inner.open(path, mode, **kwargs)
        except FileNotFoundError:
            found = self._virtual_only(path)
            if found is None:
                raise
        if mode not in ("rb", "r"):
            raise _error(errno.EACCES, path)
        return MrcFile(VolumeReader(found.level, self.chunks, static=found.layer == "static"))

    # ------------------------------------------------------------ changes: the virtual file refuses them

    def _refusing(self, path: str, code: int, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except FileNotFoundError:
            if self._virtual_only(path) is None:
                raise
        raise _error(code, path)

    def truncate(self, path: str, size: int, **kwargs: Any) -> None:
        self._refusing(path, errno.EACCES, self.inner.truncate, path, size, **kwargs)

    def chmod(self, path: str, mode: int) -> None:
        self._refusing(path, errno.EPERM, self.inner.chmod, path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._refusing(path, errno.EPERM, self.inner.chown, path, uid, gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._refusing(path, errno.EPERM, self.inner.utime, path, atime_ns, mtime_ns)

    def unlink(self, path: str) -> None:
        self._refusing(path, errno.EPERM, self.inner.unlink, path)

    def link(self, src: str, dst: str, **kwargs: Any) -> None:
        self._refusing(src, errno.EPERM, self.inner.link, src, dst, **kwargs)

    def posix_rename(self, src: str, dst: str, replace: bool = True) -> None:
        self._refusing(src, errno.EPERM, self.inner.posix_rename, src, dst, replace=replace)

    def close(self) -> None:
        self.chunks.close()


def _stat_call(st: Stat) -> Callable[[], Stat | None]:
    return lambda: st


@dataclass
class _WithVirtualFiles:
    """An open directory of the view below, its listings completed with the virtual files."""

    view: MrcView
    directory: Any

    def children(self, path: str | None = None) -> list[Child]:
        where = self.view.union._strip_protocol(path if path is not None else self.directory.path)
        listing = self.directory.children(where)
        return listing + self.view._virtual_children(where, listing)

    def close(self) -> None:
        self.directory.close()


__all__ = ["DEFAULT_CACHE_BYTES", "MrcView", "Virtual"]
