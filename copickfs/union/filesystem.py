"""`UnionFileSystem`: an fsspec filesystem over a writable overlay and a read-only static layer.

The semantics are docs/SEMANTICS.md's (the README's union table). Besides the fsspec API, the class offers
the POSIX verbs the mount needs (`posix_rename`, `unlink`, `chmod`, `truncate`,
`open_fd`, ...) so the mount holds no storage logic of its own. Nothing here knows of
FUSE or copick; errors are built-in exceptions.
"""

from __future__ import annotations

import datetime
import errno
import io
import os
import posixpath
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import IO, Any

from fsspec import AbstractFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.utils import tokenize

from . import markers
from .copyup import copy_entry
from .directory import Directory
from .layers import OPEN_FLAGS, Layer, open_layer
from .locks import PathLocks
from .lookup import Hit, Resolver
from .openfile import OpenFile
from .stat import Stat

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR


def _error(code: int, path: str) -> OSError:
    """An OSError of the right subclass (FileNotFoundError, ...) with errno set."""
    return OSError(code, os.strerror(code), path)


def _storage_key(layer: Layer | None) -> tuple[Any, ...] | None:
    """What a layer stands for: its class, its filesystem's class and init arguments, its root.

    fsspec tells filesystems apart by a token of their init arguments; a union built from
    layer objects (or unpickled in another thread) must still equal one over the same storage.
    """
    if layer is None:
        return None
    fs = layer.fs
    return (type(layer).__qualname__, type(fs).__qualname__,
            tokenize(fs.storage_args, fs.storage_options), layer.root)


class LayerFile(io.IOBase):
    """A layer's open file with the attributes fsspec's helpers read (``size``, ``path``,
    ``mode``, ``fs``): `cat_file` and `tail` seek from ``size`` for reads from the end, as
    zarr asks for a shard's index. Everything else is the layer's file (as fsspec's
    `LocalFileOpener` wraps a local one)."""

    def __init__(self, f: IO[bytes], fs: UnionFileSystem, path: str, mode: str) -> None:
        self.f = f
        self.fs = fs
        self.path = path
        self.mode = mode

    @property
    def size(self) -> int:
        """The file's length now (what has reached the layer, for a file being written)."""
        known = getattr(self.f, "size", None)
        if isinstance(known, int):
            return known
        try:
            return os.fstat(self.f.fileno()).st_size
        except (AttributeError, OSError):  # no descriptor (io.UnsupportedOperation is an OSError)
            here = self.f.tell()
            end = self.f.seek(0, os.SEEK_END)
            self.f.seek(here)
            return end

    def read(self, size: int | None = -1) -> bytes:
        return self.f.read(size)

    def readinto(self, buffer: Any) -> int:
        return self.f.readinto(buffer)  # type: ignore[attr-defined]

    def readline(self, size: int | None = -1) -> bytes:
        return self.f.readline(size)

    def write(self, data: Any) -> int:
        return self.f.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def truncate(self, size: int | None = None) -> int:
        return self.f.truncate(size)

    def readable(self) -> bool:
        return self.f.readable()

    def writable(self) -> bool:
        return self.f.writable()

    def seekable(self) -> bool:
        return self.f.seekable()

    def fileno(self) -> int:
        return self.f.fileno()

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.f.close()

    @property
    def closed(self) -> bool:
        return self.f.closed

    def __getattr__(self, name: str) -> Any:
        if name == "f":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self.f, name)


class UnionFileSystem(AbstractFileSystem):
    """Overlay wins, static shows through, the static layer is never written."""

    protocol = "union"
    root_marker = ""
    cachable = False

    def __init__(
        self,
        overlay: Layer | str,
        static: Layer | str | None = None,
        overlay_options: dict[str, Any] | None = None,
        static_options: dict[str, Any] | None = None,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        self.overlay = overlay if isinstance(overlay, Layer) else open_layer(overlay, overlay_options)
        if static is None or isinstance(static, Layer):
            self.static = static
        else:
            self.static = open_layer(static, static_options)
        self._resolver = Resolver(self.overlay, self.static)
        self._locks = PathLocks()

    @property
    def _fs_token(self) -> str:
        """fsspec's identity of a filesystem (``==``, ``hash``, dask): the storage behind both
        layers, so a pickled union, or one made from layer objects or in another thread,
        equals every union over the same storage."""
        return tokenize(type(self).__qualname__, _storage_key(self.overlay), _storage_key(self.static))

    def __repr__(self) -> str:
        """Roots and token, no options (they may hold secrets). fsspec tokenizes filesystems
        that wrap this one (zarr's async wrapper, dirfs) by their arguments' repr: a repr
        naming the storage, not the object's address, lets them compare equal as this does."""
        def url(layer: Layer | None) -> str | None:
            return None if layer is None else layer.fs.unstrip_protocol(layer.root)

        return (f"UnionFileSystem(overlay={url(self.overlay)!r}, static={url(self.static)!r}, "
                f"token={self._fs_token})")

    # ------------------------------------------------------------------ paths

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        path = str(path)
        if path.startswith("union://"):
            path = path[len("union://"):]
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"path leaves the union: {path!r}")
        return "/".join(parts)

    @classmethod
    def _parent(cls, path: str) -> str:
        return posixpath.dirname(cls._strip_protocol(path))

    # ---------------------------------------------------------------- lookups

    def lookup(self, path: str) -> Hit | None:
        """The winning entry of ``path``, or None."""
        return self._resolver.lookup(self._strip_protocol(path))

    def layer_of(self, path: str) -> str | None:
        """"overlay" or "static": where ``path`` wins; None if it does not exist."""
        hit = self.lookup(path)
        return None if hit is None else self._layer_name(hit.layer)

    def _hit(self, path: str) -> Hit:
        hit = self._resolver.lookup(path)
        if hit is None:
            if path:  # as path resolution: a missing or non-directory parent is the error
                self._dir_hit(posixpath.dirname(path))
            raise _error(errno.ENOENT, path)
        return hit

    def _dir_hit(self, path: str) -> Hit:
        hit = self._hit(path)
        if not hit.is_dir:
            raise _error(errno.ENOTDIR, path)
        return hit

    def _static_holds(self, path: str) -> bool:
        return self._resolver.static_entry(path) is not None

    def names(self, path: str) -> dict[str, str]:
        """Merged directory listing: name -> "overlay" | "static"."""
        path = self._strip_protocol(path)
        listing = self._resolver.listing(path, self._dir_hit(path))
        return {n: self._layer_name(c.layer) for n, c in listing.items()}

    def listdir_types(self, path: str) -> dict[str, int]:
        """Merged directory listing: name -> file type bits (``S_IFMT``; 0 if unknown)."""
        path = self._strip_protocol(path)
        return {n: c.kind for n, c in self._resolver.listing(path, self._dir_hit(path)).items()}

    def children(self, path: str) -> list[tuple[str, int, Callable[[], Stat | None], str]]:
        """Merged directory listing: each name with its file type bits, a call that stats it
        in its own layer, and that layer's name ("overlay" or "static").

        The listing already settled which layer each name comes from, so a stat costs one
        syscall rather than a full union lookup; it is deferred because a reader that wants
        names only (`find`) should not pay for it. The call gives None if the entry vanished.
        """
        path = self._strip_protocol(path)
        listing = self._resolver.listing(path, self._dir_hit(path))
        return [(name, child.kind, partial(child.layer.stat, f"{path}/{name}" if path else name),
                 self._layer_name(child.layer)) for name, child in listing.items()]

    def open_directory(self, path: str) -> Directory:
        """Directory ``path`` held open by descriptors of its layer directories (see `Directory`)."""
        path = self._strip_protocol(path)
        hit = self._dir_hit(path)
        shows = self.static is not None and (hit.layer is self.static or self._resolver.static_visible(path))
        return Directory(self.overlay, self.static, path, shows)

    def cacheable(self, path: str) -> bool:
        """Whether the listing of directory ``path`` can change only through this union:
        true where static alone holds it (static never changes; the overlay does so only
        through the union, or by other writers the caller must allow for)."""
        hit = self.lookup(path)
        return hit is not None and hit.layer is self.static

    def _layer_name(self, layer: Layer) -> str:
        return "overlay" if layer is self.overlay else "static"

    def _info(self, path: str, hit: Hit) -> dict[str, Any]:
        st = hit.stat
        return {
            "name": path,
            "size": st.size,
            "type": st.kind,
            "mode": st.mode,
            "mtime": st.mtime_ns / 1e9,
            "uid": st.uid,
            "gid": st.gid,
            "nlink": st.nlink,
            "islink": st.is_link,
            "layer": self._layer_name(hit.layer),
        }

    def stat_entry(self, path: str) -> tuple[Stat, str]:
        """(stat, layer name) of ``path``; FileNotFoundError when absent."""
        path = self._strip_protocol(path)
        hit = self._resolver.lookup(path)  # the mount's hot path: the kernel checked the parents
        if hit is None:
            raise _error(errno.ENOENT, path)
        return hit.stat, self._layer_name(hit.layer)

    # --------------------------------------------------------------- fsspec: read

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        return self._info(path, self._hit(path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        hit = self._hit(path)
        if not hit.is_dir:
            return [self._info(path, hit) if detail else path]
        out: list[Any] = []
        for name, entry in sorted(self._resolver.listing(path, hit).items()):
            child = posixpath.join(path, name)
            if not detail:
                out.append(child)
                continue
            st = entry.layer.stat(child)
            if st is not None:  # vanished meanwhile
                out.append(self._info(child, Hit(entry.layer, st)))
        return out

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            return self.lookup(path) is not None
        except ValueError:
            return False

    def created(self, path: str) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.info(path)["mtime"], tz=datetime.timezone.utc)

    modified = created

    def readlink(self, path: str) -> str:
        path = self._strip_protocol(path)
        hit = self._hit(path)
        if not hit.stat.is_link:
            raise _error(errno.EINVAL, path)
        return hit.layer.readlink(path)

    def islink(self, path: str) -> bool:
        hit = self.lookup(path)
        return hit is not None and hit.stat.is_link

    def statfs(self) -> dict[str, int]:
        return self.overlay.statfs()

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> LayerFile:
        path = self._strip_protocol(path)
        if "r" in mode and "+" not in mode:
            hit = self._hit(path)
            if hit.is_dir:
                raise _error(errno.EISDIR, path)
            return LayerFile(hit.layer.open(path, mode), self, path, mode)
        existing = self.lookup(path)  # once: a second look could see another thread's file
        if existing is not None and "x" in mode:
            raise _error(errno.EEXIST, path)
        if existing is not None and existing.is_dir:
            raise _error(errno.EISDIR, path)  # before any copy-up: a directory is never opened to write
        keep_data = "w" not in mode and "x" not in mode
        if existing is None:
            if "r" in mode:
                raise _error(errno.ENOENT, path)  # r+ opens only what exists; a creates, as open(2)
            self._make_parents(path)
            try:
                self.create(path)
            except FileExistsError:
                if "x" in mode:
                    raise
                self.copy_up(path, with_data=keep_data)  # made by another thread meanwhile
        else:
            self.copy_up(path, with_data=keep_data)
        return LayerFile(self.overlay.open(path, mode.replace("x", "w")), self, path, mode)

    def _make_parents(self, path: str) -> None:
        """Make ``path``'s missing ancestors, as fsspec's auto_mkdir; a parent that is a file
        is left for the creating call to report (ENOTDIR)."""
        parent = posixpath.dirname(path)
        if parent and self.lookup(parent) is None:
            self.makedirs(parent, exist_ok=True)

    # ---------------------------------------------------------- fsspec: bulk copies

    def expand_path(self, path: Any, recursive: bool = False, maxdepth: int | None = None,
                    **kwargs: Any) -> list[str]:
        """As fsspec's; a path spelled from the root (``/dir``) expands to paths spelled so
        too, as a local filesystem's absolute paths (see `_rooted`)."""
        out = super().expand_path(path, recursive=recursive, maxdepth=maxdepth, **kwargs)
        if isinstance(path, str) and path.startswith("/"):
            return ["/" + p for p in out]
        return out

    @classmethod
    def _rooted(cls, path: Any) -> Any:
        """``path`` spelled from the root, keeping a trailing slash (it means "the contents").

        fsspec's bulk copies name each target by cutting the source's parent off the
        source's paths; a name at the union root ("dir") has no parent to cut, so "dir/a"
        would land as "TARGET/a". Spelled "/dir/a", its parent is "" and it lands as
        "TARGET/dir/a", as a local path would.
        """
        if not isinstance(path, str):
            return path  # lists are copied flat: no parent is cut
        stripped = cls._strip_protocol(path)
        return "/" + stripped + ("/" if stripped and path.endswith("/") else "")

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, callback: Any = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        super().get(self._rooted(rpath), lpath, recursive=recursive, callback=callback,
                    maxdepth=maxdepth, **kwargs)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
             on_error: str | None = None, **kwargs: Any) -> None:
        super().copy(self._rooted(path1), path2, recursive=recursive, maxdepth=maxdepth,
                     on_error=on_error, **kwargs)

    # -------------------------------------------------------------- copy-up

    def clear_work_area(self) -> int:
        """Remove the overlay's temporary files from copy-ups a crash interrupted (before
        anything else uses the overlay)."""
        return self.overlay.clear_work_area()

    def remove_leftovers(self) -> int:
        """Remove temporary files older releases left beside their targets (a whole walk)."""
        return self.overlay.remove_leftovers()

    def copy_up(self, path: str, with_data: bool = True) -> Stat:
        """Make the overlay hold ``path`` (and its parent directories); return its overlay stat."""
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            present = self.overlay.stat(path)
            if present is not None:
                return present
            hit = self._hit(path)
            self._ensure_overlay_dir(posixpath.dirname(path))
            copy_entry(hit.layer, self.overlay, path, hit.stat, with_data)
            copied = self.overlay.stat(path)
            assert copied is not None
            return copied

    def _ensure_overlay_dir(self, path: str) -> None:
        """Give the overlay every directory on the way to ``path``, copying static's attributes.

        Takes no locks: making a directory is idempotent, and taking parent locks
        while a child's lock is held could deadlock.
        """
        current = ""
        for name in path.split("/") if path else ():
            current = posixpath.join(current, name)
            if self.overlay.stat(current) is not None:
                continue
            hit = self._dir_hit(current)
            copy_entry(hit.layer, self.overlay, current, hit.stat)

    # ------------------------------------------------------------ whiteouts

    def _whiteout(self, path: str) -> None:
        self._ensure_overlay_dir(posixpath.dirname(path))
        self.overlay.touch(markers.whiteout_of(path))

    def _drop_whiteout(self, path: str) -> bool:
        try:
            self.overlay.remove(markers.whiteout_of(path))
            return True
        except FileNotFoundError:
            return False

    def _remove_overlay_dir(self, path: str) -> None:
        """Remove an overlay directory that holds nothing but markers."""
        for name in self.overlay.listdir(path) or ():
            if not markers.is_reserved(name):
                raise _error(errno.ENOTEMPTY, path)
            self.overlay.remove(posixpath.join(path, name))
        self.overlay.rmdir(path)

    # ------------------------------------------------------------ creation

    def _check_new(self, path: str) -> None:
        """Raise unless ``path`` may be created: a free, unreserved name in an existing directory."""
        if not path:
            raise _error(errno.EEXIST, path)
        if markers.is_reserved(posixpath.basename(path)):
            raise _error(errno.EPERM, path)
        if self._resolver.lookup(path) is not None:
            raise _error(errno.EEXIST, path)
        self._dir_hit(posixpath.dirname(path))

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        """Create an empty regular file in the overlay (O_CREAT|O_EXCL semantics).

        Given open ``flags`` and a local overlay, returns the descriptor of the creating
        open, so a create costs one open(2), not two.
        """
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            self._check_new(path)
            self._ensure_overlay_dir(posixpath.dirname(path))
            fd = self.overlay.create(path, mode, flags)
            self._drop_whiteout(path)
            return fd

    def mkdir(self, path: str, create_parents: bool = True, mode: int = 0o777, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if create_parents and path:
            parent = posixpath.dirname(path)
            if parent and self.lookup(parent) is None:
                self.makedirs(parent, exist_ok=True)
        with self._locks.hold(path):
            self._check_new(path)
            self._ensure_overlay_dir(posixpath.dirname(path))
            self.overlay.mkdir(path, mode)
            if self.overlay.stat(markers.whiteout_of(path)) is not None:
                # Whatever static holds under this name was deleted: keep it hidden.
                self.overlay.touch(markers.opaque_marker_of(path))
                self._drop_whiteout(path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        hit = self.lookup(path)
        if hit is not None:
            if not exist_ok or not hit.is_dir:
                raise _error(errno.EEXIST, path)
            return
        try:
            self.mkdir(path, create_parents=True)
        except FileExistsError:
            # Another thread made it meanwhile (zarr writes chunks from many threads).
            hit = self.lookup(path)
            if not exist_ok or hit is None or not hit.is_dir:
                raise

    def symlink(self, target: str, path: str, **kwargs: Any) -> None:
        """Make ``path`` a symlink to ``target`` (stored in the overlay)."""
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            self._check_new(path)
            self._ensure_overlay_dir(posixpath.dirname(path))
            self.overlay.symlink(target, path)
            self._drop_whiteout(path)

    def link(self, src: str, dst: str, **kwargs: Any) -> None:
        """A hard link ``dst`` to ``src``: a static file is copied up first, then linked in
        the overlay, so both names are one file from then on (as kernel overlayfs).
        Overlays that keep no links (object stores) refuse with EPERM."""
        src, dst = self._strip_protocol(src), self._strip_protocol(dst)
        with self._locks.hold(src, dst):
            if self._hit(src).is_dir:
                raise _error(errno.EPERM, src)
            self._check_new(dst)
            if not self.overlay.is_local:
                raise _error(errno.EPERM, dst)
            self.copy_up(src)
            self._ensure_overlay_dir(posixpath.dirname(dst))
            self.overlay.link(src, dst)
            self._drop_whiteout(dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        """A FIFO, Unix socket or device node in the overlay (EPERM where it keeps none)."""
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            self._check_new(path)
            self._ensure_overlay_dir(posixpath.dirname(path))
            self.overlay.mknod(path, mode, device)
            self._drop_whiteout(path)

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """Create an empty file (and its missing parents, as fsspec's touch), or truncate or
        re-time an existing one."""
        path = self._strip_protocol(path)
        if self.lookup(path) is None:
            self._make_parents(path)
            try:
                self.create(path)
                return
            except FileExistsError:
                pass  # another thread made it meanwhile: touch that one
        if truncate:
            self.truncate(path, 0)
        else:
            now = time.time_ns()
            self.utime(path, now, now)

    # ------------------------------------------------------------ removal

    def unlink(self, path: str) -> None:
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            hit = self._hit(path)
            if hit.is_dir:
                raise _error(errno.EISDIR, path)
            if self._static_holds(path):
                self._whiteout(path)  # first: a crash never brings static back
            if hit.layer is self.overlay:
                self.overlay.remove(path)

    def rm_file(self, path: str) -> None:
        self.unlink(path)

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        if not path:
            raise _error(errno.EBUSY, path)
        with self._locks.hold(path):
            hit = self._dir_hit(path)
            if self._resolver.listing(path, hit):
                raise _error(errno.ENOTEMPTY, path)
            if self._static_holds(path):
                self._whiteout(path)
            if self.overlay.stat(path) is not None:
                self._remove_overlay_dir(path)

    def _rm(self, path: str) -> None:
        hit = self.lookup(path)
        if hit is not None and hit.is_dir:
            self.rmdir(path)
        else:
            self.unlink(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        for p in sorted(paths, key=len, reverse=True):  # children before parents
            self._rm(p)

    # ------------------------------------------------------------ changes

    def chmod(self, path: str, mode: int) -> None:
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            self.copy_up(path)
            self.overlay.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            st = self.copy_up(path)
            self.overlay.chown(path, st.uid if uid < 0 else uid, st.gid if gid < 0 else gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            self.copy_up(path)
            self.overlay.utime(path, atime_ns, mtime_ns)

    def truncate(self, path: str, size: int, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        with self._locks.hold(path):
            if self._hit(path).is_dir:
                raise _error(errno.EISDIR, path)
            self.copy_up(path, with_data=size > 0)
            self.overlay.truncate(path, size)

    def open_fd(self, path: str, flags: int) -> int | None:
        """An OS file descriptor for ``path`` when its layer is local, else None.

        Opening for writing (or with O_TRUNC) copies a static file up first, so the
        descriptor always refers to the overlay copy; static files open read-only.
        """
        path, layer = self._layer_to_open(path, flags)
        return layer.open_fd(path, flags & OPEN_FLAGS)

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        """As `open_fd`, as an `OpenFile` of whatever layer can serve it from a local
        descriptor (a local directory, a remote layer's cache or staging area), else None."""
        path, layer = self._layer_to_open(path, flags)
        return layer.open_file(path, flags & OPEN_FLAGS)

    def _layer_to_open(self, path: str, flags: int) -> tuple[str, Layer]:
        path = self._strip_protocol(path)
        writing = bool(flags & _WRITE_FLAGS) or bool(flags & os.O_TRUNC)
        if writing:
            if self._hit(path).is_dir:
                raise _error(errno.EISDIR, path)
            self.copy_up(path, with_data=not flags & os.O_TRUNC)
            return path, self.overlay
        return path, self._hit(path).layer

    # ------------------------------------------------------------ renames

    def posix_rename(self, src: str, dst: str, replace: bool = True) -> None:
        """rename(2) over the union (docs/SEMANTICS.md's rename rules); ``replace=False`` is RENAME_NOREPLACE."""
        src, dst = self._strip_protocol(src), self._strip_protocol(dst)
        if markers.is_reserved(posixpath.basename(dst)):
            raise _error(errno.EPERM, dst)
        if not src or not dst:
            raise _error(errno.EBUSY, src or dst)
        if src == dst:
            self._hit(src)
            return
        with self._locks.hold(src, dst):
            # rename(2)'s order: both parents, the source, NOREPLACE, then ancestry.
            self._dir_hit(posixpath.dirname(src))
            self._dir_hit(posixpath.dirname(dst))
            source = self._hit(src)
            target = self._resolver.lookup(dst)
            if target is not None and not replace:
                raise _error(errno.EEXIST, dst)
            if dst.startswith(src + "/"):
                raise _error(errno.EINVAL, dst)
            if src.startswith(dst + "/"):
                raise _error(errno.ENOTEMPTY, dst)
            if source.is_dir:
                self._rename_dir(src, dst, target)
            else:
                self._rename_file(src, dst, target)

    def _rename_file(self, src: str, dst: str, target: Hit | None) -> None:
        if target is not None and target.is_dir:
            raise _error(errno.EISDIR, dst)
        source_in_static = self._static_holds(src)
        self.copy_up(src)  # invisible: the copy shows what static showed
        self._ensure_overlay_dir(posixpath.dirname(dst))
        with self._undoable() as undo:
            if source_in_static:  # hides nothing while the overlay copy is still at src
                self._whiteout(src)
                undo(self._drop_whiteout, src)
            self.overlay.rename(src, dst)
        self._drop_whiteout(dst)

    def _rename_dir(self, src: str, dst: str, target: Hit | None) -> None:
        if target is not None:
            if not target.is_dir:
                raise _error(errno.ENOTDIR, dst)
            if self._resolver.listing(dst, target):
                raise _error(errno.ENOTEMPTY, dst)
        # An opaque overlay directory (made over a deleted static name) shows nothing of
        # static: it moves natively, as in kernel overlayfs, leaving a whiteout behind.
        source_in_static = self._static_holds(src)
        if source_in_static and self.overlay.stat(markers.opaque_marker_of(src)) is None:
            raise _error(errno.EXDEV, src)  # as kernel overlayfs without redirect_dir
        hides_static = self._static_holds(dst) or self.overlay.stat(markers.whiteout_of(dst)) is not None
        self._ensure_overlay_dir(posixpath.dirname(dst))
        with self._undoable() as undo:
            # Markers first, each harmless where it lands, so a failure at any step leaves
            # the tree as it was (the undo list) and a crash leaves src or dst, never both.
            opaque = markers.opaque_marker_of(src)
            if hides_static and self.overlay.stat(opaque) is None:
                self.overlay.touch(opaque)  # travels with the directory
                undo(self.overlay.remove, opaque)
            if source_in_static:
                self._whiteout(src)
                undo(self._drop_whiteout, src)
            if self.overlay.stat(dst) is not None:
                self._remove_overlay_dir(dst)
            self.overlay.rename(src, dst)
        self._drop_whiteout(dst)

    @contextmanager
    def _undoable(self) -> Iterator[Callable[..., None]]:
        """Collect compensating steps; if the block fails, run them newest first."""
        steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        try:
            yield lambda call, *args: steps.append((call, args))
        except BaseException:
            for call, args in reversed(steps):
                try:
                    call(*args)
                except OSError:
                    pass  # the tree still shows what it showed: markers only hide static
            raise

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """fsspec move: a rename, or copy-and-delete where rename says EXDEV (as mv(1))."""
        try:
            self.posix_rename(path1, path2)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # rename(2) said EXDEV: path2 is absent or an empty directory, which the
            # directory's contents fill (a trailing slash), as the rename would have.
            self.copy(self._rooted(path1).rstrip("/") + "/", path2, recursive=True)
            self.rm(path1, recursive=True)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        hit = self._hit(path1)
        if hit.is_dir:
            self.makedirs(path2, exist_ok=True)
            return
        with self._open(path1, "rb") as fin, self._open(path2, "wb") as fout:
            while chunk := fin.read(1 << 20):
                fout.write(chunk)
