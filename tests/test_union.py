"""The union as a library (no mount): every row of the union semantics table, and fsspec use.

The static tree (see conftest.build_static):

    file.txt            b"static file\\n", mtime 1_600_000_000 s
    link -> file.txt
    empty/
    dir/a.txt           b"a" * 100
    dir/exec.sh         mode 0o755
    dir/sub/deep.bin    300 000 random bytes

The `roots` fixture checks after every test that this tree is unchanged byte for byte.
"""

from __future__ import annotations

import errno
import os
import stat as S
import uuid
from pathlib import Path

import fsspec
import pytest

from copickfs.union import FsspecLayer, LocalLayer, UnionFileSystem
from copickfs.union import copyup

STATIC_MTIME_NS = 1_600_000_000_000_000_000
WH = ".wh."
OPQ = ".wh..wh..opq"


def errno_of(excinfo: pytest.ExceptionInfo[OSError]) -> int | None:
    return excinfo.value.errno


def overlay_names(root: Path, rel: str = "") -> set[str]:
    return set(os.listdir(root / rel)) if (root / rel).is_dir() else set()


# ---------------------------------------------------------------------------- lookup


def test_lookup_overlay_wins_then_static(roots, union: UnionFileSystem) -> None:
    assert union.layer_of("file.txt") == "static"
    assert union.layer_of("dir/sub/deep.bin") == "static"
    assert union.layer_of("nothing") is None
    (roots.overlay / "file.txt").write_bytes(b"mine")
    assert union.layer_of("file.txt") == "overlay"
    assert union.cat("file.txt") == b"mine"
    assert union.info("file.txt")["size"] == 4


def test_lookup_whiteout_hides_static_name(roots, union: UnionFileSystem) -> None:
    (roots.overlay / (WH + "file.txt")).touch()
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / (WH + "sub")).touch()
    assert not union.exists("file.txt")
    assert union.lookup("file.txt") is None
    with pytest.raises(FileNotFoundError):
        union.info("file.txt")
    # a whited-out directory hides everything below it
    assert not union.exists("dir/sub")
    assert not union.exists("dir/sub/deep.bin")
    with pytest.raises(FileNotFoundError):
        union.cat("dir/sub/deep.bin")
    # siblings still show through
    assert union.exists("dir/a.txt")
    assert union.exists("link")


def test_lookup_opaque_dir_hides_static_below(roots, union: UnionFileSystem) -> None:
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / OPQ).touch()
    (roots.overlay / "dir" / "mine.txt").write_bytes(b"m")
    assert union.exists("dir")
    assert not union.exists("dir/a.txt")
    assert not union.exists("dir/sub/deep.bin")
    assert union.exists("dir/mine.txt")
    assert union.ls("dir", detail=False) == ["dir/mine.txt"]


def test_overlay_file_over_static_dir_hides_the_dir(roots, union: UnionFileSystem) -> None:
    (roots.overlay / "dir").write_bytes(b"now a file")
    assert union.info("dir")["type"] == "file"
    assert not union.exists("dir/a.txt")


def test_markers_are_never_found(roots, union: UnionFileSystem) -> None:
    (roots.overlay / (WH + "file.txt")).touch()
    (roots.overlay / OPQ).touch()
    (roots.overlay / ".wh..wh.tmp.123").touch()
    for name in (WH + "file.txt", OPQ, ".wh..wh.tmp.123", ".wh.nothing"):
        assert not union.exists(name)


# ---------------------------------------------------------------------------- readdir


def test_readdir_merges_names_once_and_overlay_type_wins(roots, union: UnionFileSystem) -> None:
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / "a.txt").write_bytes(b"overlay a")  # both layers
    (roots.overlay / "dir" / "mine").mkdir()  # overlay only
    (roots.overlay / "empty").write_bytes(b"file over a static dir")
    (roots.overlay / (WH + "file.txt")).touch()
    (roots.overlay / "dir" / ".wh..wh.tmp.abc").touch()

    root = union.listdir_types("")
    assert sorted(root) == ["dir", "empty", "link"]
    assert S.S_ISREG(root["empty"])  # the overlay's type wins
    assert S.S_ISDIR(root["dir"])
    assert S.S_ISLNK(root["link"])

    listed = union.ls("dir", detail=False)
    assert listed == ["dir/a.txt", "dir/exec.sh", "dir/mine", "dir/sub"]  # each name once
    assert union.names("dir") == {"a.txt": "overlay", "exec.sh": "static", "mine": "overlay", "sub": "static"}
    details = {d["name"]: d for d in union.ls("dir", detail=True)}
    assert details["dir/a.txt"]["size"] == len(b"overlay a")
    assert details["dir/mine"]["type"] == "directory"
    assert details["dir/sub"]["layer"] == "static"


