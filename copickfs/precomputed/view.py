"""`PrecomputedView`: the union as the mount sees it, with chunk-name aliases inside pyramids.

A decorator over `UnionFileSystem` offering the methods the mount calls. Inside a
pyramid (docs/SEMANTICS.md "Precomputed pyramids") every chunk answers to its four names:

- a name that is stored is served as stored;
- another name of the same compression is served from the stored file (same descriptor);
- a name of the other compression is served from memory, gunzipped or gzipped on the fly
  (its size is that of the converted bytes; corrupt gzip data fails with EIO);
- nested directories exist when the chunks are stored flat; flat names resolve when they
  are stored nested;
- a listing shows one name per chunk, in the layout chosen (``stored``, ``flat``,
  ``nested``), with the stored compression (`listings.py`);
- writing a chunk under any name stores it under that name in the overlay and removes
  its other variants (whiteouts over static); removing any name removes the chunk.

Every other path goes straight to the union after one dict lookup of its parent.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import posixpath
import re
import stat as S
from collections.abc import Callable
from functools import partial
from typing import IO, Any, Literal

from ..union import UnionFileSystem
from ..union.lookup import Hit
from ..union.openfile import OpenFile
from ..union.stat import Stat
from .content import Converter, LazyBytes
from .listings import Lister
from .names import VARIANTS, Range, Variant, join
from .pyramids import INFO, Chunk, Nested, PyramidMap, Role

Layout = Literal["stored", "flat", "nested"]
LAYOUTS = ("stored", "flat", "nested")

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
_DIRTY = re.compile(r"//|^/|/$|(^|/)\.\.?(/|$)|^union://")  # needs the union's normalisation


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    """The stored file that serves a chunk name."""

    variant: Variant
    path: str
    hit: Hit


@dataclasses.dataclass
class _ListedByPath:
    view: PrecomputedView
    path: str

    def children(self, path: str | None = None) -> list[tuple[str, int, Callable[[], Stat | None], str]]:
        return self.view.children(self.path if path is None else path)

    def close(self) -> None:
        pass


class PrecomputedView:
    """The union with chunk-name aliases inside precomputed pyramids."""

    def __init__(self, union: UnionFileSystem, layout: Layout = "stored", cache_bytes: int = 64 << 20) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}: {layout!r}")
        self.union = union
        self.layout = layout
        self.pyramids = PyramidMap(union)
        self.converter = Converter(union, cache_bytes)
        self.lister = Lister(union, self.pyramids, layout)

    def _norm(self, path: str) -> str:
        """The union's spelling of ``path``; the mount's paths are already clean (no work)."""
        if type(path) is str and _DIRTY.search(path) is None:
            return path
        return self.union._strip_protocol(path)

    # ------------------------------------------------------------ lookups

    def stat_entry(self, path: str) -> tuple[Stat, str]:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if role is None:
            return self.union.stat_entry(path)
        if isinstance(role, Nested):
            return self._nested_stat(role)
        found = self._find(role)
        if found is None:
            raise _error(errno.ENOENT, path)
        st = found.hit.stat
        if found.variant.gz != role.variant.gz:
            st = dataclasses.replace(st, size=self.converter.size(found.path, found.hit, role.variant.gz))
        if found.path != path:
            st = dataclasses.replace(st, ino=0)  # another name of the chunk, not a hard link
        return st, "overlay"  # aliases change when another name is written: short cache times

    def layer_of(self, path: str) -> str | None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if isinstance(role, Chunk):
            found = self._find(role)
            return None if found is None else self.union.layer_of(found.path)
        return self.union.layer_of(path)

    def readlink(self, path: str) -> str:
        return self.union.readlink(path)

    def statfs(self) -> dict[str, int]:
        return self.union.statfs()

    def _find(self, chunk: Chunk) -> _Found | None:
        """The stored file serving ``chunk``: its own name if stored, else the winning variant."""
        hit = self.union.lookup(chunk.path)
        if hit is not None:
            return _Found(chunk.variant, chunk.path, hit)
        for variant in VARIANTS:
            if variant == chunk.variant:
                continue
            path = chunk.path_of(variant)
            hit = self.union.lookup(path)
            if hit is not None and hit.stat.is_file:
                return _Found(variant, path, hit)
        return None

    def aliases(self, path: str) -> list[str]:
        """The other names of the chunk ``path`` names (none outside pyramids). When the
        chunk changes under one name, the mount has the kernel forget the others."""
        role = self.pyramids.role(self._norm(path))
        if not isinstance(role, Chunk):
            return []
        return [role.path_of(variant) for variant in VARIANTS if variant != role.variant]

    def _stored_variants(self, chunk: Chunk) -> list[str]:
        out = []
        for variant in VARIANTS:
            path = chunk.path_of(variant)
            hit = self.union.lookup(path)
            if hit is not None and not hit.is_dir:
                out.append(path)
        return out

    def _layer_name(self, hit: Hit) -> str:
        return "overlay" if hit.layer is self.union.overlay else "static"

    def _nested_stat(self, role: Nested) -> tuple[Stat, str]:
        hit = self.union.lookup(role.path)
        if hit is not None:
            return hit.stat, "overlay"
        if self.pyramids.flat_index(role.scale).has(role.ranges):
            st, _ = self._made_up_dir(role.scale)
            return dataclasses.replace(st, ino=0), "overlay"
        raise _error(errno.ENOENT, role.path)

    def _made_up_dir(self, scale: str) -> tuple[Stat, str]:
        """Attributes of a nested directory that only the flat chunks make: its scale's."""
        hit = self.union.lookup(scale)
        if hit is None or not hit.is_dir:
            raise _error(errno.ENOENT, scale)
        return dataclasses.replace(hit.stat, nlink=2), self._layer_name(hit)

    def _exists(self, path: str) -> bool:
        try:
            self.stat_entry(path)
            return True
        except (FileNotFoundError, NotADirectoryError):
            return False

    # ------------------------------------------------------------ listings

    def listdir_types(self, path: str) -> dict[str, int]:
        path = self._norm(path)
        place = self.pyramids.place(path)
        if place.scale is None:
            return self.union.listdir_types(path)
        stored = {} if self._made_up(path, place.ranges) else self.union.listdir_types(path)
        return {name: kind for name, (kind, _) in self.lister.entries(path, place.scale, place.ranges, stored).items()}

    def children(self, path: str) -> list[tuple[str, int, Callable[[], Stat | None], str]]:
        """As the union's; every name inside a pyramid is reported as "overlay": aliases change
        whenever another name of their chunk is written, so they get the short cache times."""
        path = self._norm(path)
        place = self.pyramids.place(path)
        if place.scale is None:
            return self.union.children(path)
        real = {} if self._made_up(path, place.ranges) else {
            name: (kind, stat) for name, kind, stat, _ in self.union.children(path)}
        stored = {name: kind for name, (kind, _) in real.items()}
        out: list[tuple[str, int, Callable[[], Stat | None], str]] = []
        for name, (kind, source) in self.lister.entries(path, place.scale, place.ranges, stored).items():
            if source is None:  # a nested directory that only the flat chunks make
                stat: Callable[[], Stat | None] = partial(self._made_up_stat, place.scale)
            elif name in real and source == join(path, name):
                stat = real[name][1]
            else:
                stat = partial(self._stat_of, source)
            out.append((name, kind, stat, "overlay"))
        return out

    def open_directory(self, path: str) -> Any:
        """The union's descriptor-held directory; inside a pyramid, where names are made up
        from the chunks stored, a directory listed by its path (beneath the roots)."""
        path = self._norm(path)
        if self.pyramids.place(path).scale is None:
            return self.union.open_directory(path)
        self.stat_entry(path)  # ENOENT now, not at the first listing
        return _ListedByPath(self, path)

    def _made_up_stat(self, scale: str) -> Stat:
        return dataclasses.replace(self._made_up_dir(scale)[0], ino=0)

    def _stat_of(self, path: str) -> Stat | None:
        """The attributes of an alias: its stored file's, without its identity (it is another name)."""
        hit = self.union.lookup(path)
        return None if hit is None else dataclasses.replace(hit.stat, ino=0)

    def _made_up(self, path: str, ranges: tuple[Range, ...]) -> bool:
        """Whether directory ``path`` exists only because flat chunks make it (ENOENT if not at all)."""
        if ranges and self.union.lookup(path) is None:
            self.stat_entry(path)
            return True
        return False

    # ------------------------------------------------------------ reading

    def open_fd(self, path: str, flags: int) -> int | None:
        file = self.open_file(path, flags)
        return None if file is None else file.fd

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        """As the union's; a chunk name of the other compression gives None (served from
        memory by `open`)."""
        path = self._norm(path)
        role = self.pyramids.role(path)
        if role is None or isinstance(role, Nested):
            if flags & _WRITE_FLAGS:
                self._noticing_info(path)
            return self.union.open_file(path, flags)
        if flags & _WRITE_FLAGS:
            return self._open_chunk_for_writing(role, flags)
        found = self._require(role)
        if found.variant.gz == role.variant.gz:
            return self.union.open_file(found.path, flags)
        self.converter.size(found.path, found.hit, role.variant.gz)  # EIO now, not at the first read
        return None

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> IO[bytes]:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if not isinstance(role, Chunk):
            return self.union.open(path, mode, **kwargs)
        if mode != "rb":
            raise NotImplementedError("chunk names are opened for writing with open_fd")
        found = self._require(role)
        if found.variant.gz == role.variant.gz:
            return self.union.open(found.path, "rb")
        return io.BufferedReader(LazyBytes(partial(self.converter.convert, found.path, found.hit, role.variant.gz)))

    def _require(self, chunk: Chunk) -> _Found:
        found = self._find(chunk)
        if found is None:
            raise _error(errno.ENOENT, chunk.path)
        return found

    def _served(self, chunk: Chunk, found: _Found) -> bytes:
        """The bytes ``chunk``'s name serves."""
        if found.variant.gz != chunk.variant.gz:
            return self.converter.convert(found.path, found.hit, chunk.variant.gz)
        with self.union.open(found.path, "rb") as f:
            return f.read()

    # ------------------------------------------------------------ writing chunks

    def _open_chunk_for_writing(self, chunk: Chunk, flags: int) -> OpenFile | None:
        if self.union.lookup(chunk.path) is None:  # another name of it is stored: make this one
            found = self._require(chunk)
            data = b"" if flags & os.O_TRUNC else self._served(chunk, found)
            self._make_file(chunk.path, data, found.hit.stat)
        file = self.union.open_file(chunk.path, flags)
        self._drop_other_variants(chunk)
        return file

    def _make_file(self, path: str, data: bytes, like: Stat) -> None:
        """Store ``data`` at ``path`` in the overlay with the mode and owner of ``like``."""
        self._ensure_parent(path)
        self.union.create(path, S.S_IMODE(like.mode))
        if data:
            with self.union.open(path, "wb") as f:
                f.write(data)
        try:
            self.union.chown(path, like.uid, like.gid)
        except OSError:
            pass  # storage without owners, or a daemon that may not give files away

    def _drop_other_variants(self, chunk: Chunk, keep: str | None = None) -> None:
        keep = chunk.path if keep is None else keep
        for path in self._stored_variants(chunk):
            if path != keep:
                self.union.unlink(path)
        self.pyramids.touched(chunk.scale)

    def _ensure_parent(self, path: str) -> None:
        """Make the union hold ``path``'s parent (a nested directory the flat chunks make)."""
        parent = posixpath.dirname(path)
        if parent and self.union.lookup(parent) is None:
            self.union.makedirs(parent, exist_ok=True)

    def _in_made_up_dir(self, path: str) -> bool:
        """Whether ``path``'s parent is a nested directory that only the flat chunks make."""
        parent = posixpath.dirname(path)
        role = self.pyramids.role(parent)
        return isinstance(role, Nested) and self.union.lookup(parent) is None and self._exists(parent)

    def _retrying_in_made_up_dir(self, path: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except FileNotFoundError:
            if not self._in_made_up_dir(path):
                raise
        self._ensure_parent(path)
        return call(*args, **kwargs)

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if not isinstance(role, Chunk):
            self._noticing_info(path)
            return self._retrying_in_made_up_dir(path, self.union.create, path, mode, flags)
        self._ensure_parent(path)
        fd = self.union.create(path, mode, flags)
        self._drop_other_variants(role)
        return fd

    def truncate(self, path: str, size: int, **kwargs: Any) -> None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if not isinstance(role, Chunk):
            self._noticing_info(path)
            return self.union.truncate(path, size)
        if self.union.lookup(path) is not None:
            self.union.truncate(path, size)
        else:
            found = self._require(role)
            data = self._served(role, found)[:size] if size else b""
            self._make_file(path, data.ljust(size, b"\0"), found.hit.stat)
        self._drop_other_variants(role)

    def _alias_target(self, path: str) -> str:
        """The stored file that attribute changes of ``path`` apply to."""
        role = self.pyramids.role(path)
        if isinstance(role, Chunk) and self.union.lookup(path) is None:
            return self._require(role).path
        return path

    def chmod(self, path: str, mode: int) -> None:
        self.union.chmod(self._alias_target(self._norm(path)), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.union.chown(self._alias_target(self._norm(path)), uid, gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self.union.utime(self._alias_target(self._norm(path)), atime_ns, mtime_ns)

    # ------------------------------------------------------------ names

    def unlink(self, path: str) -> None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if isinstance(role, Chunk):
            stored = self._stored_variants(role)
            if not stored:
                raise _error(errno.ENOENT, path)
            for variant_path in stored:
                self.union.unlink(variant_path)
            self.pyramids.touched(role.scale)
            return
        if isinstance(role, Nested) and self.union.lookup(path) is None and self._exists(path):
            raise _error(errno.EISDIR, path)
        self._noticing_info(path)
        self.union.unlink(path)

    def mkdir(self, path: str, create_parents: bool = True, mode: int = 0o777, **kwargs: Any) -> None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if role is not None:
            if self._exists(path):
                raise _error(errno.EEXIST, path)
            self._ensure_parent(path)
            self.pyramids.touched(role.scale)
        self._retrying_in_made_up_dir(path, self.union.mkdir, path, create_parents=create_parents, mode=mode)

    def rmdir(self, path: str) -> None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        if isinstance(role, Nested):
            if self.listdir_types(path):
                raise _error(errno.ENOTEMPTY, path)
            self.pyramids.touched(role.scale)
        self.union.rmdir(path)

    def symlink(self, target: str, path: str, **kwargs: Any) -> None:
        path = self._norm(path)
        role = self.pyramids.role(path)
        self._noticing_info(path)
        if isinstance(role, Chunk):
            if self._find(role) is not None:
                raise _error(errno.EEXIST, path)
            self._ensure_parent(path)
            self.union.symlink(target, path)
            self.pyramids.touched(role.scale)
            return
        self._retrying_in_made_up_dir(path, self.union.symlink, target, path)

    def link(self, src: str, dst: str, **kwargs: Any) -> None:
        src, dst = self._norm(src), self._norm(dst)
        if self.pyramids.role(src) is not None or self.pyramids.role(dst) is not None:
            raise _error(errno.EPERM, dst)  # a link would bypass the one-variant rule
        self.union.link(src, dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        path = self._norm(path)
        if self.pyramids.role(path) is not None:
            raise _error(errno.EPERM, path)
        self.union.mknod(path, mode, device)


    def cacheable(self, path: str) -> bool:
        """Whether the listing of directory ``path`` may be cached by the kernel for good."""
        return self.pyramids.place(self._norm(path)).scale is None and self.union.cacheable(path)

    def posix_rename(self, src: str, dst: str, replace: bool = True) -> None:
        src, dst = self._norm(src), self._norm(dst)
        source_role, target_role = self.pyramids.role(src), self.pyramids.role(dst)
        self._noticing_info(src)
        self._noticing_info(dst)
        if isinstance(source_role, Chunk) or isinstance(target_role, Chunk):
            self._rename_chunk(src, dst, source_role, target_role, replace)
            return
        if isinstance(source_role, Nested) and self.union.lookup(src) is None:
            self.stat_entry(src)  # ENOENT unless the flat chunks make it
            raise _error(errno.EXDEV, src)  # made-up directories cannot move; mv(1) copies
        if isinstance(target_role, Nested) and self.union.lookup(dst) is None and self._exists(dst):
            raise _error(errno.ENOTEMPTY, dst)
        moving_dir = (hit := self.union.lookup(src)) is not None and hit.is_dir
        self._retrying_in_made_up_dir(dst, self.union.posix_rename, src, dst, replace=replace)
        for role in (source_role, target_role):
            if role is not None:
                self.pyramids.touched(role.scale)
        if moving_dir:
            self.pyramids.moved(src, dst)

    def _rename_chunk(self, src: str, dst: str, source: Role | None, target: Role | None,
                      replace: bool) -> None:
        if isinstance(source, Chunk):
            found = self._require(source)
            stored_at, stored_gz = found.path, found.variant.gz
        else:
            st, _ = self.union.stat_entry(src)
            if st.is_dir:  # a directory that takes a chunk's name is no chunk
                self.union.posix_rename(src, dst, replace=replace)
                self.pyramids.moved(src, dst)
                return
            found, stored_at, stored_gz = None, src, None
        if not isinstance(target, Chunk):
            if isinstance(target, Nested) and self._exists(dst):
                raise _error(errno.EISDIR, dst)
            wanted_gz = source.variant.gz if isinstance(source, Chunk) else None
        else:
            if not replace and self._find(target) is not None:
                raise _error(errno.EEXIST, dst)
            wanted_gz = target.variant.gz
        if stored_at == dst:
            pass
        elif found is None or stored_gz == wanted_gz:
            self._ensure_parent(dst)
            self.union.posix_rename(stored_at, dst, replace=replace)
        else:  # the bytes change compression on the way
            if not replace and self.union.lookup(dst) is not None:
                raise _error(errno.EEXIST, dst)
            data = self.converter.convert(found.path, found.hit, bool(wanted_gz))
            if self.union.lookup(dst) is not None:
                with self.union.open(dst, "wb") as f:
                    f.write(data)
            else:
                self._make_file(dst, data, found.hit.stat)
            self.union.unlink(stored_at)
        if isinstance(source, Chunk):
            self._drop_other_variants(source, keep=dst)
        if isinstance(target, Chunk):
            self._drop_other_variants(target, keep=dst)

    def _noticing_info(self, path: str) -> None:
        """Tell the pyramid map when an ``info`` file changes."""
        if path.rpartition("/")[2] == INFO:
            self.pyramids.info_changed(posixpath.dirname(path))


__all__ = ["LAYOUTS", "Layout", "PrecomputedView"]
