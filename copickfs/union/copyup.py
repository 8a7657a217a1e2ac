"""Copy an entry from one layer to another: streamed, mode, owner and times kept.

A file is copied into a private temporary file (0600, created with ``O_EXCL`` in the
destination's work area) that gets its owner, mode and times and then its name only
when complete: no other user can open it meanwhile, and a reader of the union never
sees a half-copied file. A failed copy leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as S

from .layers import Layer
from .stat import Stat

CHUNK = 1 << 20


def copy_entry(src: Layer, dst: Layer, path: str, st: Stat, with_data: bool = True) -> None:
    """Make ``dst`` hold a copy of ``src``'s ``path`` (whose stat is ``st``).

    ``with_data=False`` (an ``O_TRUNC`` open) makes an empty file with the same attributes.
    """
    if st.is_dir:
        try:
            dst.mkdir(path, 0o700)
        except FileExistsError:
            return  # another thread copied it up first
        copy_attributes(dst, path, st)
    elif st.is_link:
        dst.symlink(src.readlink(path), path)
    elif st.is_file:
        _copy_file(src, dst, path, st, with_data)
    else:  # FIFOs, sockets, device nodes: no data to copy
        dst.mknod(path, st.mode, st.rdev)
        copy_attributes(dst, path, st)


def _copy_file(src: Layer, dst: Layer, path: str, st: Stat, with_data: bool) -> None:
    temp = dst.temp_path(path)
    try:
        out = dst.create(temp, 0o600, os.O_WRONLY)
        if out is None:  # object stores: no descriptors; the temp object is ours alone
            if with_data:
                with src.open(path, "rb") as fin, dst.open(temp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
            copy_attributes(dst, temp, st)
        else:
            try:
                if with_data:
                    _copy_into(src, path, out)
                _fd_attributes(out, st)
            finally:
                os.close(out)
        dst.rename(temp, path)
    except BaseException:
        try:
            dst.remove(temp)
        except OSError:
            pass
        raise


def _copy_into(src: Layer, path: str, out: int) -> None:
    source = src.open_fd(path, os.O_RDONLY)
    if source is None:
        with src.open(path, "rb") as fin:
            while chunk := fin.read(CHUNK):
                os.write(out, chunk)
        return
    try:
        _copy_fd(source, out)
    finally:
        os.close(source)


def _fd_attributes(fd: int, st: Stat) -> None:
    """Owner, mode and times on the descriptor of our own temporary file (never by name)."""
    if os.geteuid() == 0:
        os.fchown(fd, st.uid, st.gid)
    os.fchmod(fd, S.S_IMODE(st.mode))
    os.utime(fd, ns=(st.atime_ns, st.mtime_ns))


def _copy_fd(source: int, out: int) -> None:
    """All of ``source`` into ``out`` in the kernel (copy_file_range, else sendfile)."""
    try:
        while os.copy_file_range(source, out, CHUNK * 64):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    offset = os.lseek(out, 0, os.SEEK_CUR)
    os.lseek(source, offset, os.SEEK_SET)
    while os.sendfile(out, source, None, CHUNK * 64):
        pass


def copy_attributes(dst: Layer, path: str, st: Stat) -> None:
    """Owner, then mode (chown clears set-id bits), then times, as far as ``dst`` keeps
    them and we may set them."""
    for apply in (
        lambda: dst.chown(path, st.uid, st.gid) if os.geteuid() == 0 else None,
        lambda: dst.chmod(path, st.mode),
        lambda: dst.utime(path, st.atime_ns, st.mtime_ns),
    ):
        try:
            apply()
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
