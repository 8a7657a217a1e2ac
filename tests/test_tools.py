"""Programs other than Python through the mount: coreutils, findutils, dd and a C program.

Each test runs real tools against a real mount and checks the bytes, names and modes
they leave, in the mount and in the overlay directory. The `roots` fixture checks
afterwards that the static tree is unchanged byte for byte.
"""

from __future__ import annotations

import os
import shutil
import stat as S
import subprocess
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
MiB = 1 << 20


def run(*argv: str | Path, cwd: Path | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "LC_ALL": "C"})  # stable messages
    if check:
        assert proc.returncode == 0, f"{argv} failed ({proc.returncode}): {proc.stderr}"
    return proc


def sh(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run("sh", "-c", script, cwd=cwd)


def snapshot(root: Path, times: bool = False) -> dict[str, tuple]:
    """Every entry below ``root``: type, permission bits, size and content (or link target)."""
    out: dict[str, tuple] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            st = path.lstat()
            rel = str(path.relative_to(root))
            if S.S_ISLNK(st.st_mode):
                body: object = ("link", os.readlink(path))
            elif S.S_ISDIR(st.st_mode):
                body = ("dir",)
            else:
                body = ("file", st.st_size, path.read_bytes())
            perm = None if S.S_ISLNK(st.st_mode) else S.S_IMODE(st.st_mode)
            mtime = st.st_mtime_ns if times and not S.S_ISDIR(st.st_mode) else None
            out[rel] = (*body, perm, mtime)
    return out


def names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def overlay_markers(overlay: Path) -> set[str]:
    return {str(p.relative_to(overlay)) for p in overlay.rglob(".wh.*")}


# ----------------------------------------------------------------------------- cp


def test_cp_static_file_out(roots, mnt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    run("cp", mnt / "dir" / "sub" / "deep.bin", mnt / "file.txt", out)
    assert (out / "deep.bin").read_bytes() == (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    assert (out / "file.txt").read_bytes() == b"static file\n"
    run("cp", "-a", f"{mnt}/.", out / "all")  # the whole tree, attributes kept
    assert snapshot(out / "all", times=True) == snapshot(roots.static, times=True)
    assert list(roots.overlay.iterdir()) == []  # reading copies nothing up


def test_cp_file_in(roots, mnt: Path, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 12345)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    run("cp", src, mnt / "dir" / "in.bin")
    run("cp", src, mnt / "top.bin")
    assert (mnt / "dir" / "in.bin").read_bytes() == data
    assert (roots.overlay / "dir" / "in.bin").read_bytes() == data
    assert (roots.overlay / "top.bin").read_bytes() == data
    # the static directory was made in the overlay without copying its files
    assert sorted(p.name for p in (roots.overlay / "dir").iterdir()) == ["in.bin"]
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "in.bin", "sub"]


def test_cp_a_static_dir_to_new_name(roots, mnt: Path) -> None:
    run("cp", "-a", mnt / "dir", mnt / "dir2")
    expected = snapshot(roots.static / "dir", times=True)
    assert snapshot(mnt / "dir2", times=True) == expected
    assert snapshot(roots.overlay / "dir2", times=True) == expected
    assert S.S_IMODE((mnt / "dir2" / "exec.sh").stat().st_mode) == 0o755
    assert snapshot(mnt / "dir") == snapshot(roots.static / "dir")
    assert not (roots.overlay / "dir").exists()  # the source was only read


def test_cp_r_into_mount(roots, mnt: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "x" / "y").mkdir(parents=True)
    (src / "emptydir").mkdir()
    (src / "one.txt").write_bytes(b"one\n")
    (src / "x" / "two.bin").write_bytes(os.urandom(200_000))
    (src / "x" / "y" / "three.bin").write_bytes(os.urandom(MiB + 1))
    (src / "x" / "zero").write_bytes(b"")
    run("cp", "-r", src, mnt / "dir")
    expected = {k: v[:-2] for k, v in snapshot(src).items()}  # cp -r keeps no modes
    assert {k: v[:-2] for k, v in snapshot(mnt / "dir" / "src").items()} == expected
    assert {k: v[:-2] for k, v in snapshot(roots.overlay / "dir" / "src").items()} == expected
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "src", "sub"]


# ----------------------------------------------------------------------------- mv


def test_mv_file_within_mount(roots, mnt: Path) -> None:
    run("mv", mnt / "file.txt", mnt / "dir" / "moved.txt")
    assert (mnt / "dir" / "moved.txt").read_bytes() == b"static file\n"
    assert "file.txt" not in os.listdir(mnt)
    assert not (mnt / "file.txt").exists()
    assert (roots.overlay / "dir" / "moved.txt").read_bytes() == b"static file\n"
    assert (roots.overlay / ".wh.file.txt").is_file()
    # mtime travels with a rename
    assert (mnt / "dir" / "moved.txt").stat().st_mtime_ns == 1_600_000_000_000_000_000

    (mnt / "new.txt").write_bytes(b"new\n")
    run("mv", mnt / "new.txt", mnt / "empty" / "new2.txt")
    assert (mnt / "empty" / "new2.txt").read_bytes() == b"new\n"
    assert not (mnt / "new.txt").exists()
    assert not (roots.overlay / "new.txt").exists()
    assert not (roots.overlay / ".wh.new.txt").exists()  # static never had it

    # over an existing static file: replaced
    run("mv", mnt / "empty" / "new2.txt", mnt / "dir" / "a.txt")
    assert (mnt / "dir" / "a.txt").read_bytes() == b"new\n"
    assert sorted(os.listdir(mnt / "empty")) == []


def test_mv_static_directory(roots, mnt: Path) -> None:
    expected = snapshot(roots.static / "dir", times=True)
    (mnt / "dir" / "extra.txt").write_bytes(b"overlay file in a static dir\n")
    # as the mount shows it: with the writeback cache the kernel keeps the time of the write
    # and hands it to the overlay after close
    expected["extra.txt"] = snapshot(mnt / "dir", times=True)["extra.txt"]
    run("mv", mnt / "dir", mnt / "renamed")  # rename says EXDEV, mv copies and deletes
    assert snapshot(mnt / "renamed", times=True) == expected
    assert snapshot(roots.overlay / "renamed", times=True) == expected
    assert sorted(os.listdir(mnt)) == ["empty", "file.txt", "link", "renamed"]
    assert not (mnt / "dir").exists()
    assert not (mnt / "dir" / "a.txt").exists()
    assert (roots.overlay / ".wh.dir").is_file()
    # a new directory under the old name is empty: nothing static shows through
    (mnt / "dir").mkdir()
    assert os.listdir(mnt / "dir") == []


def test_mv_overlay_directory(roots, mnt: Path) -> None:
    (mnt / "mine" / "sub").mkdir(parents=True)
    (mnt / "mine" / "sub" / "f").write_bytes(b"f")
    run("mv", mnt / "mine", mnt / "dir" / "yours")
    assert (mnt / "dir" / "yours" / "sub" / "f").read_bytes() == b"f"
    assert not (mnt / "mine").exists()
    assert not (roots.overlay / "mine").exists()
    assert not (roots.overlay / ".wh.mine").exists()


# ----------------------------------------------------------------------------- rm


def test_rm_file_and_rm_r_static_dir(roots, mnt: Path) -> None:
    run("rm", mnt / "file.txt")
    assert not (mnt / "file.txt").exists()
    assert (roots.overlay / ".wh.file.txt").is_file()

    (mnt / "dir" / "sub" / "mine.txt").write_bytes(b"mine")
    run("rm", "-r", mnt / "dir")
    assert sorted(os.listdir(mnt)) == ["empty", "link"]
    for gone in ("dir", "dir/a.txt", "dir/sub", "dir/sub/deep.bin", "dir/sub/mine.txt"):
        assert not os.path.lexists(mnt / gone), gone
    assert ".wh.dir" in overlay_markers(roots.overlay)
    assert not (roots.overlay / "dir").exists()  # the overlay copy went, the whiteout hides static
    assert (roots.static / "dir" / "sub" / "deep.bin").exists()

    run("rm", "-r", mnt / "empty")
    assert sorted(os.listdir(mnt)) == ["link"]
    run("rm", mnt / "link")  # a symlink, not its target
    assert os.listdir(mnt) == []
    assert overlay_markers(roots.overlay) == {".wh.file.txt", ".wh.dir", ".wh.empty", ".wh.link"}
    assert run("find", mnt, "-mindepth", "1").stdout == ""

    # names come back fresh, with nothing static behind them
    (mnt / "dir").mkdir()
    (mnt / "file.txt").write_bytes(b"fresh")
    assert os.listdir(mnt / "dir") == []
    assert (mnt / "file.txt").read_bytes() == b"fresh"


def test_rm_of_missing_name_fails(roots, mnt: Path) -> None:
    run("rm", mnt / "file.txt")
    proc = run("rm", mnt / "file.txt", check=False)
    assert proc.returncode != 0 and "No such file" in proc.stderr
    proc = run("rmdir", mnt / "dir", check=False)
    assert proc.returncode != 0 and "not empty" in proc.stderr
    assert (mnt / "dir" / "a.txt").read_bytes() == b"a" * 100


# ----------------------------------------------------------------------------- dd


def test_dd_8_mib_with_fsync(roots, mnt: Path, tmp_path: Path) -> None:
    data = os.urandom(8 * MiB)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    run("dd", f"if={src}", f"of={mnt / 'big.bin'}", "bs=1M", "conv=fsync", "status=none")
    assert (mnt / "big.bin").stat().st_size == 8 * MiB
    assert (roots.overlay / "big.bin").read_bytes() == data
    back = tmp_path / "back.bin"
    run("dd", f"if={mnt / 'big.bin'}", f"of={back}", "bs=1M", "status=none")
    assert back.read_bytes() == data
    # an odd block size that straddles FUSE request boundaries
    run("dd", f"if={mnt / 'big.bin'}", f"of={back}", "bs=1000003", "status=none")
    assert back.read_bytes() == data


def test_dd_seek_notrunc_into_static_file(roots, mnt: Path, tmp_path: Path) -> None:
    original = (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    patch = tmp_path / "patch"
    patch.write_bytes(b"P" * 4096)
    target = mnt / "dir" / "sub" / "deep.bin"
    run("dd", f"if={patch}", f"of={target}", "bs=4096", "seek=10", "conv=notrunc", "status=none")
    expected = original[:40960] + b"P" * 4096 + original[45056:]
    assert len(expected) == len(original)
    assert target.read_bytes() == expected
    assert (roots.overlay / "dir" / "sub" / "deep.bin").read_bytes() == expected

    # past the end: a hole of zeros, then the patch
    run("dd", f"if={patch}", f"of={target}", "bs=1000", "count=1", "seek=400", "conv=notrunc",
        "status=none")
    expected = expected + b"\0" * (400_000 - len(expected)) + b"P" * 1000
    assert target.stat().st_size == 401_000
    assert target.read_bytes() == expected
    assert (roots.overlay / "dir" / "sub" / "deep.bin").read_bytes() == expected

    # without notrunc dd truncates at the end of what it wrote
    run("dd", f"if={patch}", f"of={mnt / 'dir' / 'a.txt'}", "bs=10", "count=1", "seek=2",
        "status=none")
    assert (mnt / "dir" / "a.txt").read_bytes() == b"a" * 20 + b"P" * 10


# ----------------------------------------------------------------------------- shell appends


def test_cat_append_to_static_file(roots, mnt: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"more\n")
    sh(f"cat '{extra}' >> '{mnt / 'file.txt'}'")
    sh(f"echo again >> '{mnt / 'file.txt'}'")
    expected = b"static file\nmore\nagain\n"
    assert (mnt / "file.txt").read_bytes() == expected
    assert run("cat", mnt / "file.txt").stdout == expected.decode()
    assert (roots.overlay / "file.txt").read_bytes() == expected
    assert (roots.static / "file.txt").read_bytes() == b"static file\n"
    assert S.S_IMODE((roots.overlay / "file.txt").stat().st_mode) == \
        S.S_IMODE((roots.static / "file.txt").stat().st_mode)

    # appending to a new file and to a bigger static one
    sh(f"echo one >> '{mnt / 'new.log'}'; echo two >> '{mnt / 'new.log'}'")
    assert (mnt / "new.log").read_bytes() == b"one\ntwo\n"
    deep = (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    sh(f"cat '{extra}' >> '{mnt / 'dir' / 'sub' / 'deep.bin'}'")
    assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == deep + b"more\n"


def test_sed_in_place_replaces_static_file(roots, mnt: Path) -> None:
    # sed -i writes a temporary file beside the original and renames it over it
    run("sed", "-i", "s/static/STATIC/", mnt / "file.txt")
    run("sed", "-i", "1s/^/#edited\\n/", mnt / "dir" / "exec.sh")
    assert (mnt / "file.txt").read_bytes() == b"STATIC file\n"
    assert (roots.overlay / "file.txt").read_bytes() == b"STATIC file\n"
    assert (mnt / "dir" / "exec.sh").read_bytes() == b"#edited\n#!/bin/sh\necho hi\n"
    assert S.S_IMODE((mnt / "dir" / "exec.sh").stat().st_mode) == 0o755
    assert sorted(os.listdir(mnt)) == ["dir", "empty", "file.txt", "link"]  # no temp names left
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "sub"]


def test_find_delete(roots, mnt: Path) -> None:
    (mnt / "dir" / "sub" / "x.txt").write_bytes(b"x")
    run("find", mnt, "-name", "*.txt", "-delete")
    assert sorted(run("find", ".", cwd=mnt).stdout.splitlines()) == \
        [".", "./dir", "./dir/exec.sh", "./dir/sub", "./dir/sub/deep.bin", "./empty", "./link"]
    assert {".wh.file.txt", "dir/.wh.a.txt"} <= overlay_markers(roots.overlay)
    assert not (roots.overlay / "dir" / "sub" / "x.txt").exists()


# ----------------------------------------------------------------------------- listings


def _apply_changes(root: Path) -> None:
    """The same changes, made through the mount or on a plain reference copy."""
    (root / "new" / "deeper").mkdir(parents=True)
    (root / "new" / "deeper" / "n.bin").write_bytes(b"n" * 5000)
    (root / "dir" / "sub" / "added.txt").write_bytes(b"added")
    (root / "dir" / "a.txt").unlink()
    (root / "file.txt").write_bytes(b"replaced")
    os.chmod(root / "file.txt", 0o600)
    (root / "empty" / "x").mkdir()
    os.symlink("dir/sub", root / "sublink")


@pytest.fixture
def reference(roots, mnt: Path, tmp_path: Path) -> Path:
    ref = tmp_path / "reference"
    shutil.copytree(roots.static, ref, symlinks=True)
    _apply_changes(ref)
    _apply_changes(mnt)
    return ref


def test_find_matches_reference(roots, mnt: Path, reference: Path) -> None:
    for args in ([], ["-type", "f"], ["-type", "d"], ["-type", "l"], ["-name", "*.bin"],
                 ["-size", "+1k"], ["-empty"]):
        expected = sorted(run("find", ".", *args, cwd=reference).stdout.splitlines())
        got = sorted(run("find", ".", *args, cwd=mnt).stdout.splitlines())
        assert got == expected, args
    detail = ["-printf", "%y %m %s %p %l\\n"]
    got = run("find", ".", "-not", "-type", "d", *detail, cwd=mnt).stdout.splitlines()
    expected = run("find", ".", "-not", "-type", "d", *detail, cwd=reference).stdout.splitlines()
    assert sorted(got) == sorted(expected)
    assert "./dir/a.txt" not in run("find", ".", cwd=mnt).stdout
    # find -L follows the symlinks into the union
    assert sorted(run("find", "-L", ".", "-type", "f", cwd=mnt).stdout.splitlines()) == \
        sorted(run("find", "-L", ".", "-type", "f", cwd=reference).stdout.splitlines())


def _ls_entries(directory: Path) -> dict[str, tuple[str, str]]:
    """name -> (mode string, size) from ``ls -ln``."""
    out = run("ls", "-lna", directory).stdout.splitlines()
    entries = {}
    for line in out[1:]:  # "total N"
        fields = line.split(None, 8)
        name = fields[8].split(" -> ")[0]
        if name in (".", ".."):
            continue
        size = fields[4] if fields[0][0] in "-l" else "dir"  # directory sizes are storage's own
        entries[name] = (fields[0].rstrip("+."), size)
    return entries


def test_ls_l_sizes_and_modes(roots, mnt: Path, reference: Path) -> None:
    for sub in ("", "dir", "dir/sub", "empty", "new/deeper"):
        got, expected = _ls_entries(mnt / sub), _ls_entries(reference / sub)
        assert got == expected, sub
    assert _ls_entries(mnt)["file.txt"] == ("-rw-------", "8")
    assert _ls_entries(mnt / "dir")["exec.sh"][0] == "-rwxr-xr-x"
    assert _ls_entries(mnt)["link"][0].startswith("l")


# ----------------------------------------------------------------------------- metadata


def test_touch(roots, mnt: Path) -> None:
    run("touch", mnt / "new.txt", mnt / "dir" / "sub" / "new2.txt")
    assert (mnt / "new.txt").read_bytes() == b""
    assert (roots.overlay / "new.txt").is_file()
    assert (roots.overlay / "dir" / "sub" / "new2.txt").is_file()

    static_mtime = (roots.static / "file.txt").stat().st_mtime_ns
    before = time.time_ns() - 2_000_000_000
    run("touch", mnt / "file.txt")
    st = (mnt / "file.txt").stat()
    assert st.st_mtime_ns >= before and st.st_mtime_ns != static_mtime
    assert (mnt / "file.txt").read_bytes() == b"static file\n"  # copied up with its data
    assert (roots.overlay / "file.txt").read_bytes() == b"static file\n"
    assert (roots.overlay / "file.txt").stat().st_mtime_ns == st.st_mtime_ns
    assert (roots.static / "file.txt").stat().st_mtime_ns == static_mtime

    run("touch", "-m", "-d", "@1234567890", mnt / "dir" / "sub" / "deep.bin")
    assert (mnt / "dir" / "sub" / "deep.bin").stat().st_mtime_ns == 1_234_567_890 * 10**9
    assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == \
        (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    run("touch", "-h", "-d", "@1100000000", mnt / "link")  # a static symlink itself
    assert (mnt / "link").lstat().st_mtime_ns == 11 * 10**17
    assert os.readlink(roots.overlay / "link") == "file.txt"
    assert (roots.static / "link").lstat().st_mtime_ns != 11 * 10**17
    run("touch", "-d", "@1000000000", mnt / "empty")  # a static directory
    assert (mnt / "empty").stat().st_mtime_ns == 10**18
    assert (roots.overlay / "empty").is_dir()


def test_chmod(roots, mnt: Path) -> None:
    run("chmod", "600", mnt / "file.txt")
    assert S.S_IMODE((mnt / "file.txt").stat().st_mode) == 0o600
    assert S.S_IMODE((roots.overlay / "file.txt").stat().st_mode) == 0o600
    assert (mnt / "file.txt").read_bytes() == b"static file\n"
    assert S.S_IMODE((roots.static / "file.txt").stat().st_mode) != 0o600

    run("chmod", "a-x", mnt / "dir" / "exec.sh")
    assert S.S_IMODE((mnt / "dir" / "exec.sh").stat().st_mode) == 0o644
    run("touch", mnt / "mine")
    run("chmod", "u=rwx,g=rx,o=", mnt / "mine")
    assert S.S_IMODE((mnt / "mine").stat().st_mode) == 0o750
    assert S.S_IMODE((roots.overlay / "mine").stat().st_mode) == 0o750
    run("chmod", "-R", "go-rwx", mnt / "dir" / "sub")
    assert S.S_IMODE((mnt / "dir" / "sub").stat().st_mode) & 0o077 == 0
    assert S.S_IMODE((mnt / "dir" / "sub" / "deep.bin").stat().st_mode) & 0o077 == 0
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "exec.sh", "sub"]  # still merged
    assert (mnt / "dir" / "sub" / "deep.bin").read_bytes() == \
        (roots.static / "dir" / "sub" / "deep.bin").read_bytes()
    # executable bit set through the mount works for exec
    (mnt / "run.sh").write_bytes(b"#!/bin/sh\necho ran\n")
    run("chmod", "+x", mnt / "run.sh")
    assert run(mnt / "run.sh").stdout == "ran\n"


def test_ln_s(roots, mnt: Path) -> None:
    run("ln", "-s", "file.txt", mnt / "newlink")
    run("ln", "-s", "../file.txt", mnt / "dir" / "up")
    run("ln", "-s", "sub", mnt / "dir" / "sublink")
    assert os.readlink(mnt / "newlink") == "file.txt"
    assert (mnt / "newlink").read_bytes() == b"static file\n"
    assert run("cat", mnt / "dir" / "up").stdout == "static file\n"
    assert sorted(os.listdir(mnt / "dir" / "sublink")) == ["deep.bin"]
    assert os.readlink(roots.overlay / "newlink") == "file.txt"
    assert os.readlink(roots.overlay / "dir" / "up") == "../file.txt"
    assert run("readlink", mnt / "link").stdout == "file.txt\n"  # a static symlink
    proc = run("ln", "-s", "x", mnt / "link", check=False)
    assert proc.returncode != 0 and "exists" in proc.stderr
    run("ln", "-sf", "dir/a.txt", mnt / "link")  # replace a static symlink
    assert os.readlink(mnt / "link") == "dir/a.txt"
    assert (mnt / "link").read_bytes() == b"a" * 100
    # a hard link of a static file copies it up, then both names are one file
    run("ln", mnt / "file.txt", mnt / "hard")
    assert os.stat(mnt / "hard").st_ino == os.stat(mnt / "file.txt").st_ino


# ----------------------------------------------------------------------------- a C program


def _pattern(n: int, mul: int, add: int, mod: int) -> bytes:
    return bytes((i * mul + add) % mod for i in range(n))


def roundtrip_expected() -> bytes:
    """What tests/c/roundtrip.c leaves in its file (kept in step with the C source)."""
    a_len, b_len, b_off = 3 * MiB + 123, 3 * MiB, 5 * MiB
    data = bytearray(b_off + b_len)
    data[:a_len] = _pattern(a_len, 31, 7, 251)
    data[b_off:] = _pattern(b_len, 17, 3, 253)
    data[1000:1077] = b"x" * 77
    final = 4 * MiB + 7
    return bytes(data[:final]) + b"\0" * 4096 + b"TAIL"


@pytest.fixture(scope="module")
def roundtrip_binary(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed, so the C program cannot be built")
    out = tmp_path_factory.mktemp("c") / "roundtrip"
    run("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, TESTS / "c" / "roundtrip.c")
    return out


def test_c_roundtrip(roots, mnt: Path, roundtrip_binary: Path) -> None:
    proc = run(roundtrip_binary, mnt, "rt.bin", "file.txt", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")
    expected = roundtrip_expected()
    assert (roots.overlay / "file.txt").read_bytes() == expected
    assert S.S_IMODE((roots.overlay / "file.txt").stat().st_mode) == 0o640
    assert (mnt / "file.txt").read_bytes() == expected
    assert not os.path.lexists(mnt / "rt.bin")
    assert not os.path.lexists(roots.overlay / "rt.bin")
    assert sorted(os.listdir(roots.overlay)) == ["file.txt"]  # no whiteout, no temp files
    assert (roots.static / "file.txt").read_bytes() == b"static file\n"
