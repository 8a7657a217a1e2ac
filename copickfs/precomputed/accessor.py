"""`FileAccessor`: neuroglancer-scripts' chunk accessor over any fsspec filesystem or the union.

Same constructor, methods, defaults and errors as
``neuroglancer_scripts.file_accessor.FileAccessor``, so code written for it works
unchanged on S3, memory:// or a copick project's union. Where it does better:

- keys and paths that leave the pyramid (absolute, ``..``) raise ValueError (keys too);
- a store leaves exactly one variant of a chunk or file: the others are removed before
  it is written (whited out over a static layer when working on the union), which is safe
  inside a copickfs mount too (`FileAccessor._store`);
- ``overwrite=False`` refuses a file that exists under any of its names;
- every file is opened in a ``with`` block (no leaked handles), and a chunk is read
  with one open per variant tried, not an existence check and then an open;
- corrupt gzip data is a `DataAccessError`, not a stray ``zlib.error`` or ``EOFError``.

A fetch tries the accessor's own layout first (raw, then ``.gz``), then the other one.
"""

from __future__ import annotations

import gzip as _gzip
import os
import pathlib
import posixpath
import zlib
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .names import GZ, NO_COMPRESS_MIME_TYPES, Variant, check_coords, check_relative, chunk_path

__all__ = ["DataAccessError", "FileAccessor"]

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_CORRUPT = (OSError, EOFError, zlib.error)


try:  # where neuroglancer-scripts is installed, its code catches our errors and takes our accessor
    from neuroglancer_scripts.accessor import Accessor as _AccessorBase
    from neuroglancer_scripts.accessor import DataAccessError as _ErrorBase
except ImportError:
    _AccessorBase, _ErrorBase = object, Exception  # type: ignore[assignment, misc]


class DataAccessError(_ErrorBase):  # type: ignore[misc, valid-type]
    """Data that cannot be read or stored (missing, unreadable, refused).

    A subclass of neuroglancer-scripts' ``DataAccessError`` when that package is installed.
    """


