"""Hardening of the union as a library (`UnionFileSystem(overlay, static)`, no mount).

Findings covered (test names carry the finding number):

1. symlinks inside a layer are never followed by the library;
3. copy-up writes into a private temporary file (0600) and keeps the file's mode;
4. names of 252-255 bytes work for every operation (whiteouts of such names too);
5. `link` makes a native hard link on a local overlay;
6. a rename that fails part-way (no free inodes) leaves the tree as it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat as S
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import BIG_STATIC_SIZE as BIG_SIZE, build_static
from copickfs.union import UnionFileSystem
from treehash import tree_digest
from users import tree_owners

WH = ".wh."
TEMP_PREFIX = ".wh..wh.tmp."
OUTSIDE_SECRET = b"OUTSIDE-SECRET-9f27c1: must never be read or written through the union\n"


def overlay_files_holding(root: Path, needle: bytes) -> list[str]:
    """Regular files below ``root`` (symlinks not followed) whose content holds ``needle``."""
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if S.S_ISREG(os.lstat(path).st_mode) and needle in Path(path).read_bytes():
                found.append(os.path.relpath(path, root))
    return found


def longest_name_below(root: Path) -> int:
    return max((len(os.fsencode(n)) for _, dirs, files in os.walk(root) for n in dirs + files), default=0)


def markers_in(names) -> list[str]:
    return [n for n in names if os.path.basename(str(n).rstrip("/")).startswith(WH)]


# ============================================================================ 1. symlinks


def make_outside(path: Path) -> Path:
    """A directory standing in for one only root may touch (/root, /etc/shadow's dir...)."""
    path.mkdir()
    (path / "f").write_bytes(OUTSIDE_SECRET)
    os.chmod(path / "f", 0o600)
    (path / "sub").mkdir()
    (path / "sub" / "inner").write_bytes(OUTSIDE_SECRET)
    (path / "empty").mkdir()
    return path


@dataclass
class Escape:
    static: Path
    overlay: Path
    outside: Path
    fs: UnionFileSystem
    outside_before: tuple[str, dict[str, tuple[int, int, int]]]

    def assert_outside_unchanged(self, what: str) -> None:
        f = self.outside / "f"
        assert f.exists(), f"{what}: removed a file of the outside dir"
        assert f.read_bytes() == OUTSIDE_SECRET, f"{what}: wrote into the outside dir"
        now = (tree_digest(str(self.outside)), tree_owners(self.outside))
        assert now == self.outside_before, f"{what}: the outside directory changed"
        leaked = overlay_files_holding(self.overlay, OUTSIDE_SECRET)
        assert leaked == [], f"{what}: the outside file's data landed in the overlay: {leaked}"


@pytest.fixture(params=["made_by_union_symlink", "planted_in_overlay", "planted_in_static"])
def escape(request, tmp_path: Path) -> Iterator[Escape]:
    """`pub` is a symlink to an outside directory: made with fs.symlink, or planted in a layer."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    build_static(static)
    outside = make_outside(tmp_path / "outside")
    if request.param == "planted_in_static":
        os.symlink(outside, static / "pub")
    elif request.param == "planted_in_overlay":
        os.symlink(outside, overlay / "pub")
    fs = UnionFileSystem(str(overlay), str(static))
    if request.param == "made_by_union_symlink":
        fs.symlink(str(outside), "pub")
    static_before = tree_digest(str(static))
    yield Escape(static, overlay, outside, fs, (tree_digest(str(outside)), tree_owners(outside)))
    assert tree_digest(str(static)) == static_before, "the static tree changed"


def _write(fs: UnionFileSystem, path: str, mode: str) -> None:
    with fs.open(path, mode) as f:
        if "r" not in mode or "+" in mode:
            f.write(b"WRITTEN-THROUGH-A-SYMLINK")


def _open_fd(fs: UnionFileSystem, path: str, flags: int) -> bytes:
    fd = fs.open_fd(path, flags)
    if fd is None:
        return b""
    try:
        if flags & os.O_ACCMODE == os.O_RDONLY:
            return os.read(fd, 1 << 16)
        os.write(fd, b"WRITTEN-THROUGH-A-SYMLINK")
        return b""
    finally:
        os.close(fd)


WRITE_VERBS: dict[str, Callable[[UnionFileSystem], Any]] = {
    "open_append": lambda fs: _write(fs, "pub/f", "ab"),
    "open_rplus": lambda fs: _write(fs, "pub/f", "r+b"),
    "open_w_existing": lambda fs: _write(fs, "pub/f", "wb"),
    "open_w_new": lambda fs: _write(fs, "pub/new", "wb"),
    "open_x_new": lambda fs: _write(fs, "pub/new", "xb"),
    "open_w_deeper": lambda fs: _write(fs, "pub/sub/new", "wb"),
    "pipe_file": lambda fs: fs.pipe_file("pub/new", b"x"),
    "create": lambda fs: fs.create("pub/new"),
    "touch_new": lambda fs: fs.touch("pub/new"),
    "touch_existing": lambda fs: fs.touch("pub/f", truncate=False),
    "touch_truncate": lambda fs: fs.touch("pub/f"),
    "truncate": lambda fs: fs.truncate("pub/f", 0),
    "chmod": lambda fs: fs.chmod("pub/f", 0o777),
    "chown": lambda fs: fs.chown("pub/f", 4242, 4242),
    "utime": lambda fs: fs.utime("pub/f", 0, 0),
    "copy_up": lambda fs: fs.copy_up("pub/f"),
    "open_fd_write": lambda fs: _open_fd(fs, "pub/f", os.O_WRONLY),
    "open_fd_trunc": lambda fs: _open_fd(fs, "pub/f", os.O_WRONLY | os.O_TRUNC),
    "rm": lambda fs: fs.rm("pub/f"),
    "rm_file": lambda fs: fs.rm_file("pub/f"),
    "unlink": lambda fs: fs.unlink("pub/f"),
    "rm_recursive": lambda fs: fs.rm("pub/sub", recursive=True),
    "rmdir": lambda fs: fs.rmdir("pub/empty"),
    "mkdir": lambda fs: fs.mkdir("pub/d"),
    "makedirs": lambda fs: fs.makedirs("pub/d/e"),
    "symlink_inside": lambda fs: fs.symlink("x", "pub/l"),
    "mv_out": lambda fs: fs.mv("pub/f", "g"),
    "mv_in": lambda fs: fs.mv("file.txt", "pub/moved"),
    "mv_within": lambda fs: fs.mv("pub/f", "pub/g"),
    "posix_rename_out": lambda fs: fs.posix_rename("pub/f", "g"),
    "cp_file_in": lambda fs: fs.cp_file("file.txt", "pub/cp"),
    "cp_file_out": lambda fs: fs.cp_file("pub/f", "copied"),
    "link_in": lambda fs: fs.link("file.txt", "pub/hard"),
    "link_out": lambda fs: fs.link("pub/f", "hard"),
}

READ_VERBS: dict[str, Callable[[UnionFileSystem], Any]] = {
    "open_read": lambda fs: fs.open("pub/f", "rb").read(),
    "cat_file": lambda fs: fs.cat_file("pub/f"),
    "cat": lambda fs: fs.cat("pub/f"),
    "cat_deeper": lambda fs: fs.cat("pub/sub/inner"),
    "info": lambda fs: fs.info("pub/f"),
    "info_dir": lambda fs: fs.info("pub/sub"),
    "open_fd_read": lambda fs: _open_fd(fs, "pub/f", os.O_RDONLY),
    "listdir_types": lambda fs: fs.listdir_types("pub"),
    "names": lambda fs: fs.names("pub"),
    "ls_deeper": lambda fs: fs.ls("pub/sub"),
}


@pytest.mark.parametrize("verb", sorted(WRITE_VERBS))
def test_finding1_symlink_never_followed_by_library_writes(escape: Escape, verb: str) -> None:
    try:
        WRITE_VERBS[verb](escape.fs)
        succeeded = True
    except OSError:
        succeeded = False
    escape.assert_outside_unchanged(verb)
    assert not succeeded, f"{verb} through a symlinked directory succeeded"


@pytest.mark.parametrize("verb", sorted(READ_VERBS))
def test_finding1_symlink_never_followed_by_library_reads(escape: Escape, verb: str) -> None:
    try:
        result = READ_VERBS[verb](escape.fs)
    except OSError:
        result = None
    escape.assert_outside_unchanged(verb)
    assert result is None, f"{verb} through a symlinked directory succeeded: {str(result)[:200]}"


def test_finding1_symlink_listing_never_descends(escape: Escape) -> None:
    fs = escape.fs
    assert fs.islink("pub")
    assert not fs.exists("pub/f"), "exists() looked through the symlink"
    assert not fs.isfile("pub/f"), "isfile() looked through the symlink"
    assert not fs.isdir("pub/sub"), "isdir() looked through the symlink"
    try:
        listed = fs.ls("pub", detail=False)
    except OSError:
        listed = []
    assert not [p for p in listed if str(p).startswith("pub/")], listed
    found = fs.find("", withdirs=True)
    assert not [p for p in found if str(p).startswith("pub/")], found
    walked = [d for d, _, _ in fs.walk("")]
    assert not [d for d in walked if str(d).startswith("pub")], walked
    globbed = fs.glob("pub/*")
    assert globbed == [], globbed
    escape.assert_outside_unchanged("listing")


def test_finding1_static_symlink_to_etc_is_not_followed(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    os.symlink("/etc", static / "esc")
    fs = UnionFileSystem(str(overlay), str(static))
    reads = {"open": lambda: fs.open("esc/passwd", "rb").read(), "cat_file": lambda: fs.cat_file("esc/passwd"),
             "info": lambda: fs.info("esc/passwd"), "cat": lambda: fs.cat("esc/hostname")}
    for verb, call in reads.items():
        try:
            got = call()
        except OSError:
            continue
        pytest.fail(f"{verb} read through static's symlink to /etc: {str(got)[:60]!r}...")
    assert not fs.exists("esc/passwd")
    try:
        listed = fs.ls("esc", detail=False)
    except OSError:
        listed = []
    assert "esc/passwd" not in listed and not [p for p in listed if str(p).startswith("esc/")], listed
    assert fs.readlink("esc") == "/etc"  # the link itself is fine to show
    with pytest.raises(OSError):
        fs.pipe_file("esc/copickfs-test-planted", b"x")
    assert not os.path.exists("/etc/copickfs-test-planted")
    assert os.listdir(overlay) == []


def test_finding1_overlay_symlinked_parent_of_a_static_dir(tmp_path: Path) -> None:
    """The overlay holds `dir -> outside` while static holds a real `dir/`: writing into `dir/`
    (which needs the overlay's `dir` as a directory) must not write into the outside dir."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    build_static(static)
    outside = make_outside(tmp_path / "outside")
    before = tree_digest(str(outside))
    os.symlink(outside, overlay / "dir")
    fs = UnionFileSystem(str(overlay), str(static))
    for call in (lambda: fs.pipe_file("dir/new", b"x"), lambda: fs.open("dir/a.txt", "ab").close(),
                 lambda: fs.mkdir("dir/newdir"), lambda: fs.rm("dir/a.txt"), lambda: fs.chmod("dir/f", 0o666),
                 lambda: fs.open("dir/f", "ab").close()):
        try:
            call()
        except OSError:
            pass
    assert tree_digest(str(outside)) == before, "wrote into the outside dir"
    assert overlay_files_holding(overlay, OUTSIDE_SECRET) == []
    with pytest.raises(OSError):
        fs.cat("dir/f")
    assert not fs.exists("dir/sub/inner")


def test_finding1_dangling_and_relative_symlinks_in_overlay(tmp_path: Path) -> None:
    """A relative link that climbs out of the overlay root is no door either."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    outside = make_outside(tmp_path / "outside")
    before = tree_digest(str(outside))
    os.symlink("../outside", overlay / "rel")
    fs = UnionFileSystem(str(overlay), str(static))
    with pytest.raises(OSError):
        fs.cat("rel/f")
    with pytest.raises(OSError):
        fs.pipe_file("rel/new", b"x")
    with pytest.raises(OSError):
        fs.rm("rel/f")
    assert tree_digest(str(outside)) == before


# ============================================================================ 3. private copy-up




def test_finding3_library_copy_up_temp_file_is_private(tmp_path: Path, big_static) -> None:
    """While the library copies a 0600 file up (process umask 0, as the daemon's), any
    temporary file in the overlay is 0600 (no group/other bits) and root's; the copy ends 0600."""
    static, _ = big_static
    overlay = tmp_path / "overlay"
    (overlay / "pub").mkdir(parents=True)
    fs = UnionFileSystem(str(overlay), str(static))
    seen: dict[str, tuple[int, int]] = {}  # name -> (permission bits, owner) while copying
    done = threading.Event()
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            with fs.open("pub/big.bin", "ab") as f:
                f.write(b"TAIL")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done.set()

    old_umask = os.umask(0)
    try:
        worker = threading.Thread(target=copy)
        worker.start()
        while not done.is_set():
            for name in os.listdir(overlay / "pub"):  # the temporary file, whatever its name
                try:
                    st = os.lstat(overlay / "pub" / name)
                except FileNotFoundError:
                    continue
                seen[name] = (S.S_IMODE(st.st_mode), st.st_uid)
        worker.join(timeout=300)
    finally:
        os.umask(old_umask)
    assert not errors, errors
    exposed = {n: (oct(mode), uid) for n, (mode, uid) in seen.items() if mode & 0o077 or uid != 0}
    assert not exposed, f"files of the copy-up open to others while in flight: {exposed}"
    final = os.stat(overlay / "pub" / "big.bin")
    assert S.S_IMODE(final.st_mode) == 0o600
    assert (final.st_uid, final.st_gid) == (0, 0)
    assert final.st_size == BIG_SIZE + 4
    assert not [n for n in os.listdir(overlay / "pub") if n.startswith(TEMP_PREFIX)]


def test_finding3_library_copy_up_keeps_a_private_mode(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    (static / "d").mkdir(parents=True)
    overlay.mkdir()
    (static / "d" / "secret").write_bytes(b"s" * 1000)
    os.chmod(static / "d" / "secret", 0o600)
    os.chmod(static / "d", 0o700)
    fs = UnionFileSystem(str(overlay), str(static))
    old_umask = os.umask(0)
    try:
        fs.chmod("d/secret", 0o600)  # a copy-up, no data change
        with fs.open("d/secret", "ab") as f:
            f.write(b"!")
    finally:
        os.umask(old_umask)
    assert S.S_IMODE(os.stat(overlay / "d" / "secret").st_mode) == 0o600
    assert S.S_IMODE(os.stat(overlay / "d").st_mode) == 0o700


# ============================================================================ 4. long names


def long_name(length: int, tag: str) -> str:
    return tag + "x" * (length - len(tag))


F252, F253, F255 = long_name(252, "F252-"), long_name(253, "F253-"), long_name(255, "F255-")
U255 = "é" * 127 + "u"  # 255 bytes in UTF-8
D255, E255, R255 = long_name(255, "D255-"), long_name(255, "E255-"), long_name(255, "R255-")
NEW255, NEWD255, OTHER255 = long_name(255, "NEW255-"), long_name(255, "NEWD255-"), long_name(255, "OTHER255-")
MISSING255, N256 = long_name(255, "MISSING255-"), long_name(256, "N256-")
LONG_FILES = (F252, F253, F255, U255)


def content_of(name: str) -> bytes:
    return hashlib.sha256(name.encode()).hexdigest().encode()


def build_long_static(static: Path) -> None:
    """conftest's tree plus d/ with files of 252-255-byte names, an empty 255-byte-named dir
    (D255), a non-empty one (E255), and a 255-byte-named file at the root (R255)."""
    build_static(static)
    (static / "d").mkdir()
    for name in LONG_FILES:
        (static / "d" / name).write_bytes(content_of(name))
    (static / "d" / D255).mkdir()
    (static / "d" / E255).mkdir()
    (static / "d" / E255 / "inner.txt").write_bytes(b"inner")
    (static / R255).write_bytes(content_of(R255))


@dataclass
class LongRoots:
    static: Path
    overlay: Path
    fs: UnionFileSystem


@pytest.fixture
def longfs(tmp_path: Path) -> Iterator[LongRoots]:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    build_long_static(static)
    before = tree_digest(str(static))
    yield LongRoots(static, overlay, UnionFileSystem(str(overlay), str(static)))
    assert tree_digest(str(static)) == before, "the static tree changed"
    assert longest_name_below(overlay) <= 255


def basenames(fs: UnionFileSystem, path: str) -> set[str]:
    return {os.path.basename(p) for p in fs.ls(path, detail=False)}


def test_finding4_long_names_stat_read_list(longfs: LongRoots) -> None:
    fs = longfs.fs
    for name in LONG_FILES:
        assert fs.info(f"d/{name}")["size"] == len(content_of(name)), name
        assert fs.cat(f"d/{name}") == content_of(name)
    assert fs.info(f"d/{D255}")["type"] == "directory"
    assert fs.cat(R255) == content_of(R255)
    assert fs.exists(R255)
    assert basenames(fs, "d") == {*LONG_FILES, D255, E255}
    assert R255 in basenames(fs, "")


@pytest.mark.parametrize("name", LONG_FILES, ids=["252", "253", "255", "utf8-255"])
def test_finding4_long_names_unlink_static_file_whites_out(longfs: LongRoots, name: str) -> None:
    fs = longfs.fs
    fs.rm_file(f"d/{name}")
    assert not fs.exists(f"d/{name}")
    with pytest.raises(FileNotFoundError):
        fs.info(f"d/{name}")
    listed = basenames(fs, "d")
    assert name not in listed and not markers_in(listed)
    assert {*LONG_FILES, D255, E255} - {name} == listed
    # a fresh union over the same roots agrees (the whiteout is in the overlay, not in memory)
    again = UnionFileSystem(str(longfs.overlay), str(longfs.static))
    assert not again.exists(f"d/{name}")


def test_finding4_long_name_unlink_at_root(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.rm(R255)
    assert not fs.exists(R255)
    assert R255 not in basenames(fs, "")


def test_finding4_long_names_rmdir_static_dir(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.rmdir(f"d/{D255}")
    assert not fs.exists(f"d/{D255}")
    assert D255 not in basenames(fs, "d")
    fs.rm(f"d/{E255}", recursive=True)
    assert not fs.exists(f"d/{E255}") and not fs.exists(f"d/{E255}/inner.txt")
    assert not markers_in(basenames(fs, "d"))


def test_finding4_long_names_rename(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.posix_rename(f"d/{F255}", "d/short")  # from a 255-byte static name
    assert fs.cat("d/short") == content_of(F255)
    assert not fs.exists(f"d/{F255}")
    fs.posix_rename("file.txt", f"d/{NEW255}")  # to a 255-byte name
    assert fs.cat(f"d/{NEW255}") == b"static file\n"
    assert not fs.exists("file.txt")
    fs.posix_rename(f"d/{NEW255}", f"d/{OTHER255}")  # 255 to 255
    assert fs.cat(f"d/{OTHER255}") == b"static file\n"
    fs.posix_rename(f"d/{F253}", f"d/{U255}")  # onto an existing static 255-byte name
    assert fs.cat(f"d/{U255}") == content_of(F253)
    listed = basenames(fs, "d")
    assert listed == {F252, U255, D255, E255, "short", OTHER255}
    assert not markers_in(listed)


def test_finding4_long_names_create_and_mkdir(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.pipe_file(f"d/{NEW255}", b"new")
    fs.mkdir(f"d/{NEWD255}")
    fs.pipe_file(f"d/{NEWD255}/{NEW255}", b"deeper")
    fs.pipe_file(NEW255, b"top")
    assert fs.cat(f"d/{NEW255}") == b"new"
    assert fs.cat(f"d/{NEWD255}/{NEW255}") == b"deeper"
    assert fs.cat(NEW255) == b"top"
    assert {NEW255, NEWD255} <= basenames(fs, "d")
    fs.rm_file(f"d/{NEW255}")  # overlay-only: no whiteout needed
    assert not fs.exists(f"d/{NEW255}")


def test_finding4_long_names_survive_copy_up_of_their_dir(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.pipe_file("d/other", b"o")  # copies d/ up
    assert (longfs.overlay / "d").is_dir()
    for name in LONG_FILES:
        assert fs.cat(f"d/{name}") == content_of(name)
    assert basenames(fs, "d") == {*LONG_FILES, D255, E255, "other"}
    with fs.open(f"d/{F255}", "ab") as f:  # copy-up of a long-named file
        f.write(b"+")
    assert fs.cat(f"d/{F255}") == content_of(F255) + b"+"


def test_finding4_mkdir_over_whited_out_long_name_is_empty(longfs: LongRoots) -> None:
    fs = longfs.fs
    fs.rm(f"d/{E255}", recursive=True)
    fs.mkdir(f"d/{E255}")
    assert fs.ls(f"d/{E255}", detail=False) == []
    assert not fs.exists(f"d/{E255}/inner.txt")
    fs.rm_file(f"d/{F255}")
    fs.pipe_file(f"d/{F255}", b"again")  # a file over a whited-out long name
    assert fs.cat(f"d/{F255}") == b"again"


def test_finding4_name_too_long_and_missing_long_names(longfs: LongRoots) -> None:
    fs = longfs.fs
    for where in ("", "d/"):
        for call in (lambda: fs.info(where + N256), lambda: fs.pipe_file(where + N256, b"x"),
                     lambda: fs.mkdir(where + N256)):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.ENAMETOOLONG, e.value
    fs.pipe_file("d/other", b"o")  # the overlay now holds d/ too
    for where in ("", "d/"):
        with pytest.raises(OSError) as e:
            fs.info(where + MISSING255)
        assert e.value.errno == errno.ENOENT, e.value
        assert not fs.exists(where + MISSING255)
        with pytest.raises(OSError) as e:
            fs.rm_file(where + MISSING255)
        assert e.value.errno == errno.ENOENT, e.value


# ============================================================================ 5. hard links


def test_finding5_library_link_static_file_is_native(roots, union: UnionFileSystem) -> None:
    union.link("dir/a.txt", "dir/hard")
    a, b = os.stat(roots.overlay / "dir" / "a.txt"), os.stat(roots.overlay / "dir" / "hard")
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    assert union.info("dir/a.txt")["nlink"] == union.info("dir/hard")["nlink"] == 2
    with union.open("dir/hard", "ab") as f:
        f.write(b"+")
    assert union.cat("dir/a.txt") == b"a" * 100 + b"+"
    union.rm_file("dir/a.txt")
    assert not union.exists("dir/a.txt")
    assert union.info("dir/hard")["nlink"] == 1
    assert union.cat("dir/hard") == b"a" * 100 + b"+"
    assert (roots.static / "dir" / "a.txt").read_bytes() == b"a" * 100


def test_finding5_library_link_overlay_file(roots, union: UnionFileSystem) -> None:
    union.pipe_file("own", b"mine")
    union.link("own", "dir/own2")  # into a static dir: copied up on the way
    assert os.stat(roots.overlay / "own").st_ino == os.stat(roots.overlay / "dir" / "own2").st_ino
    assert union.cat("dir/own2") == b"mine"
    with pytest.raises(OSError) as e:
        union.link("own", "file.txt")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        union.link("own", ".wh.sneaky")
    assert e.value.errno == errno.EPERM


# ============================================================================ 6. failed rename


def fill_inodes(fs_root: Path, leave: int) -> None:
    """Use up the inodes of ``fs_root``'s filesystem but ``leave``."""
    fill = fs_root / "fill"
    fill.mkdir()
    made = 0
    while True:
        try:
            os.close(os.open(fill / str(made), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            break
        made += 1
    for i in range(leave):
        os.unlink(fill / str(made - 1 - i))
    assert os.statvfs(fs_root).f_ffree == leave


def consistent_after_rename(overlay: Path, static: Path, src: str, dst: str, failed: bool) -> None:
    """Exactly one of src/dst is visible with the original content, the one the outcome says."""
    fs = UnionFileSystem(str(overlay), str(static))  # a fresh view: what is on disk
    original = (static / src).read_bytes()
    visible = {p for p in (src, dst) if fs.exists(p)}
    expected = {src} if failed else {dst}
    assert visible == expected, f"rename {'failed' if failed else 'succeeded'} but {sorted(visible)} visible"
    assert fs.cat(next(iter(visible))) == original
    parent = os.path.dirname(src)
    listed = {os.path.basename(p) for p in fs.ls(parent, detail=False)}
    assert (os.path.basename(src) in listed) != (os.path.basename(dst) in listed), listed
    temps = [os.path.join(d, n) for d, _, files in os.walk(overlay) for n in files if n.startswith(TEMP_PREFIX)]
    assert temps == [], f"copy-up temp files left behind: {temps}"


@pytest.mark.parametrize("free", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("src", ["file.txt", "dir/a.txt"])
def test_finding6_library_failed_rename_leaves_tree_as_it_was(tmp_path: Path, tiny_tmpfs: Path, src: str,
                                                              free: int) -> None:
    static = tmp_path / "static"
    static.mkdir()
    build_static(static)
    before = tree_digest(str(static))
    overlay = tiny_tmpfs / "overlay"
    overlay.mkdir()
    fill_inodes(tiny_tmpfs, free)
    dst = os.path.join(os.path.dirname(src), "renamed")
    fs = UnionFileSystem(str(overlay), str(static))
    try:
        fs.posix_rename(src, dst)
        failed = False
    except OSError:
        failed = True
    consistent_after_rename(overlay, static, src, dst, failed)
    assert tree_digest(str(static)) == before
