"""mfusepy's FUSE class with the gaps copickfs needs closed.

mfusepy drops rename(2) flags (RENAME_NOREPLACE must not replace) and the open handle of
truncate/chmod/chown/utimens (the writeback cache names open files that way); its
read_buf/write_buf cannot take the null path libfuse sends with ``nullpath_ok``; and it
never answers READDIRPLUS with attributes. Each override passes the request on unchanged
otherwise.
"""

from __future__ import annotations

from typing import Any

from . import fuselib

mfusepy = fuselib.load_mfusepy()

READDIR_PLUS = 1  # enum fuse_readdir_flags
FILL_DIR_PLUS = 2  # enum fuse_fill_dir_flags


class FuseAdapter(mfusepy.FUSE):  # type: ignore[misc, name-defined]
    """Pass requests on as mfusepy does, with the handles, flags and attributes it drops."""

    def _decode(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
        return self.operations.rename(self._decode(old), self._decode(new), flags)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.operations.truncate(self._decode(path), length, fip.contents if fip else None)

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self.operations.chmod(self._decode(path), mode, fip.contents if fip else None)

    def chown_fuse_3(self, path: bytes | None, uid: int, gid: int, fip: Any) -> int:
        uid = -1 if uid == 0xFFFFFFFF else uid
        gid = -1 if gid == 0xFFFFFFFF else gid
        return self.operations.chown(self._decode(path), uid, gid, fip.contents if fip else None)

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        times = None
        if buf:
            times = tuple(ts.tv_sec * 10**9 + ts.tv_nsec for ts in (buf.contents.actime, buf.contents.modtime))
        return self.operations.utimens(self._decode(path), times, fip.contents if fip else None)

    def read_buf(self, path: bytes | None, bufpp: Any, size: int, offset: int, fip: Any) -> int:
        return self.operations.read_buf(self._decode(path), bufpp, size, offset, fip.contents)

    def write_buf(self, path: bytes | None, buf: Any, offset: int, fip: Any) -> int:
        return self.operations.write_buf(self._decode(path), buf, offset, fip.contents)

    def readdir_fuse_3(self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any,
                       flags: int) -> int:
        """mfusepy never answers READDIRPLUS with attributes; hand libfuse full stats.

        Entries carry offsets: libfuse 3.14 only links READDIRPLUS entries into the
        kernel's cache in its offset mode. A plain READDIR (`find`) carries only type
        and inode, filled in one tight loop.
        """
        st = mfusepy.c_stat()
        if not flags & READDIR_PLUS:
            for name, mode, ino in self.operations.readdir(self._decode(path), fip.contents.fh):
                st.st_mode, st.st_ino = mode, ino
                if filler(buf, name.encode(self.encoding, self.errors), st, 0, 0):
                    break
            return 0
        for index, name, attrs in self.operations.readdir_plus(self._decode(path), fip.contents.fh, offset):
            _fill_stat(st, attrs)
            if filler(buf, name.encode(self.encoding, self.errors), st, index + 1, FILL_DIR_PLUS):
                break
        return 0


def _fill_stat(st: Any, attrs: dict[str, Any]) -> None:
    """Copy the mount's attribute dict into a ``struct stat``: mfusepy's generic
    ``set_st_attrs`` costs several times more per entry of a large listing."""
    st.st_ino, st.st_mode, st.st_nlink = attrs["st_ino"], attrs["st_mode"], attrs.get("st_nlink", 1)
    st.st_uid, st.st_gid = attrs.get("st_uid", 0), attrs.get("st_gid", 0)
    st.st_size, st.st_blocks, st.st_blksize = attrs.get("st_size", 0), attrs.get("st_blocks", 0), attrs.get(
        "st_blksize", 0)
    for key in ("st_atime", "st_mtime", "st_ctime"):
        spec = getattr(st, key + "spec")
        spec.tv_sec, spec.tv_nsec = divmod(attrs.get(key, 0), 1_000_000_000)