class FileAccessor(_AccessorBase):  # type: ignore[misc, valid-type]
    """Access a Neuroglancer precomputed pyramid on any fsspec filesystem.

    :param base: the pyramid's directory: a local path, an fsspec URL (``s3://...``,
        ``memory://...``), or a path through a copick config file
        (``project.json`` or ``project.json/ExperimentRuns/TS_001/pyramid``): then the
        accessor works on the project's union (reads fall through to static, writes
        land in the overlay).
    :param flat: store chunks with the flat layout (``KEY/x0-x1_y0-y1_z0-z1``)
        instead of the nested one (``KEY/x0-x1/y0-y1/z0-z1``)
    :param gzip: compress stored chunks and files with gzip (``.gz`` suffix), except
        for JSON, JPEG and PNG data
    :param compresslevel: gzip compression level
    :param storage_options: passed to fsspec; ``fs=`` gives a filesystem object
        (for example a `UnionFileSystem`) on which ``base`` is a path

    A regular file on the way to ``base`` that is no copick config makes no error here:
    as with neuroglancer-scripts, every use then fails with `DataAccessError`.

    ``base_path``, ``gzip`` and ``compresslevel`` are neuroglancer-scripts' attributes;
    ``base_path`` is None when the pyramid is not a local directory (an fsspec URL, the
    union of a config, ``fs=``), so that nothing opens a wrong local path.
    """

    can_read = True
    can_write = True

    def __init__(self, base: str | os.PathLike[str], flat: bool = False, gzip: bool = True,
                 compresslevel: int = 9, **storage_options: Any) -> None:
        fs = storage_options.pop("fs", None)
        given = os.fspath(base)
        self._not_config = ""  # why a regular file on the way was not taken as a config
        if fs is None:
            fs, root, self._not_config = _open_base(given, storage_options)
        else:
            root = fs._strip_protocol(given)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/") if root != "/" else root
        self.base_path: pathlib.Path | None = None
        if isinstance(fs, LocalFileSystem):
            self.base_path = pathlib.Path(root if "://" in given else given)
        self.flat = flat
        self.gzip = gzip
        self.compresslevel = compresslevel

    def __repr__(self) -> str:
        return (f"FileAccessor({self.fs.unstrip_protocol(self.root)!r}, flat={self.flat}, "
                f"gzip={self.gzip}, compresslevel={self.compresslevel})")

    # ------------------------------------------------------------ files

    def file_exists(self, relative_path: str) -> bool:
        path = self._path(check_relative(relative_path))
        return self._is_file(path) or self._is_file(path + GZ)

    def fetch_file(self, relative_path: str) -> bytes:
        rel = check_relative(relative_path)
        path = self._path(rel)
        data = self._read(path)
        if data is not None:
            return data
        data = self._read(path + GZ)
        if data is None:
            raise DataAccessError(f"Cannot find {rel} in {self._where()}")
        return _decompress(data, f"{rel}{GZ} in {self._where()}")

    def store_file(self, relative_path: str, buf: bytes, mime_type: str = "application/octet-stream",
                   overwrite: bool = False) -> None:
        rel = check_relative(relative_path)
        path = self._path(rel)
        gz = self._compresses(mime_type)
        target, other = (path + GZ, path) if gz else (path, path + GZ)
        if not overwrite and (self._is_file(path) or self._is_file(path + GZ)):
            raise DataAccessError(f"Error storing {rel} in {self._where()}: the file exists")
        self._store(target, [other], self._encode(buf, gz), exclusive=not overwrite, what=rel)

    # ------------------------------------------------------------ chunks

    def fetch_chunk(self, key: str, chunk_coords: Any) -> bytes:
        key, coords = check_relative(key, "key"), check_coords(chunk_coords)
        what = f"{chunk_path(key, coords, Variant(False, False))} in {self._where()}"
        for variant in self._fetch_order():
            path = self._path(chunk_path(key, coords, variant))
            data = self._read(path)
            if data is not None:
                return _decompress(data, what) if variant.gz else data
        raise DataAccessError(f"Cannot find chunk {what}")

    def store_chunk(self, buf: bytes, key: str, chunk_coords: Any,
                    mime_type: str = "application/octet-stream", overwrite: bool = True) -> None:
        key, coords = check_relative(key, "key"), check_coords(chunk_coords)
        what = chunk_path(key, coords, Variant(False, False))
        own = Variant(not self.flat, self._compresses(mime_type))
        paths = {v: self._path(chunk_path(key, coords, v)) for v in self._fetch_order()}
        if not overwrite and any(self._is_file(p) for p in paths.values()):
            raise DataAccessError(f"Error storing chunk {what} in {self._where()}: the chunk exists")
        others = [path for variant, path in paths.items() if variant != own]
        self._store(paths[own], others, self._encode(buf, own.gz), exclusive=not overwrite, what=what)

    # ------------------------------------------------------------ helpers

    def _fetch_order(self) -> tuple[Variant, ...]:
        own, other = not self.flat, self.flat
        return (Variant(own, False), Variant(own, True), Variant(other, False), Variant(other, True))

    def _compresses(self, mime_type: str) -> bool:
        return self.gzip and mime_type not in NO_COMPRESS_MIME_TYPES

    def _encode(self, buf: bytes, gz: bool) -> bytes:
        return _gzip.compress(bytes(buf), compresslevel=self.compresslevel, mtime=0) if gz else bytes(buf)

    def _path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if self.root else rel

    def _where(self) -> str:
        where = self.fs.unstrip_protocol(self.root) if self.root else repr(self.fs)
        return f"{where} ({self._not_config})" if self._not_config else where

    def _is_file(self, path: str) -> bool:
        try:
            return self.fs.info(path).get("type") == "file"
        except _MISSING:
            return False
        except OSError as e:
            raise DataAccessError(f"Error probing {path}: {e}") from e

    def _read(self, path: str) -> bytes | None:
        """The bytes of ``path``; None when nothing (or a directory) is there."""
        try:
            with self.fs.open(path, "rb") as f:
                return f.read()
        except _MISSING:
            return None
        except OSError as e:
            raise DataAccessError(f"Error fetching {path}: {e}") from e

    def _store(self, target: str, others: list[str], data: bytes, exclusive: bool, what: str) -> None:
        """Write ``data`` at ``target`` and leave none of ``others``, the other names of the
        same file or chunk (stale copies from an earlier store in another layout).

        They are removed before the write, never after it. Inside a copickfs mount with
        precomputed names every variant name of a chunk is another name of the one chunk
        stored, and removing any of them removes that chunk: after the write it would be
        the chunk just written. Inode numbers cannot tell aliases from stale copies (the
        mount gives every name its own), but removing first is right either way: a stale
        copy goes, or the old chunk that is being replaced (a write that then fails leaves
        no chunk, as neuroglancer-scripts' truncating write leaves a cut one). ``target``
        goes first so that the kernel forgets that name too, and the write creates the file.
        """
        if not exclusive:  # an exclusive store has checked that no name is taken
            stale = [path for path in others if self._is_file(path)]
            if stale:
                for path in (target, *stale):
                    self._remove(path, what)
        self._write(target, data, exclusive, what)

    def _write(self, path: str, data: bytes, exclusive: bool, what: str) -> None:
        try:
            parent = posixpath.dirname(path)
            if parent:
                self.fs.makedirs(parent, exist_ok=True)
            with self.fs.open(path, "xb" if exclusive else "wb") as f:
                f.write(data)
        except OSError as e:
            raise DataAccessError(f"Error storing {what} in {self._where()}: {e}") from e

    def _remove(self, path: str, what: str) -> None:
        try:
            self.fs.rm_file(path)
        except _MISSING:
            pass
        except OSError as e:
            raise DataAccessError(f"Error removing a stale copy of {what} in {self._where()}: {e}") from e


def _decompress(data: bytes, what: str) -> bytes:
    try:
        return _gzip.decompress(data)
    except _CORRUPT as e:
        raise DataAccessError(f"Error decompressing {what}: {e}") from e


def _open_base(base: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str, str]:
    """The filesystem and root of ``base``: a copick config's union when ``base`` is or goes
    through a copick config file, else fsspec's filesystem; and, when a regular file on
    the way is no config, why not (for the errors of its later uses)."""
    not_config = ""
    if "://" not in base:
        found = _config_prefix(base)
        if found is not None:
            config_path, inner = found
            from ..config import ConfigError, load_config
            from ..union import UnionFileSystem

            try:
                config = load_config(config_path)
            except ConfigError as e:
                not_config = f"not a copick config: {e}"
            else:
                union = UnionFileSystem(config.overlay_root, config.static_root,
                                        overlay_options=config.overlay_fs_args,
                                        static_options=config.static_fs_args)
                return union, union._strip_protocol(inner), ""
    fs, root = fsspec.core.url_to_fs(base, **storage_options)
    return fs, root, not_config


def _config_prefix(base: str) -> tuple[str, str] | None:
    """(config file, path inside the union) when ``base`` is or goes through a regular file."""
    head, inner = os.path.abspath(base), ""
    while True:
        if os.path.isfile(head):
            return head, inner
        if os.path.isdir(head):
            return None
        parent, name = os.path.split(head)
        if parent == head:
            return None
        head, inner = parent, posixpath.join(name, inner) if inner else name
