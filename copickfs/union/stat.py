"""The attributes a layer reports for one entry."""

from __future__ import annotations

import os
import stat as S
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Stat:
    """What `lstat` says of an entry, for any storage.

    Object stores fill in what they know (size, mtime) and a default mode.
    """

    mode: int
    size: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    #: The storage's identity of the entry (0 where it has none, or for made-up entries):
    #: hard links share it.
    dev: int = 0
    ino: int = 0
    rdev: int = 0

    @property
    def is_dir(self) -> bool:
        return S.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return S.S_ISREG(self.mode)

    @property
    def is_link(self) -> bool:
        return S.S_ISLNK(self.mode)

    @property
    def kind(self) -> str:
        """fsspec's spelling of the type."""
        if self.is_dir:
            return "directory"
        if self.is_link:
            return "link"
        return "file" if self.is_file else "other"

    @classmethod
    def from_os(cls, st: os.stat_result) -> Stat:
        return cls(
            mode=st.st_mode,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            atime_ns=st.st_atime_ns,
            ctime_ns=st.st_ctime_ns,
            uid=st.st_uid,
            gid=st.st_gid,
            nlink=st.st_nlink,
            dev=st.st_dev,
            ino=st.st_ino,
            rdev=st.st_rdev,
        )
