"""Running the FUSE loop, starting it in the background, and unmounting."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..config import CopickConfig
from ..options import MountOptions
from ..precomputed import PrecomputedView
from ..union import UnionFileSystem
from .mountinfo import is_mounted
from .preflight import MountError

log = logging.getLogger("copickfs.mount")

READY_TIMEOUT = 30.0
READDIR_PLUS = 1  # enum fuse_readdir_flags
FILL_DIR_PLUS = 2  # enum fuse_fill_dir_flags


def union_from_config(config: CopickConfig) -> UnionFileSystem:
    return UnionFileSystem(
        config.overlay_root,
        config.static_root,
        overlay_options=config.overlay_fs_args,
        static_options=config.static_fs_args,
    )


def run_foreground(config: CopickConfig, mountpoint: str, options: MountOptions) -> None:
    """Serve the mount until it is unmounted or the process gets SIGINT/SIGTERM."""
    from . import fuselib

    mfusepy = fuselib.load_mfusepy()
    from .operations import UnionOperations

    class _FUSE(mfusepy.FUSE):  # type: ignore[misc, name-defined]
        """mfusepy gaps: rename(2) flags are dropped (RENAME_NOREPLACE must not replace),
        the open handle of truncate/chmod/chown/utimens is dropped (the writeback cache
        names open files that way), and read_buf/write_buf cannot take the null path that
        libfuse sends for open handles with ``nullpath_ok``."""

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

    _configure_logging(options)
    os.umask(0)  # the kernel applied the caller's umask already
    union = union_from_config(config)
    source = PrecomputedView(union, options.precomputed_layout) if options.precomputed else union
    operations = UnionOperations(source, options, mountpoint)
    fuse_options: dict[str, Any] = {
        "fsname": f"copickfs:{config.overlay_root}",
        "subtype": "copickfs",
        "default_permissions": True,
    }
    if options.allow_other:
        fuse_options["allow_other"] = True
    if options.ro:
        fuse_options["ro"] = True
    try:
        _FUSE(operations, mountpoint, raw_fi=True, foreground=True, nothreads=not options.threads,
              debug=options.debug, **fuse_options)
    except RuntimeError as e:
        # libfuse3's fuse_main returns 8 when its loop ends with an error, and its own
        # SIGINT/SIGTERM/SIGHUP handler records the signal as that error. It has unmounted
        # by then, so a stop by signal is a clean stop, not a failure.
        if e.args != (8,):
            raise
        log.debug("the FUSE loop ended on a signal; %s is unmounted", mountpoint)


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


def _configure_logging(options: MountOptions) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if options.log:
        handlers.append(logging.FileHandler(options.log))
    logging.basicConfig(level=logging.DEBUG if options.debug else logging.WARNING,
                        format="copickfs[%(process)d] %(levelname)s %(message)s", handlers=handlers, force=True)


def start_background(argv: list[str], mountpoint: str, timeout: float = READY_TIMEOUT) -> int:
    """Start ``copickfs mount -f ...`` detached and return its PID once the mount answers.

    If the daemon exits first, its last error line becomes the `MountError`.
    """
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "copickfs", *argv], stdin=subprocess.DEVNULL,
                            stdout=output, stderr=output, start_new_session=True, cwd="/")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output.seek(0)
            lines = [ln for ln in output.read().decode(errors="replace").splitlines() if ln.strip()]
            raise MountError(lines[-1].removeprefix("Error: ") if lines else
                             f"the mount daemon exited with status {proc.returncode}")
        if is_mounted(mountpoint) and _answers(mountpoint):
            return proc.pid
        time.sleep(0.02)
    proc.terminate()
    unmount(mountpoint, quiet=True)
    raise MountError(f"the mount at {mountpoint} did not answer within {timeout:.0f} s")


def _answers(mountpoint: str) -> bool:
    try:
        os.stat(mountpoint)
        return True
    except OSError:
        return False


def unmount(mountpoint: str, quiet: bool = False) -> None:
    """Unmount, also clearing a mount whose daemon died ("Transport endpoint is not connected")."""
    path = os.path.abspath(mountpoint)
    if not is_mounted(path):
        if quiet:
            return
        raise MountError(f"{mountpoint} is not mounted")
    fusermount = shutil.which("fusermount3") or "fusermount3"
    result = subprocess.run([fusermount, "-u", path], capture_output=True, text=True)
    if result.returncode == 0:
        return
    if "not connected" in result.stderr or not _answers(path):
        lazy = subprocess.run([fusermount, "-uz", path], capture_output=True, text=True)
        if lazy.returncode == 0:
            return
        result = lazy
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
    raise MountError(f"cannot unmount {mountpoint}: {message.removeprefix('fusermount3: ')}")