def test_readdir_never_shows_markers(roots, union: UnionFileSystem) -> None:
    union.rm("dir/a.txt")
    union.rmdir("empty")
    union.mkdir("empty")  # opaque
    names_root = union.ls("", detail=False)
    names_dir = union.ls("dir", detail=False)
    assert not any(os.path.basename(n).startswith(WH) for n in names_root + names_dir)
    assert union.ls("empty", detail=False) == []
    # ...while the markers really are in the overlay
    assert WH + "a.txt" in overlay_names(roots.overlay, "dir")
    assert OPQ in overlay_names(roots.overlay, "empty")


def test_ls_of_missing_and_of_file(union: UnionFileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        union.ls("nothing")
    assert union.ls("file.txt", detail=False) == ["file.txt"]
    with pytest.raises(NotADirectoryError):
        union.listdir_types("file.txt")


# ---------------------------------------------------------------------------- read


def test_read_from_winning_layer(roots, union: UnionFileSystem) -> None:
    assert union.cat("file.txt") == b"static file\n"
    assert union.cat("dir/sub/deep.bin") == (roots.static / "dir/sub/deep.bin").read_bytes()
    (roots.overlay / "dir").mkdir()
    (roots.overlay / "dir" / "a.txt").write_bytes(b"overlay")
    assert union.cat("dir/a.txt") == b"overlay"
    with union.open("dir/a.txt", "rb") as f:
        assert f.read() == b"overlay"
    with pytest.raises(IsADirectoryError):
        union.open("dir", "rb")
    with pytest.raises(FileNotFoundError):
        union.open("nothing", "rb")


def test_open_fd_read_only_static_file_stays_static(roots, union: UnionFileSystem) -> None:
    fd = union.open_fd("file.txt", os.O_RDONLY)
    assert fd is not None
    try:
        assert os.read(fd, 100) == b"static file\n"
    finally:
        os.close(fd)
    assert not (roots.overlay / "file.txt").exists()  # reading copies nothing up


# ---------------------------------------------------------------------------- create, mkdir


def test_create_in_overlay_makes_missing_parents(roots, union: UnionFileSystem) -> None:
    union.create("dir/sub/new.txt")
    assert (roots.overlay / "dir" / "sub" / "new.txt").is_file()
    assert not (roots.static / "dir" / "sub" / "new.txt").exists()
    assert union.layer_of("dir/sub/new.txt") == "overlay"
    # the parents were made in the overlay, the static children still show
    assert sorted(union.names("dir/sub")) == ["deep.bin", "new.txt"]
    with pytest.raises(FileExistsError):
        union.create("dir/sub/new.txt")
    with pytest.raises(FileExistsError):
        union.create("file.txt")  # exists in static
    with pytest.raises(FileNotFoundError):
        union.create("nowhere/x")  # create makes no union parents
    with pytest.raises(NotADirectoryError):
        union.create("file.txt/x")


def test_copied_up_parent_dirs_keep_static_attributes(tmp_path: Path) -> None:
    static, overlay = tmp_path / "s", tmp_path / "o"
    (static / "a" / "b").mkdir(parents=True)
    overlay.mkdir()
    os.chmod(static / "a", 0o750)
    os.chmod(static / "a" / "b", 0o701)
    os.utime(static / "a", ns=(STATIC_MTIME_NS, STATIC_MTIME_NS))
    fs = UnionFileSystem(LocalLayer(str(overlay)), LocalLayer(str(static)))
    fs.create("a/b/new")
    assert S.S_IMODE(os.stat(overlay / "a").st_mode) == 0o750
    assert S.S_IMODE(os.stat(overlay / "a" / "b").st_mode) == 0o701
    assert S.S_IMODE(os.stat(static / "a").st_mode) == 0o750  # static untouched


def test_mkdir_in_overlay(roots, union: UnionFileSystem) -> None:
    union.mkdir("dir/sub/newdir", create_parents=False)
    assert (roots.overlay / "dir" / "sub" / "newdir").is_dir()
    assert union.info("dir/sub/newdir")["type"] == "directory"
    assert union.ls("dir/sub/newdir") == []
    assert OPQ not in overlay_names(roots.overlay, "dir/sub/newdir")  # nothing was whited out
    with pytest.raises(FileExistsError):
        union.mkdir("dir", create_parents=False)
    with pytest.raises(FileExistsError):
        union.mkdir("file.txt", create_parents=False)
    with pytest.raises(FileNotFoundError):
        union.mkdir("x/y", create_parents=False)
    union.mkdir("x/y/z")  # fsspec default: parents made
    assert union.info("x/y")["type"] == "directory"
    union.makedirs("dir/sub", exist_ok=True)
    with pytest.raises(FileExistsError):
        union.makedirs("dir/sub")
    with pytest.raises(FileExistsError):
        union.makedirs("file.txt", exist_ok=True)


# ---------------------------------------------------------------------------- copy-up


def test_write_open_copies_up_with_mode_and_mtime(roots, union: UnionFileSystem) -> None:
    fd = union.open_fd("dir/exec.sh", os.O_RDWR)
    assert fd is not None
    try:
        up = os.fstat(fd)
        low = os.stat(roots.static / "dir" / "exec.sh")
        assert S.S_IMODE(up.st_mode) == 0o755
        assert up.st_mtime_ns == low.st_mtime_ns
        assert os.read(fd, 100) == b"#!/bin/sh\necho hi\n"  # whole file copied
        os.pwrite(fd, b"#!/bin/ba", 0)
    finally:
        os.close(fd)
    assert union.layer_of("dir/exec.sh") == "overlay"
    assert union.cat("dir/exec.sh") == b"#!/bin/ba\necho hi\n"
    assert (roots.static / "dir" / "exec.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    # no copy-up temporaries are left behind
    assert not [n for n in os.listdir(roots.overlay / "dir") if n.startswith(".wh.")]


def test_copy_up_of_large_file_is_whole(roots, union: UnionFileSystem) -> None:
    with union.open("dir/sub/deep.bin", "ab") as f:
        f.write(b"TAIL")
    expected = (roots.static / "dir/sub/deep.bin").read_bytes() + b"TAIL"
    assert (roots.overlay / "dir/sub/deep.bin").read_bytes() == expected
    assert union.cat("dir/sub/deep.bin") == expected


def test_truncate_static_file_copies_up(roots, union: UnionFileSystem) -> None:
    union.truncate("file.txt", 6)
    assert (roots.overlay / "file.txt").read_bytes() == b"static"
    assert union.cat("file.txt") == b"static"
    assert S.S_IMODE(os.stat(roots.overlay / "file.txt").st_mode) == S.S_IMODE(
        os.stat(roots.static / "file.txt").st_mode)
    with pytest.raises(IsADirectoryError):
        union.truncate("dir", 0)
    with pytest.raises(FileNotFoundError):
        union.truncate("nothing", 0)


def test_chmod_static_file_copies_up_keeping_mtime(roots, union: UnionFileSystem) -> None:
    union.chmod("file.txt", 0o600)
    up = os.stat(roots.overlay / "file.txt")
    assert S.S_IMODE(up.st_mode) == 0o600
    assert up.st_mtime_ns == STATIC_MTIME_NS
    assert (roots.overlay / "file.txt").read_bytes() == b"static file\n"
    assert union.info("file.txt")["mode"] & 0o777 == 0o600
    assert S.S_IMODE(os.stat(roots.static / "file.txt").st_mode) != 0o600


def test_utime_static_file_copies_up_keeping_mode(roots, union: UnionFileSystem) -> None:
    union.utime("dir/exec.sh", 5_000_000_000, 7_000_000_000)
    up = os.stat(roots.overlay / "dir" / "exec.sh")
    assert up.st_mtime_ns == 7_000_000_000
    assert up.st_atime_ns == 5_000_000_000
    assert S.S_IMODE(up.st_mode) == 0o755
    assert (roots.overlay / "dir" / "exec.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert union.info("dir/exec.sh")["mtime"] == 7.0


def test_utime_and_chmod_of_static_dir_copy_it_up(roots, union: UnionFileSystem) -> None:
    union.chmod("dir/sub", 0o700)
    assert S.S_IMODE(os.stat(roots.overlay / "dir" / "sub").st_mode) == 0o700
    # the directory's content still shows through
    assert union.exists("dir/sub/deep.bin")
    assert union.layer_of("dir/sub/deep.bin") == "static"


def test_o_trunc_copies_no_data(roots, union: UnionFileSystem, monkeypatch) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("O_TRUNC copy-up must not copy the data")

    monkeypatch.setattr(copyup.shutil, "copyfile", no_data)
    monkeypatch.setattr(copyup.shutil, "copyfileobj", no_data)
    fd = union.open_fd("dir/exec.sh", os.O_WRONLY | os.O_TRUNC)
    assert fd is not None
    try:
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert union.cat("dir/exec.sh") == b"new"
    assert S.S_IMODE(os.stat(roots.overlay / "dir" / "exec.sh").st_mode) == 0o755
    union.truncate("dir/a.txt", 0)
    assert (roots.overlay / "dir" / "a.txt").read_bytes() == b""
    with union.open("file.txt", "wb") as f:
        f.write(b"w")
    assert union.cat("file.txt") == b"w"


@pytest.mark.parametrize("mode", ["wb", "ab", "r+b", "xb"])
def test_opening_a_dir_for_writing_is_eisdir_and_copies_nothing(roots, union: UnionFileSystem, mode) -> None:
    with pytest.raises(FileExistsError if mode == "xb" else IsADirectoryError):
        union.open("dir/sub", mode)
    assert os.listdir(roots.overlay) == []


def test_rw_open_without_trunc_keeps_data(roots, union: UnionFileSystem) -> None:
    with union.open("dir/a.txt", "r+b") as f:
        f.write(b"BB")
    assert union.cat("dir/a.txt") == b"BB" + b"a" * 98


def test_open_fd_for_writing_a_dir_is_eisdir(union: UnionFileSystem) -> None:
    with pytest.raises(IsADirectoryError):
        union.open_fd("dir", os.O_WRONLY)
    with pytest.raises(FileNotFoundError):
        union.open_fd("nothing", os.O_RDONLY)


# ---------------------------------------------------------------------------- unlink


def test_unlink_static_file_writes_whiteout(roots, union: UnionFileSystem) -> None:
    union.unlink("dir/a.txt")
    assert not union.exists("dir/a.txt")
    assert (roots.overlay / "dir" / (WH + "a.txt")).is_file()
    assert "a.txt" not in union.names("dir")
    with pytest.raises(FileNotFoundError):
        union.unlink("dir/a.txt")


def test_unlink_overlay_only_file_leaves_no_whiteout(roots, union: UnionFileSystem) -> None:
    union.pipe("dir/new.txt", b"x")
    union.unlink("dir/new.txt")
    assert not union.exists("dir/new.txt")
    assert overlay_names(roots.overlay, "dir") == set()


def test_unlink_file_in_both_layers_removes_copy_and_whites_out(roots, union: UnionFileSystem) -> None:
    union.chmod("file.txt", 0o600)
    assert (roots.overlay / "file.txt").exists()
    union.unlink("file.txt")
    assert not (roots.overlay / "file.txt").exists()
    assert (roots.overlay / (WH + "file.txt")).exists()
    assert not union.exists("file.txt")


def test_unlink_static_symlink_and_dir(roots, union: UnionFileSystem) -> None:
    union.unlink("link")
    assert not union.exists("link")
    assert (roots.overlay / (WH + "link")).exists()
    with pytest.raises(IsADirectoryError):
        union.unlink("dir")


def test_create_over_whiteout_drops_it(roots, union: UnionFileSystem) -> None:
    union.unlink("file.txt")
    union.pipe("file.txt", b"again")
    assert union.cat("file.txt") == b"again"
    assert not (roots.overlay / (WH + "file.txt")).exists()
    assert union.layer_of("file.txt") == "overlay"


# ---------------------------------------------------------------------------- rmdir


def test_rmdir_needs_merged_empty_dir(roots, union: UnionFileSystem) -> None:
    with pytest.raises(OSError) as e:
        union.rmdir("dir/sub")
    assert errno_of(e) == errno.ENOTEMPTY
    union.unlink("dir/sub/deep.bin")
    union.rmdir("dir/sub")  # merged-empty now: only a whiteout in the overlay dir
    assert not union.exists("dir/sub")
    assert (roots.overlay / "dir" / (WH + "sub")).is_file()
    assert not (roots.overlay / "dir" / "sub").exists()


def test_rmdir_static_empty_dir_whites_out(roots, union: UnionFileSystem) -> None:
    union.rmdir("empty")
    assert not union.exists("empty")
    assert (roots.overlay / (WH + "empty")).is_file()
    assert "empty" not in union.ls("", detail=False)


def test_rmdir_overlay_only_dir_leaves_no_whiteout(roots, union: UnionFileSystem) -> None:
    union.mkdir("mine")
    union.pipe("mine/f", b"1")
    with pytest.raises(OSError) as e:
        union.rmdir("mine")
    assert errno_of(e) == errno.ENOTEMPTY
    union.unlink("mine/f")
    union.rmdir("mine")
    assert overlay_names(roots.overlay) == set()


def test_rmdir_errors(union: UnionFileSystem) -> None:
    with pytest.raises(NotADirectoryError):
        union.rmdir("file.txt")
    with pytest.raises(FileNotFoundError):
        union.rmdir("nothing")
    with pytest.raises(OSError) as e:
        union.rmdir("")
    assert errno_of(e) == errno.EBUSY


def test_mkdir_over_whiteout_is_opaque(roots, union: UnionFileSystem) -> None:
    union.rm("dir", recursive=True)
    assert not union.exists("dir")
    assert (roots.overlay / (WH + "dir")).exists()
    union.mkdir("dir", create_parents=False)
    assert (roots.overlay / "dir" / OPQ).is_file()
    assert not (roots.overlay / (WH + "dir")).exists()
    assert union.ls("dir") == []  # nothing of static's old dir comes back
    assert not union.exists("dir/a.txt")
    union.pipe("dir/a.txt", b"fresh")
    assert union.ls("dir", detail=False) == ["dir/a.txt"]
    assert union.cat("dir/a.txt") == b"fresh"
    # and the opaque dir can itself be removed again, static stays hidden
    union.unlink("dir/a.txt")
    union.rmdir("dir")
    assert not union.exists("dir")
    assert (roots.overlay / (WH + "dir")).exists()


# ---------------------------------------------------------------------------- rename


def test_rename_static_file_copies_up_and_whites_out(roots, union: UnionFileSystem) -> None:
    union.posix_rename("file.txt", "dir/moved.txt")
    assert not union.exists("file.txt")
    assert union.cat("dir/moved.txt") == b"static file\n"
    assert (roots.overlay / (WH + "file.txt")).is_file()
    assert (roots.overlay / "dir" / "moved.txt").read_bytes() == b"static file\n"
    assert os.stat(roots.overlay / "dir" / "moved.txt").st_mtime_ns == STATIC_MTIME_NS
    assert not (roots.overlay / "file.txt").exists()


def test_rename_overlay_file_leaves_no_whiteout(roots, union: UnionFileSystem) -> None:
    union.pipe("new.txt", b"n")
    union.posix_rename("new.txt", "renamed.txt")
    assert union.cat("renamed.txt") == b"n"
    assert overlay_names(roots.overlay) == {"renamed.txt"}


def test_rename_replaces_target(roots, union: UnionFileSystem) -> None:
    union.pipe("new.txt", b"replacement")
    union.posix_rename("new.txt", "dir/a.txt")  # the target lives in static
    assert union.cat("dir/a.txt") == b"replacement"
    assert not union.exists("new.txt")
    assert sorted(union.names("dir")) == ["a.txt", "exec.sh", "sub"]
    union.pipe("other.txt", b"second")
    union.posix_rename("other.txt", "dir/a.txt")  # the target lives in the overlay now
    assert union.cat("dir/a.txt") == b"second"


def test_rename_onto_whited_out_name(roots, union: UnionFileSystem) -> None:
    union.unlink("file.txt")
    union.pipe("new.txt", b"n")
    union.posix_rename("new.txt", "file.txt")
    assert union.cat("file.txt") == b"n"
    assert not (roots.overlay / (WH + "file.txt")).exists()


def test_rename_noreplace(roots, union: UnionFileSystem) -> None:
    union.pipe("new.txt", b"n")
    for target in ("file.txt", "dir/a.txt"):
        with pytest.raises(FileExistsError):
            union.posix_rename("new.txt", target, replace=False)
    assert union.cat("file.txt") == b"static file\n"
    assert union.cat("new.txt") == b"n"
    union.posix_rename("new.txt", "free.txt", replace=False)
    assert union.cat("free.txt") == b"n"


def test_rename_static_dir_is_exdev(roots, union: UnionFileSystem) -> None:
    for src in ("dir", "dir/sub", "empty"):
        with pytest.raises(OSError) as e:
            union.posix_rename(src, "elsewhere")
        assert errno_of(e) == errno.EXDEV, src
    union.chmod("dir", 0o700)  # now in both layers: still EXDEV
    with pytest.raises(OSError) as e:
        union.posix_rename("dir", "elsewhere")
    assert errno_of(e) == errno.EXDEV
    assert union.exists("dir/a.txt") and not union.exists("elsewhere")


def test_rename_overlay_only_dir(roots, union: UnionFileSystem) -> None:
    union.makedirs("mine/inner")
    union.pipe("mine/inner/f", b"1")
    union.posix_rename("mine", "dir/yours")
    assert union.cat("dir/yours/inner/f") == b"1"
    assert not union.exists("mine")
    assert (roots.overlay / "dir" / "yours" / "inner" / "f").is_file()
    assert OPQ not in overlay_names(roots.overlay, "dir/yours")  # landed on a free name
    assert not (roots.overlay / (WH + "mine")).exists()


def test_rename_overlay_dir_onto_static_name_becomes_opaque(roots, union: UnionFileSystem) -> None:
    union.mkdir("mine")
    union.pipe("mine/f", b"1")
    union.posix_rename("mine", "empty")  # static's "empty" is an empty dir: replaced
    assert (roots.overlay / "empty" / OPQ).is_file()
    assert union.ls("empty", detail=False) == ["empty/f"]

    union.mkdir("mine2")
    union.pipe("mine2/g", b"2")
    union.rm("dir", recursive=True)  # "dir" is whited out now
    union.posix_rename("mine2", "dir")
    assert (roots.overlay / "dir" / OPQ).is_file()
    assert union.ls("dir", detail=False) == ["dir/g"]  # nothing of the old static dir
    assert not (roots.overlay / (WH + "dir")).exists()


def test_rename_overlay_dir_onto_merged_empty_dir_with_markers(roots, union: UnionFileSystem) -> None:
    union.unlink("dir/sub/deep.bin")  # dir/sub is merged-empty; the overlay holds its whiteout
    assert (roots.overlay / "dir" / "sub" / (WH + "deep.bin")).exists()
    union.mkdir("mine")
    union.pipe("mine/f", b"1")
    union.posix_rename("mine", "dir/sub")
    assert set(os.listdir(roots.overlay / "dir" / "sub")) == {"f", OPQ}
    assert union.ls("dir/sub", detail=False) == ["dir/sub/f"]
    assert not union.exists("dir/sub/deep.bin")


def test_moving_an_opaque_dir_never_brings_static_back(roots, union: UnionFileSystem) -> None:
    union.rm("dir", recursive=True)
    union.mkdir("dir")  # opaque: static's old "dir" stays hidden below it
    union.pipe("dir/f", b"1")
    union.mv("dir", "d2")  # natively or by copy-and-delete: the view is the same
    assert not union.exists("dir")
    assert union.ls("d2", detail=False) == ["d2/f"]
    assert not union.exists("d2/a.txt")
    assert (roots.overlay / (WH + "dir")).is_file()
    assert union.ls("", detail=False) == ["d2", "empty", "file.txt", "link"]


def test_rename_static_symlink(roots, union: UnionFileSystem) -> None:
    union.posix_rename("link", "link2")
    assert union.readlink("link2") == "file.txt"
    assert os.readlink(roots.overlay / "link2") == "file.txt"
    assert (roots.overlay / (WH + "link")).is_file()
    assert not union.exists("link")


def test_rename_dir_errors(roots, union: UnionFileSystem) -> None:
    union.makedirs("mine/inner")
    with pytest.raises(OSError) as e:
        union.posix_rename("mine", "mine/inner/x")
    assert errno_of(e) == errno.EINVAL
    with pytest.raises(OSError) as e:
        union.posix_rename("mine", "dir")  # static "dir" is not empty
    assert errno_of(e) == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        union.posix_rename("mine", "file.txt")
    with pytest.raises(IsADirectoryError):
        union.posix_rename("file.txt", "mine")
    with pytest.raises(FileNotFoundError):
        union.posix_rename("nothing", "x")
    with pytest.raises(FileNotFoundError):
        union.posix_rename("file.txt", "nowhere/x")
    with pytest.raises(FileExistsError):
        union.posix_rename("mine", "empty", replace=False)
    assert union.exists("mine/inner") and union.cat("file.txt") == b"static file\n"


def test_rename_to_itself_is_a_no_op(roots, union: UnionFileSystem) -> None:
    union.posix_rename("file.txt", "file.txt")
    assert union.layer_of("file.txt") == "static"
    assert overlay_names(roots.overlay) == set()


def test_link_copies_up_then_links(roots, union: UnionFileSystem) -> None:
    union.link("file.txt", "hard")
    a, b = os.stat(roots.overlay / "file.txt"), os.stat(roots.overlay / "hard")
    assert (a.st_ino, a.st_nlink) == (b.st_ino, 2)
    with union.open("hard", "ab") as f:
        f.write(b"more")
    assert union.cat("file.txt") == b"static file\nmore"
    union.rm("file.txt")
    assert union.cat("hard") == b"static file\nmore" and not union.exists("file.txt")
    with pytest.raises(OSError) as e:
        union.link("dir", "dirlink")
    assert errno_of(e) == errno.EPERM
    with pytest.raises(OSError) as e:
        union.link("hard", "dir/a.txt")
    assert errno_of(e) == errno.EEXIST


# ---------------------------------------------------------------------------- symlinks


def test_symlink_and_readlink(roots, union: UnionFileSystem) -> None:
    assert union.readlink("link") == "file.txt"
    assert union.islink("link") and not union.islink("file.txt")
    union.symlink("dir/a.txt", "dir/sub/ln")
    assert os.readlink(roots.overlay / "dir" / "sub" / "ln") == "dir/a.txt"
    assert union.readlink("dir/sub/ln") == "dir/a.txt"
    assert union.info("dir/sub/ln")["type"] == "link"
    assert S.S_ISLNK(union.listdir_types("dir/sub")["ln"])
    with pytest.raises(FileExistsError):
        union.symlink("x", "link")
    with pytest.raises(OSError) as e:
        union.readlink("file.txt")
    assert errno_of(e) == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        union.readlink("nothing")


def test_chmod_of_static_symlink_copies_the_link(roots, union: UnionFileSystem) -> None:
    union.utime("link", 1_000_000_000, 2_000_000_000)
    assert os.path.islink(roots.overlay / "link")
    assert os.readlink(roots.overlay / "link") == "file.txt"
    assert os.lstat(roots.overlay / "link").st_mtime_ns == 2_000_000_000
    assert not (roots.overlay / "file.txt").exists()


# ---------------------------------------------------------------------------- reserved names


@pytest.mark.parametrize("name", [".wh.x", ".wh..wh..opq", ".wh.file.txt", ".wh..wh.tmp.1"])
def test_reserved_names_are_eperm(roots, union: UnionFileSystem, name: str) -> None:
    for make in (lambda p: union.create(p), lambda p: union.mkdir(p, create_parents=False),
                 lambda p: union.symlink("file.txt", p), lambda p: union.posix_rename("file.txt", p)):
        for path in (name, f"dir/{name}"):
            with pytest.raises(OSError) as e:
                make(path)
            assert errno_of(e) == errno.EPERM, path
    assert union.exists("file.txt")
    assert not (roots.overlay / name).exists()


def test_existing_whiteout_cannot_be_opened_or_removed(roots, union: UnionFileSystem) -> None:
    union.unlink("file.txt")
    with pytest.raises(FileNotFoundError):
        union.cat(WH + "file.txt")
    with pytest.raises(FileNotFoundError):
        union.unlink(WH + "file.txt")
    assert (roots.overlay / (WH + "file.txt")).exists()


# ---------------------------------------------------------------------------- fsspec use


def test_fsspec_info_ls_cat(roots, union: UnionFileSystem) -> None:
    info = union.info("dir/a.txt")
    assert info["type"] == "file" and info["size"] == 100 and info["layer"] == "static"
    assert union.info("dir")["type"] == "directory"
    assert union.info("union://dir/a.txt")["name"] == "dir/a.txt"
    assert union.isdir("dir") and union.isfile("dir/a.txt") and not union.isfile("dir")
    assert union.ls("", detail=False) == ["dir", "empty", "file.txt", "link"]
    assert union.cat("dir/a.txt", start=10, end=15) == b"aaaaa"
    assert sorted(union.find("dir")) == ["dir/a.txt", "dir/exec.sh", "dir/sub/deep.bin"]
    assert union.du("dir", total=True) == 100 + 18 + 300_000
    with pytest.raises(ValueError):
        union.info("../outside")


def test_fsspec_pipe_and_append(roots, union: UnionFileSystem) -> None:
    union.pipe("runs/r1/picks.json", b"{}")  # parents are made
    assert (roots.overlay / "runs" / "r1" / "picks.json").read_bytes() == b"{}"
    union.pipe("file.txt", b"overwritten")
    assert union.cat("file.txt") == b"overwritten"
    assert (roots.static / "file.txt").read_bytes() == b"static file\n"
    with union.open("dir/a.txt", "ab") as f:
        f.write(b"b")
    assert union.cat("dir/a.txt") == b"a" * 100 + b"b"
    with union.open("dir/a.txt", "rb") as f:
        f.seek(99)
        assert f.read() == b"ab"
    with union.open("nowhere.txt", "ab") as f:  # append creates, as Python's open and `>>`
        f.write(b"new")
    assert (roots.overlay / "nowhere.txt").read_bytes() == b"new"
    with union.open("nowhere.txt", "ab") as f:
        f.write(b"+")
    assert union.cat("nowhere.txt") == b"new+"
    with pytest.raises(FileNotFoundError):
        union.open("nowhere-either.txt", "r+b")
    with pytest.raises(FileExistsError):
        union.open("file.txt", "xb")
    with union.open("brand-new", "xb") as f:
        f.write(b"x")
    assert union.cat("brand-new") == b"x"
    with union.open("text.txt", "w") as f:
        f.write("text")
    assert union.open("text.txt", "r").read() == "text"


def test_fsspec_mv_file_and_static_dir(roots, union: UnionFileSystem) -> None:
    union.mv("file.txt", "moved.txt")
    assert union.cat("moved.txt") == b"static file\n" and not union.exists("file.txt")
    # a static directory cannot be renamed (EXDEV): mv copies and deletes, as mv(1)
    deep = (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    union.mv("dir", "dir2")
    assert not union.exists("dir")
    assert sorted(union.find("dir2")) == ["dir2/a.txt", "dir2/exec.sh", "dir2/sub/deep.bin"]
    assert union.cat("dir2/sub/deep.bin") == deep
    assert union.cat("dir2/a.txt") == b"a" * 100
    assert (roots.overlay / (WH + "dir")).exists()
    assert union.ls("", detail=False) == ["dir2", "empty", "link", "moved.txt"]


def test_fsspec_mv_other_errors_propagate(union: UnionFileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        union.mv("nothing", "x")


def test_fsspec_copy(roots, union: UnionFileSystem) -> None:
    union.copy("dir/a.txt", "copy.txt")
    assert union.cat("copy.txt") == b"a" * 100
    assert union.layer_of("copy.txt") == "overlay"
    assert union.layer_of("dir/a.txt") == "static"


def test_fsspec_rm_recursive(roots, union: UnionFileSystem) -> None:
    union.pipe("dir/sub/mine.txt", b"m")
    union.rm("dir", recursive=True)
    assert not union.exists("dir")
    assert not union.exists("dir/sub/deep.bin")
    assert union.ls("", detail=False) == ["empty", "file.txt", "link"]
    assert (roots.overlay / (WH + "dir")).exists()
    assert not (roots.overlay / "dir").exists()
    union.rm("file.txt")
    assert not union.exists("file.txt")
    with pytest.raises(FileNotFoundError):
        union.rm("nothing")


def test_fsspec_touch(roots, union: UnionFileSystem) -> None:
    union.touch("t")
    assert union.info("t")["size"] == 0
    union.touch("dir/a.txt")  # truncate=True empties it, in the overlay
    assert union.cat("dir/a.txt") == b""
    assert (roots.static / "dir" / "a.txt").read_bytes() == b"a" * 100


def test_fsspec_url_opens_a_union(roots) -> None:
    fs = UnionFileSystem(f"file://{roots.overlay}", str(roots.static))
    assert fs.cat("file.txt") == b"static file\n"
    fs.pipe("x", b"1")
    assert (roots.overlay / "x").read_bytes() == b"1"


# ---------------------------------------------------------------------------- without static


def test_overlay_only_union(roots) -> None:
    fs = UnionFileSystem(str(roots.overlay))
    assert fs.static is None
    assert fs.ls("", detail=False) == []
    fs.pipe("a/b.txt", b"b")
    assert fs.ls("a", detail=False) == ["a/b.txt"]
    assert fs.layer_of("a/b.txt") == "overlay"
    fs.posix_rename("a", "c")  # a directory that only the overlay holds: renamed
    assert fs.cat("c/b.txt") == b"b"
    fs.unlink("c/b.txt")
    fs.rmdir("c")
    fs.mkdir("d")
    assert set(os.listdir(roots.overlay)) == {"d"}  # no whiteouts, no opaque markers
    assert os.listdir(roots.overlay / "d") == []
    with pytest.raises(FileNotFoundError):
        fs.cat("file.txt")


# ---------------------------------------------------------------------------- memory:// overlay


@pytest.fixture
def memory_union(roots):
    root = f"/copickfs-test-{uuid.uuid4().hex}"
    mem = fsspec.filesystem("memory")
    mem.mkdir(root)
    fs = UnionFileSystem(f"memory://{root}", str(roots.static))
    try:
        yield fs, mem, root
    finally:
        mem.rm(root, recursive=True)


def test_memory_overlay_create_read_list(memory_union) -> None:
    fs, mem, root = memory_union
    assert isinstance(fs.overlay, FsspecLayer)
    assert fs.cat("file.txt") == b"static file\n"
    fs.pipe("dir/new.txt", b"in memory")
    assert mem.cat(f"{root}/dir/new.txt") == b"in memory"
    assert fs.cat("dir/new.txt") == b"in memory"
    assert fs.ls("dir", detail=False) == ["dir/a.txt", "dir/exec.sh", "dir/new.txt", "dir/sub"]
    assert fs.layer_of("dir/new.txt") == "overlay" and fs.layer_of("dir/a.txt") == "static"
    with fs.open("dir/a.txt", "ab") as f:  # copy-up into memory
        f.write(b"!")
    assert mem.cat(f"{root}/dir/a.txt") == b"a" * 100 + b"!"
    fs.unlink("file.txt")
    assert not fs.exists("file.txt")
    assert mem.exists(f"{root}/.wh.file.txt")
    assert "file.txt" not in fs.ls("", detail=False)
    assert fs.open_fd("dir/new.txt", os.O_RDONLY) is None  # no descriptors for non-local layers


def test_an_open_directory_is_listed_through_its_descriptors(roots, union: UnionFileSystem, tmp_path) -> None:
    """Renamed and replaced by a symlink behind the union's back, an open directory still
    lists what it was opened on, never the symlink's target."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    union.pipe_file("pub/x2/sub/mine", b"m")  # overlay part
    directory = union.open_directory("dir/sub")  # static part too: deep.bin
    own = union.open_directory("pub/x2/sub")
    try:
        os.rename(roots.overlay / "pub" / "x2", roots.overlay / "pub" / "x3")
        os.symlink(outside, roots.overlay / "pub" / "x2")
        assert [name for name, *_ in own.children()] == ["mine"]
        assert own.children()[0][2]().size == 1
        assert sorted(name for name, *_ in directory.children()) == ["deep.bin"]
    finally:
        own.close()
        directory.close()
    with pytest.raises(OSError):
        union.ls("pub/x2/sub")  # by path the symlink is never followed either
