"""Copy an entry from one layer to another: streamed, mode, owner and times kept."""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import uuid

from . import markers
from .layers import Layer
from .stat import Stat

CHUNK = 1 << 20


def copy_entry(src: Layer, dst: Layer, path: str, st: Stat, with_data: bool = True) -> None:
    """Make ``dst`` hold a copy of ``src``'s ``path`` (whose stat is ``st``).

    Files are written under a temporary marker name and renamed into place, so a
    reader never sees a half-copied file and a failed copy leaves nothing behind.
    ``with_data=False`` (an ``O_TRUNC`` open) makes an empty file with the same attributes.
    """
    if st.is_dir:
        try:
            dst.mkdir(path, 0o700)
        except FileExistsError:
            return  # another thread copied it up first
    elif st.is_link:
        dst.symlink(src.readlink(path), path)
        return
    else:
        _copy_file(src, dst, path, with_data)
        return
    copy_attributes(dst, path, st)


def _copy_file(src: Layer, dst: Layer, path: str, with_data: bool) -> None:
    parent, name = posixpath.split(path)
    temp = posixpath.join(parent, f"{markers.TEMP_PREFIX}{uuid.uuid4().hex}")
    try:
        src_real, dst_real = src.os_path(path), dst.os_path(temp)
        if not with_data:
            dst.touch(temp)
        elif src_real is not None and dst_real is not None:
            shutil.copyfile(src_real, dst_real)  # sendfile(2) in the kernel
        else:
            with src.open(path, "rb") as fin, dst.open(temp, "wb") as fout:
                shutil.copyfileobj(fin, fout, CHUNK)
        st = src.stat(path)
        if st is not None:
            copy_attributes(dst, temp, st)
        dst.rename(temp, path)
    except BaseException:
        try:
            dst.remove(temp)
        except OSError:
            pass
        raise


def copy_attributes(dst: Layer, path: str, st: Stat) -> None:
    """Mode, owner and times, as far as ``dst`` keeps them and we may set them."""
    for apply in (
        lambda: dst.chmod(path, st.mode),
        lambda: dst.chown(path, st.uid, st.gid) if os.geteuid() == 0 else None,
        lambda: dst.utime(path, st.atime_ns, st.mtime_ns),
    ):
        try:
            apply()
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise
