"""The union semantics through a real FUSE mount: what the mount shows, what lands in the
overlay (whiteouts, opaque markers), and the errno of every failure.

The static tree is conftest.build_static's; the `roots` fixture checks after every test
that it is unchanged byte for byte.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat as S
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mounting import mounted

STATIC_MTIME_NS = 1_600_000_000_000_000_000
WH = ".wh."
OPQ = ".wh..wh..opq"
USER = 1000  # an ordinary user on this machine (any uid works: it needs no passwd entry)


def fails_with(code: int, call, *args, **kwargs) -> None:
    with pytest.raises(OSError) as e:
        call(*args, **kwargs)
    assert e.value.errno == code, f"{call.__name__}{args}: {e.value!r}, expected {errno.errorcode[code]}"


def no_markers(names) -> bool:
    return not any(str(n).startswith(WH) for n in names)


# ---------------------------------------------------------------------------- lookup, readdir, read


def test_readdir_merges_and_hides_markers(roots, mnt: Path) -> None:
    # prepared in the overlay before the kernel has looked anything up
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / "a.txt").write_bytes(b"overlay a")
    (roots.overlay / "dir" / "mine").mkdir()
    (roots.overlay / "dir" / (WH + "exec.sh")).touch()
    (roots.overlay / "empty").write_bytes(b"a file now")
    assert sorted(os.listdir(mnt)) == ["dir", "empty", "file.txt", "link"]
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "mine", "sub"]
    with os.scandir(mnt) as entries:
        kinds = {e.name: (e.is_dir(follow_symlinks=False), e.is_symlink()) for e in entries}
    assert kinds["empty"] == (False, False)  # the overlay's type wins
    assert kinds["dir"] == (True, False)
    assert kinds["link"] == (False, True)
    assert (mnt / "dir" / "a.txt").read_bytes() == b"overlay a"  # read from the winning layer
    assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == (roots.static / "dir/sub/deep.bin").read_bytes()
    assert (mnt / "empty").read_bytes() == b"a file now"
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / "exec.sh")  # whited out
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / (WH + "exec.sh"))  # markers are never found


def test_opaque_dir_hides_static_below(roots, mnt: Path) -> None:
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / OPQ).touch()
    (roots.overlay / "dir" / "mine.txt").write_bytes(b"m")
    assert os.listdir(mnt / "dir") == ["mine.txt"]
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / "a.txt")
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / OPQ)


def test_statfs_and_root(roots, mnt: Path) -> None:
    st = os.statvfs(mnt)
    assert st.f_bsize > 0 and st.f_namemax == 255
    assert st.f_blocks == os.statvfs(roots.overlay).f_blocks
    assert S.S_ISDIR(os.stat(mnt).st_mode)


# ---------------------------------------------------------------------------- create, mkdir


def test_create_and_mkdir_land_in_overlay(roots, mnt: Path) -> None:
    (mnt / "dir" / "sub" / "new.txt").write_bytes(b"new")
    (mnt / "dir" / "sub" / "newdir").mkdir()
    assert (roots.overlay / "dir" / "sub" / "new.txt").read_bytes() == b"new"
    assert (roots.overlay / "dir" / "sub" / "newdir").is_dir()
    assert sorted(os.listdir(mnt / "dir" / "sub")) == ["deep.bin", "new.txt", "newdir"]
    # parents were copied up with static's mode
    static_mode = S.S_IMODE(os.stat(roots.static / "dir").st_mode)
    assert S.S_IMODE(os.stat(roots.overlay / "dir").st_mode) == static_mode
    assert not (roots.overlay / "dir" / "sub" / "newdir" / OPQ).exists()


def test_create_mode_is_exact(roots, mnt: Path) -> None:
    old = os.umask(0o022)
    try:
        fd = os.open(mnt / "m.txt", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640)
        os.close(fd)
        os.mkdir(mnt / "m.d", 0o751)
    finally:
        os.umask(old)
    assert S.S_IMODE(os.stat(mnt / "m.txt").st_mode) == 0o640
    assert S.S_IMODE(os.stat(roots.overlay / "m.txt").st_mode) == 0o640
    assert S.S_IMODE(os.stat(mnt / "m.d").st_mode) == 0o751 & ~0o022


def test_eexist(roots, mnt: Path) -> None:
    fails_with(errno.EEXIST, os.mkdir, mnt / "dir")
    fails_with(errno.EEXIST, os.mkdir, mnt / "file.txt")
    fails_with(errno.EEXIST, os.open, mnt / "file.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    fails_with(errno.EEXIST, os.symlink, "x", mnt / "link")
    assert os.listdir(roots.overlay) == []


def test_enoent(roots, mnt: Path) -> None:
    fails_with(errno.ENOENT, os.stat, mnt / "nothing")
    fails_with(errno.ENOENT, open, mnt / "nothing", "rb")
    fails_with(errno.ENOENT, open, mnt / "nowhere" / "x", "wb")
    fails_with(errno.ENOENT, os.mkdir, mnt / "nowhere" / "x")
    fails_with(errno.ENOENT, os.unlink, mnt / "nothing")
    fails_with(errno.ENOENT, os.rmdir, mnt / "nothing")
    fails_with(errno.ENOENT, os.rename, mnt / "nothing", mnt / "x")
    fails_with(errno.ENOENT, os.readlink, mnt / "nothing")
    assert os.listdir(roots.overlay) == []


def test_eisdir(roots, mnt: Path) -> None:
    fails_with(errno.EISDIR, open, mnt / "dir", "wb")
    fails_with(errno.EISDIR, os.open, mnt / "empty", os.O_RDWR)
    fails_with(errno.EISDIR, os.unlink, mnt / "dir")
    (mnt / "f").write_bytes(b"f")
    fails_with(errno.EISDIR, os.rename, mnt / "f", mnt / "empty")
    assert (mnt / "f").read_bytes() == b"f"
    assert not (roots.overlay / "dir").exists()


def test_enotdir(roots, mnt: Path) -> None:
    fails_with(errno.ENOTDIR, os.listdir, mnt / "file.txt")
    fails_with(errno.ENOTDIR, os.rmdir, mnt / "file.txt")
    fails_with(errno.ENOTDIR, os.stat, mnt / "file.txt" / "x")
    fails_with(errno.ENOTDIR, open, mnt / "file.txt" / "x", "wb")
    os.mkdir(mnt / "mine")
    fails_with(errno.ENOTDIR, os.rename, mnt / "mine", mnt / "file.txt")
    assert (mnt / "file.txt").read_bytes() == b"static file\n"


def test_eperm_for_reserved_names(roots, mnt: Path) -> None:
    for where in (mnt, mnt / "dir"):
        fails_with(errno.EPERM, open, where / ".wh.x", "wb")
        fails_with(errno.EPERM, os.mkdir, where / ".wh.d")
        fails_with(errno.EPERM, os.mkdir, where / OPQ)
        fails_with(errno.EPERM, os.symlink, "file.txt", where / ".wh.l")
        fails_with(errno.EPERM, os.rename, mnt / "file.txt", where / ".wh.file.txt")
    assert (mnt / "file.txt").read_bytes() == b"static file\n"
    assert no_markers(os.listdir(roots.overlay))
    assert not (roots.overlay / "dir").exists() or no_markers(os.listdir(roots.overlay / "dir"))


# ---------------------------------------------------------------------------- copy-up


def test_write_static_file_copies_up(roots, mnt: Path) -> None:
    with open(mnt / "dir" / "exec.sh", "r+b") as f:
        f.write(b"#!/bin/ba")
    assert (mnt / "dir" / "exec.sh").read_bytes() == b"#!/bin/ba\necho hi\n"
    up = os.stat(roots.overlay / "dir" / "exec.sh")
    assert S.S_IMODE(up.st_mode) == 0o755  # mode kept
    assert (roots.overlay / "dir" / "exec.sh").read_bytes() == b"#!/bin/ba\necho hi\n"
    assert (roots.static / "dir" / "exec.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(mnt / "dir" / "exec.sh", os.X_OK)


def test_append_to_large_static_file(roots, mnt: Path) -> None:
    with open(mnt / "dir" / "sub" / "deep.bin", "ab") as f:
        f.write(b"TAIL")
    expected = (roots.static / "dir/sub/deep.bin").read_bytes() + b"TAIL"
    assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == expected
    assert (roots.overlay / "dir" / "sub" / "deep.bin").read_bytes() == expected


def test_o_trunc_and_truncate(roots, mnt: Path) -> None:
    with open(mnt / "file.txt", "wb") as f:  # O_TRUNC
        f.write(b"new")
    assert (mnt / "file.txt").read_bytes() == b"new"
    assert (roots.overlay / "file.txt").read_bytes() == b"new"
    os.truncate(mnt / "dir" / "a.txt", 10)
    assert (mnt / "dir" / "a.txt").read_bytes() == b"a" * 10
    assert os.stat(mnt / "dir" / "a.txt").st_size == 10
    assert (roots.overlay / "dir" / "a.txt").read_bytes() == b"a" * 10
    os.truncate(mnt / "dir" / "exec.sh", 0)
    assert os.stat(roots.overlay / "dir" / "exec.sh").st_size == 0
    assert S.S_IMODE(os.stat(roots.overlay / "dir" / "exec.sh").st_mode) == 0o755


def test_ftruncate_and_fstat_on_open_fd(roots, mnt: Path) -> None:
    fd = os.open(mnt / "dir" / "a.txt", os.O_RDWR)
    try:
        assert os.fstat(fd).st_size == 100
        os.ftruncate(fd, 7)
        assert os.fstat(fd).st_size == 7
        os.pwrite(fd, b"XYZ", 7)
        assert os.fstat(fd).st_size == 10
        assert os.pread(fd, 100, 0) == b"a" * 7 + b"XYZ"
        assert os.fstat(fd).st_ino == os.stat(mnt / "dir" / "a.txt").st_ino
    finally:
        os.close(fd)
    assert (roots.overlay / "dir" / "a.txt").read_bytes() == b"aaaaaaaXYZ"
    assert os.stat(mnt / "dir" / "a.txt").st_size == 10


def test_chmod_static_file_copies_up_static_keeps_mode(roots, mnt: Path) -> None:
    os.chmod(mnt / "file.txt", 0o600)
    assert S.S_IMODE(os.stat(mnt / "file.txt").st_mode) == 0o600
    up = os.stat(roots.overlay / "file.txt")
    assert S.S_IMODE(up.st_mode) == 0o600
    assert up.st_mtime_ns == STATIC_MTIME_NS  # mtime kept by the copy-up
    assert (roots.overlay / "file.txt").read_bytes() == b"static file\n"
    assert S.S_IMODE(os.stat(roots.static / "file.txt").st_mode) == 0o644


def test_utime_static_file(roots, mnt: Path) -> None:
    assert os.stat(mnt / "file.txt").st_mtime_ns == STATIC_MTIME_NS
    os.utime(mnt / "file.txt", ns=(3_000_000_000, 4_000_000_000))
    st = os.stat(mnt / "file.txt")
    assert st.st_mtime_ns == 4_000_000_000 and st.st_atime_ns == 3_000_000_000
    assert os.stat(roots.overlay / "file.txt").st_mtime_ns == 4_000_000_000
    assert (roots.overlay / "file.txt").read_bytes() == b"static file\n"
    # utime(NULL): "now"
    os.utime(mnt / "dir" / "a.txt")
    shown, stored = os.stat(mnt / "dir" / "a.txt"), os.stat(roots.overlay / "dir" / "a.txt")
    assert abs(shown.st_mtime - stored.st_mtime) < 1
    assert os.stat(roots.overlay / "dir" / "a.txt").st_mtime_ns > STATIC_MTIME_NS


def test_touch_one_time_keeps_the_other(roots, mnt: Path) -> None:
    atime = os.stat(mnt / "file.txt").st_atime_ns
    result = subprocess.run(["touch", "-m", "-d", "@5", str(mnt / "file.txt")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    st = os.stat(mnt / "file.txt")
    assert st.st_mtime_ns == 5_000_000_000
    assert st.st_atime_ns == atime  # UTIME_OMIT: untouched
    result = subprocess.run(["touch", "-a", "-d", "@7", str(mnt / "dir" / "a.txt")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    st = os.stat(mnt / "dir" / "a.txt")
    assert st.st_atime_ns == 7_000_000_000
    assert st.st_mtime_ns == os.stat(roots.static / "dir" / "a.txt").st_mtime_ns


def test_chown_copies_up(roots, mnt: Path) -> None:
    os.chown(mnt / "dir" / "a.txt", USER, USER)
    assert (os.stat(mnt / "dir" / "a.txt").st_uid, os.stat(mnt / "dir" / "a.txt").st_gid) == (USER, USER)
    assert os.stat(roots.overlay / "dir" / "a.txt").st_uid == USER
    os.chown(mnt / "dir" / "a.txt", -1, 5)  # -1 keeps the owner
    assert (os.stat(mnt / "dir" / "a.txt").st_uid, os.stat(mnt / "dir" / "a.txt").st_gid) == (USER, 5)
    assert os.stat(roots.static / "dir" / "a.txt").st_uid == 0


def test_rewrite_after_cached_read(roots, mnt: Path) -> None:
    data = (mnt / "dir" / "sub" / "deep.bin").read_bytes()  # static: kept in the page cache
    reader = open(mnt / "dir" / "sub" / "deep.bin", "rb")
    try:
        with open(mnt / "dir" / "sub" / "deep.bin", "r+b") as f:
            f.seek(200_000)
            f.write(b"HEAD")
        expected = data[:200_000] + b"HEAD" + data[200_004:]
        assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == expected
        assert (roots.overlay / "dir" / "sub" / "deep.bin").read_bytes() == expected
        with open(mnt / "dir" / "sub" / "deep.bin", "wb") as f:
            f.write(b"short")
        assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == b"short"
        assert os.stat(mnt / "dir" / "sub" / "deep.bin").st_size == 5
    finally:
        reader.close()


def test_reading_copies_nothing(roots, mnt: Path) -> None:
    for rel in ("file.txt", "dir/a.txt", "dir/sub/deep.bin", "link"):
        (mnt / rel).read_bytes()
        os.stat(mnt / rel)
    os.listdir(mnt / "dir" / "sub")
    assert os.listdir(roots.overlay) == []


# ---------------------------------------------------------------------------- unlink, rmdir


def test_unlink_writes_whiteout(roots, mnt: Path) -> None:
    os.unlink(mnt / "dir" / "a.txt")
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / "a.txt")
    assert "a.txt" not in os.listdir(mnt / "dir")
    assert (roots.overlay / "dir" / (WH + "a.txt")).is_file()
    (mnt / "own.txt").write_bytes(b"o")
    os.unlink(mnt / "own.txt")
    assert os.listdir(roots.overlay) == ["dir"]  # no whiteout for an overlay-only file
    os.unlink(mnt / "link")
    assert (roots.overlay / (WH + "link")).exists()
    # a new file over the whiteout
    (mnt / "dir" / "a.txt").write_bytes(b"back")
    assert (mnt / "dir" / "a.txt").read_bytes() == b"back"
    assert not (roots.overlay / "dir" / (WH + "a.txt")).exists()


def test_unlink_while_open_keeps_fd_readable(roots, mnt: Path) -> None:
    with open(mnt / "file.txt", "rb") as static_f, open(mnt / "mine.txt", "w+b") as own_f:
        own_f.write(b"my data")
        own_f.flush()
        os.unlink(mnt / "file.txt")
        os.unlink(mnt / "mine.txt")
        assert not (mnt / "file.txt").exists() and not (mnt / "mine.txt").exists()
        assert static_f.read() == b"static file\n"
        own_f.seek(0)
        assert own_f.read() == b"my data"
        own_f.write(b" more")
        own_f.seek(0)
        assert own_f.read() == b"my data more"
        os.ftruncate(own_f.fileno(), 2)  # the handle, not the name, reaches the daemon
        own_f.seek(0)
        assert own_f.read() == b"my"
    assert sorted(os.listdir(roots.overlay)) == [WH + "file.txt"]
    assert sorted(os.listdir(mnt)) == ["dir", "empty", "link"]


def test_fstat_after_unlink(roots, mnt: Path) -> None:
    with open(mnt / "mine.txt", "w+b") as f:
        f.write(b"data")
        f.flush()
        os.unlink(mnt / "mine.txt")
        assert os.fstat(f.fileno()).st_size == 4
        os.ftruncate(f.fileno(), 2)
        os.utime(f.fileno(), ns=(5, 7))
        st = os.fstat(f.fileno())
        assert (st.st_size, st.st_mtime_ns, st.st_nlink) == (2, 7, 0)
    assert not (mnt / "mine.txt").exists()


def test_rmdir(roots, mnt: Path) -> None:
    fails_with(errno.ENOTEMPTY, os.rmdir, mnt / "dir")
    fails_with(errno.ENOTEMPTY, os.rmdir, mnt / "dir" / "sub")
    os.unlink(mnt / "dir" / "sub" / "deep.bin")
    os.rmdir(mnt / "dir" / "sub")  # merged-empty
    assert (roots.overlay / "dir" / (WH + "sub")).is_file()
    assert not (roots.overlay / "dir" / "sub").exists()
    os.rmdir(mnt / "empty")
    assert (roots.overlay / (WH + "empty")).is_file()
    os.mkdir(mnt / "mine")
    os.rmdir(mnt / "mine")
    assert not (roots.overlay / (WH + "mine")).exists()
    assert sorted(os.listdir(mnt)) == ["dir", "file.txt", "link"]
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh"]


def test_mkdir_over_whiteout_is_opaque(roots, mnt: Path) -> None:
    shutil.rmtree(mnt / "dir")
    assert not (mnt / "dir").exists()
    assert (roots.overlay / (WH + "dir")).is_file()
    os.mkdir(mnt / "dir")
    assert os.listdir(mnt / "dir") == []
    assert (roots.overlay / "dir" / OPQ).is_file()
    assert not (roots.overlay / (WH + "dir")).exists()
    fails_with(errno.ENOENT, os.stat, mnt / "dir" / "a.txt")
    (mnt / "dir" / "a.txt").write_bytes(b"fresh")
    assert os.listdir(mnt / "dir") == ["a.txt"]
    assert (mnt / "dir" / "a.txt").read_bytes() == b"fresh"


# ---------------------------------------------------------------------------- rename


def test_rename_static_file(roots, mnt: Path) -> None:
    os.rename(mnt / "file.txt", mnt / "dir" / "moved.txt")
    assert not (mnt / "file.txt").exists()
    assert (mnt / "dir" / "moved.txt").read_bytes() == b"static file\n"
    assert os.stat(mnt / "dir" / "moved.txt").st_mtime_ns == STATIC_MTIME_NS
    assert (roots.overlay / (WH + "file.txt")).is_file()
    assert (roots.overlay / "dir" / "moved.txt").read_bytes() == b"static file\n"
    assert "file.txt" not in os.listdir(mnt)


def test_rename_replaces_target(roots, mnt: Path) -> None:
    (mnt / "new.txt").write_bytes(b"replacement")
    os.replace(mnt / "new.txt", mnt / "dir" / "a.txt")
    assert (mnt / "dir" / "a.txt").read_bytes() == b"replacement"
    assert not (mnt / "new.txt").exists()
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "sub"]
    assert not (roots.overlay / (WH + "new.txt")).exists()
    # a reader holding the old target keeps reading the old content
    with open(mnt / "dir" / "exec.sh", "rb") as old:
        (mnt / "x").write_bytes(b"x")
        os.replace(mnt / "x", mnt / "dir" / "exec.sh")
        assert old.read() == b"#!/bin/sh\necho hi\n"
    assert (mnt / "dir" / "exec.sh").read_bytes() == b"x"


def test_rename_static_dir_is_exdev(roots, mnt: Path) -> None:
    fails_with(errno.EXDEV, os.rename, mnt / "dir", mnt / "dir2")
    fails_with(errno.EXDEV, os.rename, mnt / "dir" / "sub", mnt / "sub2")
    fails_with(errno.EXDEV, os.rename, mnt / "empty", mnt / "empty2")
    assert sorted(os.listdir(mnt)) == ["dir", "empty", "file.txt", "link"]
    # mv(1) then copies and deletes
    result = subprocess.run(["mv", str(mnt / "dir"), str(mnt / "dir2")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(mnt)) == ["dir2", "empty", "file.txt", "link"]
    deep = (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    assert (mnt / "dir2" / "sub" / "deep.bin").read_bytes() == deep
    assert os.access(mnt / "dir2" / "exec.sh", os.X_OK)
    assert (roots.overlay / (WH + "dir")).is_file()


def test_link_copies_up_and_shares_the_inode(roots, mnt: Path) -> None:
    os.link(mnt / "file.txt", mnt / "hard")
    a, b = os.stat(mnt / "file.txt"), os.stat(mnt / "hard")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    with open(mnt / "hard", "ab") as f:
        f.write(b"more")
    assert (mnt / "file.txt").read_bytes() == b"static file\nmore"
    (mnt / "own").write_bytes(b"o")
    os.link(mnt / "own", mnt / "own2")
    assert os.stat(roots.overlay / "own").st_ino == os.stat(roots.overlay / "own2").st_ino
    os.unlink(mnt / "own")
    assert os.stat(mnt / "own2").st_nlink == 1 and (mnt / "own2").read_bytes() == b"o"
    fails_with(errno.EEXIST, os.link, mnt / "own2", mnt / "file.txt")
    fails_with(errno.EPERM, os.link, mnt / "dir", mnt / "dirlink")


def test_rename_overlay_only_dir(roots, mnt: Path) -> None:
    (mnt / "mine" / "inner").mkdir(parents=True)
    (mnt / "mine" / "inner" / "f").write_bytes(b"1")
    os.rename(mnt / "mine", mnt / "dir" / "yours")
    assert (mnt / "dir" / "yours" / "inner" / "f").read_bytes() == b"1"
    assert not (mnt / "mine").exists()
    assert (roots.overlay / "dir" / "yours" / "inner" / "f").is_file()
    assert not (roots.overlay / "dir" / "yours" / OPQ).exists()
    # onto static's empty dir: replaced, and opaque so nothing of static shows again
    os.rename(mnt / "dir" / "yours", mnt / "empty")
    assert os.listdir(mnt / "empty") == ["inner"]
    assert (roots.overlay / "empty" / OPQ).is_file()


def test_rename_overlay_dir_onto_non_empty_dir(roots, mnt: Path) -> None:
    os.mkdir(mnt / "mine")
    fails_with(errno.ENOTEMPTY, os.rename, mnt / "mine", mnt / "dir")
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "sub"]


def test_rename_dir_into_itself_is_einval(roots, mnt: Path) -> None:
    (mnt / "mine" / "sub").mkdir(parents=True)
    fails_with(errno.EINVAL, os.rename, mnt / "mine", mnt / "mine" / "sub" / "x")
    assert (mnt / "mine" / "sub").is_dir()


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("this C library has no renameat2()")
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(dst))


def test_rename_noreplace_does_not_replace(roots, mnt: Path) -> None:
    RENAME_NOREPLACE = 1
    (mnt / "new.txt").write_bytes(b"new")
    fails_with(errno.EEXIST, _renameat2, mnt / "new.txt", mnt / "file.txt", RENAME_NOREPLACE)
    fails_with(errno.EEXIST, _renameat2, mnt / "new.txt", mnt / "dir" / "a.txt", RENAME_NOREPLACE)
    assert (mnt / "file.txt").read_bytes() == b"static file\n"
    assert (mnt / "new.txt").read_bytes() == b"new"
    subprocess.run(["mv", "-n", str(mnt / "new.txt"), str(mnt / "file.txt")], capture_output=True)
    assert (mnt / "file.txt").read_bytes() == b"static file\n"
    _renameat2(mnt / "new.txt", mnt / "free.txt", RENAME_NOREPLACE)
    assert (mnt / "free.txt").read_bytes() == b"new"
    assert not (roots.overlay / "file.txt").exists()
    # The kernel revalidates a rename target and refuses NOREPLACE itself when the target
    # exists, so the daemon's own check is covered by test_union. That rename(2) flags reach
    # the daemon at all shows here: RENAME_EXCHANGE is refused there (were the flags dropped
    # on the way, it would become a plain rename that replaces file.txt).
    fails_with(errno.EINVAL, _renameat2, mnt / "free.txt", mnt / "file.txt", 2)
    assert (mnt / "file.txt").read_bytes() == b"static file\n"


# ---------------------------------------------------------------------------- symlinks


def test_symlink_and_readlink(roots, mnt: Path) -> None:
    assert os.readlink(mnt / "link") == "file.txt"
    assert (mnt / "link").read_bytes() == b"static file\n"
    os.symlink("dir/a.txt", mnt / "ln2")
    assert os.readlink(mnt / "ln2") == "dir/a.txt"
    assert S.S_ISLNK(os.lstat(mnt / "ln2").st_mode)
    assert (mnt / "ln2").read_bytes() == b"a" * 100
    assert os.readlink(roots.overlay / "ln2") == "dir/a.txt"
    fails_with(errno.EINVAL, os.readlink, mnt / "file.txt")
    os.unlink(mnt / "ln2")
    assert not os.path.lexists(roots.overlay / "ln2")


# ---------------------------------------------------------------------------- inode numbers


def test_inode_numbers_are_stable(roots, mnt: Path) -> None:
    before = os.stat(mnt / "file.txt").st_ino
    other = os.stat(mnt / "dir" / "a.txt").st_ino
    assert before != other and before != os.stat(mnt / "dir").st_ino
    os.chmod(mnt / "file.txt", 0o600)  # copy-up
    assert (roots.overlay / "file.txt").exists()
    assert os.stat(mnt / "file.txt").st_ino == before
    with open(mnt / "dir" / "a.txt", "ab") as f:  # copy-up by a write
        f.write(b"!")
        assert os.fstat(f.fileno()).st_ino == other
    assert os.stat(mnt / "dir" / "a.txt").st_ino == other
    os.rename(mnt / "file.txt", mnt / "renamed.txt")
    assert os.stat(mnt / "renamed.txt").st_ino == before
    assert [e.inode() for e in os.scandir(mnt) if e.name == "renamed.txt"] == [before]
    # a directory's number, and those below it, follow a rename
    (mnt / "mine").mkdir()
    (mnt / "mine" / "f").write_bytes(b"f")
    d, f = os.stat(mnt / "mine").st_ino, os.stat(mnt / "mine" / "f").st_ino
    os.rename(mnt / "mine", mnt / "yours")
    assert os.stat(mnt / "yours").st_ino == d
    assert os.stat(mnt / "yours" / "f").st_ino == f


# ---------------------------------------------------------------------------- ownership


@pytest.fixture
def shared_mnt(roots) -> Iterator[Path]:
    """A mount other users may enter (allow_other), since new files must belong to them."""
    with mounted(roots.config, roots.mountpoint, "allow_other"):
        yield roots.mountpoint


def as_user(cwd: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run a shell script as USER in ``cwd`` (entered as root: the tmp dirs above are private)."""
    return subprocess.run(["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups",
                           "sh", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_new_files_belong_to_the_caller(roots, shared_mnt: Path) -> None:
    mnt = shared_mnt
    os.mkdir(mnt / "shared")
    os.chmod(mnt / "shared", 0o777)
    assert S.S_IMODE(os.stat(roots.overlay / "shared").st_mode) == 0o777
    result = as_user(mnt / "shared", "echo hi > f && mkdir d && ln -s f l && id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(USER)
    for name in ("f", "d", "l"):
        through_mount = os.lstat(mnt / "shared" / name)
        in_overlay = os.lstat(roots.overlay / "shared" / name)
        assert (through_mount.st_uid, through_mount.st_gid) == (USER, USER), name
        assert (in_overlay.st_uid, in_overlay.st_gid) == (USER, USER), name
    assert (mnt / "shared" / "f").read_text() == "hi\n"
    # the daemon's own (root) files stay root's, and so does the shared dir
    assert os.stat(mnt / "shared").st_uid == 0
    # permissions are enforced for that user: static's root-owned 0755 dir is not theirs
    denied = as_user(mnt / "dir", "touch x")
    assert denied.returncode != 0 and "ermission denied" in denied.stderr
    assert not (roots.overlay / "dir" / "x").exists()
    # ...and they may read static files
    readable = as_user(mnt / "dir", "cat a.txt")
    assert readable.returncode == 0 and readable.stdout == "a" * 100
