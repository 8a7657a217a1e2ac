"""Hardening of the mount: real FUSE mounts (daemon as root, `-o allow_other`) used by a
throwaway unprivileged user who can write one overlay directory, `pub` (0777, theirs).

Findings covered (test names carry the finding number):

1. symlinks inside a layer are never followed by the daemon, even where the kernel still
   holds a directory that was swapped for a symlink behind its back;
2. an open directory handle is never re-resolved by path;
3. copy-up temporary files are private, leftovers are removed at mount start, and new
   entries get exactly the mode their creator asked for;
4. names of 252-255 bytes work for every operation;
5. link(2), mkfifo, Unix sockets and mknod work on a local overlay;
6. a rename that fails part-way (no free inodes) leaves the tree as it was;
9. the daemon's memory does not grow with every path ever seen.

A "root-only directory" (0700, root's) stands in for /root or /etc: the user cannot reach it
directly, so anything of it that shows through the mount was handed over by the daemon.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import stat as S
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import build_static
from mounting import mounted, write_config
from test_hardening_library import (D255, E255, F252, F253, F255, LONG_FILES, MISSING255, N256, NEW255,
                                    NEWD255, OTHER255, R255, U255, build_long_static, consistent_after_rename,
                                    content_of, fill_inodes, longest_name_below)
from treehash import tree_digest
from users import User, as_user_json, hostile_user, public_dir, spawn_as_user, tree_owners  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run the daemon as root for another user")

WH = ".wh."
TEMP_PREFIX = ".wh..wh.tmp."
SECRET_NAMES = ("TOPSECRET-alpha.key", "TOPSECRET-beta.txt", "TOPSECRET-gamma.txt", "TOPSECRET-delta.key",
                "TOPSECRET-dir", "TOPSECRET-top.txt")
SECRET_COMMON_SIZE = 31337  # "common" exists in the root-only dir too, with this size
SECRET_SUB_MODE = 0o751


def fails_with(code: int, call, *args, **kwargs) -> None:
    with pytest.raises(OSError) as e:
        call(*args, **kwargs)
    assert e.value.errno == code, f"{getattr(call, '__name__', call)}{args}: {e.value!r}, expected {errno.errorcode[code]}"


def no_markers(names) -> bool:
    return not any(str(n).startswith(WH) for n in names)


# ---------------------------------------------------------------------------- fixtures


def make_secret(path: Path) -> Path:
    """The root-only directory: secret/ (0700) with sub/ holding distinctive names."""
    path.mkdir()
    os.chmod(path, 0o700)
    (path / "TOPSECRET-top.txt").write_bytes(b"classified top\n")
    sub = path / "sub"
    sub.mkdir()
    (sub / "TOPSECRET-alpha.key").write_bytes(b"classified alpha\n")
    os.chmod(sub / "TOPSECRET-alpha.key", 0o600)
    (sub / "TOPSECRET-beta.txt").write_bytes(b"classified beta\n")
    os.chmod(sub / "TOPSECRET-beta.txt", 0o644)
    for name in ("TOPSECRET-gamma.txt", "TOPSECRET-delta.key"):
        (sub / name).write_bytes(b"classified " + name.encode())
        os.chmod(sub / name, 0o644)
    (sub / "TOPSECRET-dir").mkdir()
    (sub / "common").write_bytes(b"S" * SECRET_COMMON_SIZE)
    os.chmod(sub / "common", 0o600)
    os.chmod(sub, SECRET_SUB_MODE)
    return path


@dataclass
class Pub:
    base: Path
    static: Path
    overlay: Path
    mnt: Path
    secret: Path
    config: Path
    user: User

    def secret_state(self) -> tuple[str, dict[str, tuple[int, int, int]]]:
        return tree_digest(str(self.secret)), tree_owners(self.secret)

    def run(self, script: str, *args: str) -> dict:
        """Run a Python script as the user with (mnt, overlay, secret, *args); its JSON result."""
        return as_user_json(self.user.uid, self.user.gid, script, str(self.mnt), str(self.overlay),
                            str(self.secret), *args, timeout=120)


@pytest.fixture
def pub(public_dir: Path, hostile_user: User) -> Iterator[Pub]:
    """Static: conftest's tree plus pub/sd/sub/ (0777, root's: anyone may create in it).
    Overlay: pub/ (0777, the user's). A root-only directory beside them."""
    base = public_dir
    static, overlay, mnt = base / "static", base / "overlay", base / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
        os.chmod(d, 0o755)
    build_static(static)
    sub = static / "pub" / "sd" / "sub"
    sub.mkdir(parents=True)
    os.chmod(static / "pub", 0o755)
    os.chmod(static / "pub" / "sd", 0o755)
    (sub / "static_file").write_bytes(b"static")
    (sub / "common").write_bytes(b"stat!")
    os.chmod(sub, 0o777)
    (overlay / "pub").mkdir()
    os.chown(overlay / "pub", hostile_user.uid, hostile_user.gid)
    os.chmod(overlay / "pub", 0o777)
    secret = make_secret(base / "secret")
    config = write_config(base / "config.json", overlay, static)
    before = tree_digest(str(static))
    yield Pub(base, static, overlay, mnt, secret, config, hostile_user)
    assert tree_digest(str(static)) == before, "the static tree changed"


def assert_secret_untouched(pub: Pub, before, results: dict) -> None:
    digest, owners = pub.secret_state()
    theirs = sorted(p for p, (uid, _, _) in owners.items() if uid == pub.user.uid)
    assert not theirs, f"entries owned by the user appeared in the root-only directory: {theirs}; {results}"
    changed = sorted(set(owners.items()) ^ set(before[1].items()))
    assert (digest, owners) == before, f"the root-only directory changed ({changed}); the user's results: {results}"


def assert_no_secret_names(listing, what: str, results: dict) -> None:
    if listing[0] != "ok":
        return
    shown = json.dumps(listing[1])
    leaked = [n for n in SECRET_NAMES if n in shown]
    assert not leaked, f"{what} showed the root-only directory's names {leaked}; {results}"


PRELUDE = r'''
import errno, json, os, stat, sys
res = {}
def attempt(key, fn):
    try:
        res[key] = ["ok", fn()]
    except OSError as e:
        res[key] = ["err", errno.errorcode.get(e.errno, str(e.errno))]
def summary(st):
    return {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size}
def write(path, data="x"):
    with open(path, "w") as f:
        f.write(data)
def read(path):
    with open(path) as f:
        return f.read()
mnt, ovl, secret = sys.argv[1:4]
'''

CACHING = {"default": (), "long": ("entry_timeout=60", "attr_timeout=60")}


# ============================================================================ 1. symlink swap


SWAP_SCRIPT = PRELUDE + r'''
where = sys.argv[4]
if where == "overlay":  # a directory of the user's own, made through the mount
    os.makedirs(f"{mnt}/pub/dd/sub")
    write(f"{mnt}/pub/dd/sub/mine", "mine")
    name = "dd"
else:  # static's pub/sd/sub, not yet in the overlay
    name = "sd"
sub = f"{mnt}/pub/{name}/sub"
os.stat(sub)
res["before"] = sorted(os.listdir(sub))
# The kernel now holds pub/<name> and pub/<name>/sub as directories. Behind its back, make
# the overlay's pub/<name> a symlink to the root-only directory (the user may write pub/).
if where == "overlay":
    os.rename(f"{ovl}/pub/dd", f"{ovl}/pub/dd.old")
os.symlink(secret, f"{ovl}/pub/{name}")
# Writes first: the kernel still has the original directory's attributes (the user's, or
# static's 0777) and lets them through to the daemon. (A stat would refresh them.)
attempt("create", lambda: write(f"{sub}/planted"))
attempt("mkdir", lambda: os.mkdir(f"{sub}/planted-dir"))
attempt("symlink", lambda: os.symlink("anywhere", f"{sub}/planted-link"))
attempt("mkfifo", lambda: os.mkfifo(f"{sub}/planted-fifo"))
attempt("rename_secret", lambda: os.rename(f"{sub}/TOPSECRET-gamma.txt", f"{sub}/moved"))
attempt("unlink_secret", lambda: os.unlink(f"{sub}/TOPSECRET-delta.key"))
attempt("rmdir_secret", lambda: os.rmdir(f"{sub}/TOPSECRET-dir"))
attempt("chmod_dir", lambda: os.chmod(sub, 0o777))
attempt("utime_dir", lambda: os.utime(sub))
# then reads
attempt("listdir", lambda: sorted(os.listdir(sub)))
attempt("stat_secret", lambda: summary(os.stat(f"{sub}/TOPSECRET-alpha.key")))
attempt("read_secret", lambda: read(f"{sub}/TOPSECRET-beta.txt"))
attempt("stat_common", lambda: summary(os.stat(f"{sub}/common")))
attempt("stat_dir", lambda: summary(os.stat(sub)))
print(json.dumps(res))
'''


@pytest.mark.parametrize("caching", sorted(CACHING))
@pytest.mark.parametrize("where", ["overlay", "static"])
def test_finding1_mount_swapped_dir_symlink_is_never_followed(pub: Pub, where: str, caching: str) -> None:
    before = pub.secret_state()
    with mounted(pub.config, pub.mnt, "allow_other", *CACHING[caching]):
        res = pub.run(SWAP_SCRIPT, where)
    assert res["before"] == (["mine"] if where == "overlay" else ["common", "static_file"]), res
    assert_secret_untouched(pub, before, res)
    assert_no_secret_names(res["listdir"], "listing the swapped directory", res)
    assert res["stat_secret"][0] == "err", f"stat of a root-only file succeeded: {res['stat_secret']}"
    assert res["read_secret"][0] == "err", f"read a root-only file: {res['read_secret']}"
    if res["stat_common"][0] == "ok":
        assert res["stat_common"][1]["size"] != SECRET_COMMON_SIZE, f"stat showed the root-only file: {res}"
    if res["stat_dir"][0] == "ok":
        assert res["stat_dir"][1]["mode"] & 0o7777 != SECRET_SUB_MODE, f"stat showed the root-only dir: {res}"


# ============================================================================ 2. directory handles


DIRFD_SCRIPT = PRELUDE + r'''
where = sys.argv[4]
if where == "overlay":
    os.makedirs(f"{mnt}/pub/x2/sub")
    write(f"{mnt}/pub/x2/sub/orig-file", "orig")
    write(f"{mnt}/pub/x2/sub/common", "mine!")
    name = "x2"
else:
    name = "sd"
fd = os.open(f"{mnt}/pub/{name}/sub", os.O_RDONLY | os.O_DIRECTORY)
res["before"] = sorted(os.listdir(fd))
# with the directory open, swap its parent for a symlink to the root-only directory
if where == "overlay":
    os.rename(f"{ovl}/pub/x2", f"{ovl}/pub/x2.old")
os.symlink(secret, f"{ovl}/pub/{name}")
# writes first, while the kernel still has the original directory's attributes
attempt("create_at", lambda: os.close(os.open("planted-at", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644, dir_fd=fd)))
attempt("mkdir_at", lambda: os.mkdir("planted-dir-at", dir_fd=fd))
attempt("unlink_at", lambda: os.unlink("TOPSECRET-delta.key", dir_fd=fd))
attempt("fchmod", lambda: os.fchmod(fd, 0o777))
attempt("listdir_fd", lambda: sorted(os.listdir(fd)))
def scan():
    out = []
    with os.scandir(fd) as entries:
        for e in entries:
            try:
                out.append([e.name, summary(e.stat(follow_symlinks=False))])
            except OSError as err:
                out.append([e.name, errno.errorcode.get(err.errno, str(err.errno))])
    return sorted(out)
attempt("scandir_fd", scan)
attempt("stat_at_secret", lambda: summary(os.stat("TOPSECRET-alpha.key", dir_fd=fd, follow_symlinks=False)))
attempt("stat_at_common", lambda: summary(os.stat("common", dir_fd=fd, follow_symlinks=False)))
def read_at(name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 1000).decode()
    finally:
        os.close(f)
attempt("read_at_secret", lambda: read_at("TOPSECRET-beta.txt"))
attempt("fstat", lambda: summary(os.fstat(fd)))
os.close(fd)
print(json.dumps(res))
'''


@pytest.mark.parametrize("where", ["overlay", "static"])
def test_finding2_open_dir_handle_is_not_re_resolved(pub: Pub, where: str) -> None:
    before = pub.secret_state()
    with mounted(pub.config, pub.mnt, "allow_other"):
        res = pub.run(DIRFD_SCRIPT, where)
    assert res["before"] == (["common", "orig-file"] if where == "overlay" else ["common", "static_file"]), res
    assert_secret_untouched(pub, before, res)
    assert_no_secret_names(res["listdir_fd"], "listing through the open directory", res)
    assert_no_secret_names(res["scandir_fd"], "scandir through the open directory", res)
    if res["scandir_fd"][0] == "ok":
        for name, attrs in res["scandir_fd"][1]:
            if isinstance(attrs, dict):
                assert attrs["size"] != SECRET_COMMON_SIZE, f"{name}: the root-only file's attributes: {res}"
    assert res["stat_at_secret"][0] == "err", f"a root-only name was found: {res['stat_at_secret']}"
    assert res["read_at_secret"][0] == "err", f"read a root-only file: {res['read_at_secret']}"
    if res["stat_at_common"][0] == "ok":
        assert res["stat_at_common"][1]["size"] != SECRET_COMMON_SIZE, f"the root-only file's attributes: {res}"
    if res["fstat"][0] == "ok":
        assert res["fstat"][1]["mode"] & 0o7777 != SECRET_SUB_MODE, f"fstat showed the root-only dir: {res}"


# ============================================================================ 3. copy-up privacy, modes


POLL_SCRIPT = r'''
import errno, json, os, sys, time
d, stop = sys.argv[1:3]
seen, opened, refused = set(), set(), {}
deadline = time.monotonic() + 300
print("ready", flush=True)
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for n in names:  # the copy-up's temporary file, whatever its name, and the final file
        seen.add(n)
        for label, flags in (("read", os.O_RDONLY), ("write", os.O_WRONLY)):
            try:
                fd = os.open(os.path.join(d, n), flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as e:
                code = errno.errorcode.get(e.errno, str(e.errno))
                refused[code] = refused.get(code, 0) + 1
            else:
                os.close(fd)
                opened.add((n, label))
print(json.dumps({"seen": sorted(seen), "opened": sorted(opened), "refused": refused}))
'''


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_finding3_copy_up_temp_files_are_private(public_dir: Path, hostile_user: User, big_static) -> None:
    """While root's append copies a 400 MiB root-only (0600) static file up, the user, polling
    the overlay directory (theirs, 0777) directly, can never open the file in flight (nor
    anything else that appears there)."""
    static, static_digest = big_static
    overlay, mnt, stop = public_dir / "overlay", public_dir / "mnt", public_dir / "stop"
    for d in (overlay, mnt):
        d.mkdir()
        os.chmod(d, 0o755)
    (overlay / "pub").mkdir()
    os.chown(overlay / "pub", hostile_user.uid, hostile_user.gid)
    os.chmod(overlay / "pub", 0o777)
    config = write_config(public_dir / "config.json", overlay, static)
    size = os.stat(static / "pub" / "big.bin").st_size
    with mounted(config, mnt, "allow_other"):
        poller = spawn_as_user(hostile_user.uid, hostile_user.gid, POLL_SCRIPT, str(overlay / "pub"), str(stop))
        try:
            ready = poller.stdout.readline().strip()
            assert ready == "ready", f"the polling script did not start: {ready!r}"
            with open(mnt / "pub" / "big.bin", "ab") as f:
                f.write(b"TAIL")
        finally:
            stop.touch()
            try:
                out, err = poller.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                poller.kill()
                out, err = poller.communicate()
        assert os.stat(mnt / "pub" / "big.bin").st_size == size + 4
    assert poller.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["opened"] == [], (f"the user opened files of the copy-up: {result['opened'][:6]} "
                                    f"(names seen in the overlay directory: {result['seen']})")
    final = os.stat(overlay / "pub" / "big.bin")
    assert S.S_IMODE(final.st_mode) == 0o600, oct(final.st_mode)
    assert (final.st_uid, final.st_gid) == (0, 0)
    assert final.st_size == size + 4
    assert not [n for n in os.listdir(overlay / "pub") if n.startswith(TEMP_PREFIX)]
    assert sha256_of(static / "pub" / "big.bin") == static_digest, "the static file changed"


def test_finding3_leftover_temp_files_removed_at_mount_start(roots) -> None:
    (roots.overlay / "dir").mkdir()
    leftovers = [roots.overlay / "dir" / ".wh..wh.tmp.deadbeef", roots.overlay / ".wh..wh.tmp.cafebabe"]
    for path in leftovers:
        path.write_bytes(b"half a copy")
        os.chmod(path, 0o666)
    kept = [roots.overlay / "dir" / ".wh.exec.sh", roots.overlay / "dir" / "x.wh..wh.tmp.1",
            roots.overlay / "dir" / "mine"]
    for path in kept:
        path.write_bytes(b"")
    with mounted(roots.config, roots.mountpoint):
        assert sorted(os.listdir(roots.mountpoint / "dir")) == ["a.txt", "mine", "sub", "x.wh..wh.tmp.1"]
        deadline = time.monotonic() + 5  # allow a clean-up that runs beside the first requests
        while any(os.path.lexists(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.name for p in leftovers if os.path.lexists(p)] == [], "leftover copy-up files kept"
        assert all(p.exists() for p in kept), [p.name for p in kept if not p.exists()]


MODES_SCRIPT = r'''
import json, os, sys
d = sys.argv[1]
out = {}
for umask, fmode, dmode in ((0o022, 0o640, 0o750), (0o077, 0o666, 0o777), (0o000, 0o606, 0o705),
                            (0o027, 0o777, 0o777)):
    os.umask(umask)
    tag = oct(umask)
    os.close(os.open(f"{d}/f{tag}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, fmode))
    os.mkdir(f"{d}/d{tag}", dmode)
    out[tag] = [os.stat(f"{d}/f{tag}").st_mode & 0o7777, os.stat(f"{d}/d{tag}").st_mode & 0o7777]
print(json.dumps(out))
'''


def test_finding3_new_entries_get_exactly_the_callers_mode(pub: Pub) -> None:
    with mounted(pub.config, pub.mnt, "allow_other"):
        shown = as_user_json(pub.user.uid, pub.user.gid, MODES_SCRIPT, str(pub.mnt / "pub"))
    expected = {oct(0o022): [0o640, 0o750], oct(0o077): [0o600, 0o700], oct(0o000): [0o606, 0o705],
                oct(0o027): [0o750, 0o750]}
    assert shown == expected
    for tag, (fmode, dmode) in expected.items():
        f, d = os.stat(pub.overlay / "pub" / f"f{tag}"), os.stat(pub.overlay / "pub" / f"d{tag}")
        assert (S.S_IMODE(f.st_mode), S.S_IMODE(d.st_mode)) == (fmode, dmode), tag
        assert (f.st_uid, d.st_uid) == (pub.user.uid, pub.user.uid)


# ============================================================================ 4. long names


@dataclass
class LongRoots:
    static: Path
    overlay: Path
    mountpoint: Path


@pytest.fixture
def long_roots(tmp_path: Path) -> Iterator[LongRoots]:
    """A mount over static's long names (test_hardening_library.build_long_static)."""
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
    build_long_static(static)
    before = tree_digest(str(static))
    with mounted(write_config(tmp_path / "config.json", overlay, static), mnt):
        yield LongRoots(static, overlay, mnt)
    assert tree_digest(str(static)) == before, "the static tree changed"
    assert longest_name_below(overlay) <= 255


@pytest.fixture
def long_mnt(long_roots: LongRoots) -> Path:
    return long_roots.mountpoint


def test_finding4_mount_long_names_stat_read_list(long_mnt: Path) -> None:
    mnt = long_mnt
    for name in LONG_FILES:
        assert os.stat(mnt / "d" / name).st_size == len(content_of(name)), name
        assert (mnt / "d" / name).read_bytes() == content_of(name)
    assert S.S_ISDIR(os.stat(mnt / "d" / D255).st_mode)
    assert (mnt / R255).read_bytes() == content_of(R255)
    assert set(os.listdir(mnt / "d")) == {*LONG_FILES, D255, E255}
    assert R255 in os.listdir(mnt)


@pytest.mark.parametrize("name", LONG_FILES, ids=["252", "253", "255", "utf8-255"])
def test_finding4_mount_long_names_unlink_static_file(long_roots: LongRoots, name: str) -> None:
    mnt = long_roots.mountpoint
    os.unlink(mnt / "d" / name)
    fails_with(errno.ENOENT, os.stat, mnt / "d" / name)
    listed = os.listdir(mnt / "d")
    assert set(listed) == {*LONG_FILES, D255, E255} - {name}
    assert no_markers(listed)
    assert (long_roots.static / "d" / name).exists()


def test_finding4_mount_long_name_unlink_at_root(long_mnt: Path) -> None:
    os.unlink(long_mnt / R255)
    fails_with(errno.ENOENT, os.stat, long_mnt / R255)
    assert R255 not in os.listdir(long_mnt)


def test_finding4_mount_long_names_rmdir(long_mnt: Path) -> None:
    os.rmdir(long_mnt / "d" / D255)
    fails_with(errno.ENOENT, os.stat, long_mnt / "d" / D255)
    shutil.rmtree(long_mnt / "d" / E255)
    assert set(os.listdir(long_mnt / "d")) == set(LONG_FILES)


def test_finding4_mount_long_names_rename(long_mnt: Path) -> None:
    mnt = long_mnt
    os.rename(mnt / "d" / F255, mnt / "d" / "short")
    assert (mnt / "d" / "short").read_bytes() == content_of(F255)
    fails_with(errno.ENOENT, os.stat, mnt / "d" / F255)
    os.rename(mnt / "file.txt", mnt / "d" / NEW255)
    assert (mnt / "d" / NEW255).read_bytes() == b"static file\n"
    os.rename(mnt / "d" / NEW255, mnt / "d" / OTHER255)
    os.replace(mnt / "d" / F253, mnt / "d" / U255)
    assert (mnt / "d" / U255).read_bytes() == content_of(F253)
    listed = os.listdir(mnt / "d")
    assert set(listed) == {F252, U255, D255, E255, "short", OTHER255}
    assert "file.txt" not in os.listdir(mnt)


def test_finding4_mount_long_names_create_and_mkdir(long_mnt: Path) -> None:
    mnt = long_mnt
    (mnt / "d" / NEW255).write_bytes(b"new")
    os.mkdir(mnt / "d" / NEWD255)
    (mnt / "d" / NEWD255 / NEW255).write_bytes(b"deeper")
    (mnt / NEW255).write_bytes(b"top")
    assert (mnt / "d" / NEWD255 / NEW255).read_bytes() == b"deeper"
    assert (mnt / NEW255).read_bytes() == b"top"
    assert {NEW255, NEWD255} <= set(os.listdir(mnt / "d"))
    os.unlink(mnt / "d" / NEW255)
    assert NEW255 not in os.listdir(mnt / "d")


def test_finding4_mount_long_names_survive_copy_up_of_their_dir(long_mnt: Path) -> None:
    mnt = long_mnt
    (mnt / "d" / "other").write_bytes(b"o")
    for name in LONG_FILES:
        assert (mnt / "d" / name).read_bytes() == content_of(name)
    assert set(os.listdir(mnt / "d")) == {*LONG_FILES, D255, E255, "other"}
    with open(mnt / "d" / F255, "ab") as f:
        f.write(b"+")
    assert (mnt / "d" / F255).read_bytes() == content_of(F255) + b"+"


def test_finding4_mount_mkdir_over_whited_out_long_name(long_mnt: Path) -> None:
    mnt = long_mnt
    shutil.rmtree(mnt / "d" / E255)
    os.mkdir(mnt / "d" / E255)
    assert os.listdir(mnt / "d" / E255) == []
    fails_with(errno.ENOENT, os.stat, mnt / "d" / E255 / "inner.txt")


def test_finding4_mount_name_too_long_and_missing_long_names(long_mnt: Path) -> None:
    mnt = long_mnt
    for where in (mnt, mnt / "d"):
        fails_with(errno.ENAMETOOLONG, os.stat, where / N256)
        fails_with(errno.ENAMETOOLONG, os.open, where / N256, os.O_CREAT | os.O_WRONLY, 0o644)
        fails_with(errno.ENAMETOOLONG, os.mkdir, where / N256)
    (mnt / "d" / "other").write_bytes(b"o")  # the overlay now holds d/ too
    for where in (mnt, mnt / "d"):
        fails_with(errno.ENOENT, os.stat, where / MISSING255)
        fails_with(errno.ENOENT, os.unlink, where / MISSING255)
        fails_with(errno.ENOENT, os.rmdir, where / MISSING255)
        assert no_markers(os.listdir(where))


# ============================================================================ 5. links, special files


def test_finding5_mount_link_static_file(roots) -> None:
    """attr_timeout=0: the kernel caches each name's attributes on its own when the daemon
    answers two names with two nodes; what is checked here is what the daemon answers."""
    mnt = roots.mountpoint
    with mounted(roots.config, mnt, "attr_timeout=0"):
        os.link(mnt / "dir" / "a.txt", mnt / "dir" / "hard")
        a, h = os.stat(mnt / "dir" / "a.txt"), os.stat(mnt / "dir" / "hard")
        assert a.st_ino == h.st_ino and a.st_nlink == h.st_nlink == 2
        oa, oh = os.stat(roots.overlay / "dir" / "a.txt"), os.stat(roots.overlay / "dir" / "hard")
        assert oa.st_ino == oh.st_ino and oa.st_nlink == 2, "not a native hard link in the overlay"
        with open(mnt / "dir" / "hard", "ab") as f:
            f.write(b"+")
        assert (mnt / "dir" / "a.txt").read_bytes() == b"a" * 100 + b"+"
        os.unlink(mnt / "dir" / "a.txt")
        assert os.stat(mnt / "dir" / "hard").st_nlink == 1
        assert sorted(os.listdir(mnt / "dir")) == ["exec.sh", "hard", "sub"]
        assert (mnt / "dir" / "hard").read_bytes() == b"a" * 100 + b"+"
    assert (roots.static / "dir" / "a.txt").read_bytes() == b"a" * 100


def test_finding5_mount_link_overlay_file(roots, mnt: Path) -> None:
    (mnt / "own").write_bytes(b"mine")
    os.link(mnt / "own", mnt / "own2")
    assert os.stat(roots.overlay / "own").st_ino == os.stat(roots.overlay / "own2").st_ino
    assert os.stat(mnt / "own").st_ino == os.stat(mnt / "own2").st_ino
    assert (mnt / "own2").read_bytes() == b"mine"
    fails_with(errno.EEXIST, os.link, mnt / "own", mnt / "file.txt")
    fails_with(errno.EPERM, os.link, mnt / "own", mnt / ".wh.own")


def test_finding5_mount_fifo_passes_bytes(roots, mnt: Path) -> None:
    os.mkfifo(mnt / "fifo")
    assert S.S_ISFIFO(os.stat(mnt / "fifo").st_mode)
    assert S.S_ISFIFO(os.lstat(roots.overlay / "fifo").st_mode)
    reader = os.open(mnt / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer = os.open(mnt / "fifo", os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(writer, b"through the fifo")
        finally:
            os.close(writer)
        assert os.read(reader, 100) == b"through the fifo"
    finally:
        os.close(reader)


def test_finding5_mount_unix_socket(roots, mnt: Path) -> None:
    path = str(mnt / "sock")
    assert len(path) < 100, path
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.settimeout(30)
    client.settimeout(30)
    try:
        server.bind(path)
        server.listen(1)
        assert S.S_ISSOCK(os.stat(path).st_mode)
        client.connect(path)
        conn, _ = server.accept()
        with conn:
            client.sendall(b"hello")
            assert conn.recv(5) == b"hello"
    finally:
        client.close()
        server.close()
    assert S.S_ISSOCK(os.lstat(roots.overlay / "sock").st_mode)


def test_finding5_mount_mknod_char_device(roots, mnt: Path) -> None:
    probe = roots.overlay.parent / "mknod-probe"
    try:
        os.mknod(probe, S.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this machine does not let root make device nodes")
    os.unlink(probe)
    os.mknod(mnt / "null", S.S_IFCHR | 0o666, os.makedev(1, 3))
    st = os.lstat(mnt / "null")
    assert S.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    up = os.lstat(roots.overlay / "null")
    assert S.S_ISCHR(up.st_mode) and up.st_rdev == os.makedev(1, 3)


SPECIAL_SCRIPT = PRELUDE + r'''
import socket
d = f"{mnt}/pub"
attempt("mkfifo", lambda: os.mkfifo(f"{d}/fifo", 0o640))
def sock():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(f"{d}/sock")
    s.close()
attempt("socket", sock)
write(f"{d}/mine", "mine")
attempt("link", lambda: os.link(f"{d}/mine", f"{d}/mine2"))
for name in ("fifo", "sock", "mine2"):
    attempt("lstat_" + name, lambda: summary(os.lstat(f"{d}/{name}")))
print(json.dumps(res))
'''


def test_finding5_mount_special_files_belong_to_the_caller(pub: Pub) -> None:
    uid, gid = pub.user.uid, pub.user.gid
    with mounted(pub.config, pub.mnt, "allow_other"):
        res = pub.run(SPECIAL_SCRIPT)
    for op in ("mkfifo", "socket", "link"):
        assert res[op][0] == "ok", f"{op} as the user: {res[op]}"
    fifo, sock, link = res["lstat_fifo"][1], res["lstat_sock"][1], res["lstat_mine2"][1]
    assert S.S_ISFIFO(fifo["mode"]) and S.S_IMODE(fifo["mode"]) == 0o640 & ~0o022
    assert S.S_ISSOCK(sock["mode"])
    for attrs in (fifo, sock, link):
        assert (attrs["uid"], attrs["gid"]) == (uid, gid), res
    for name in ("fifo", "sock", "mine2"):
        st = os.lstat(pub.overlay / "pub" / name)
        assert (st.st_uid, st.st_gid) == (uid, gid), name
    assert os.stat(pub.overlay / "pub" / "mine").st_ino == os.stat(pub.overlay / "pub" / "mine2").st_ino


# ============================================================================ 6. failed rename


@pytest.mark.parametrize("free", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("src", ["file.txt", "dir/a.txt"])
def test_finding6_mount_failed_rename_leaves_tree_as_it_was(tmp_path: Path, tiny_tmpfs: Path, src: str,
                                                            free: int) -> None:
    static, mnt = tmp_path / "static", tmp_path / "mnt"
    static.mkdir()
    mnt.mkdir()
    build_static(static)
    before = tree_digest(str(static))
    overlay = tiny_tmpfs / "overlay"
    overlay.mkdir()
    config = write_config(tmp_path / "config.json", overlay, static)
    dst = os.path.join(os.path.dirname(src), "renamed")
    original = (static / src).read_bytes()
    with mounted(config, mnt):
        fill_inodes(tiny_tmpfs, free)
        try:
            os.rename(mnt / src, mnt / dst)
            failed = False
        except OSError:
            failed = True
        listed = set(os.listdir(mnt / os.path.dirname(src)))
        names = {os.path.basename(src), os.path.basename(dst)} & listed
        expected = {os.path.basename(src)} if failed else {os.path.basename(dst)}
        assert names == expected, f"rename {'failed' if failed else 'succeeded'}; the mount lists {sorted(names)}"
        assert (mnt / (src if failed else dst)).read_bytes() == original
        fails_with(errno.ENOENT, os.stat, mnt / (dst if failed else src))
    consistent_after_rename(overlay, static, src, dst, failed)
    assert tree_digest(str(static)) == before


# ============================================================================ 9. daemon memory


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


MEMORY_BOUND_MIB = 60


@pytest.fixture(scope="module")
def wide_static(tmp_path_factory) -> Path:
    """50,000 empty files in 100 directories (made once)."""
    root = tmp_path_factory.mktemp("widestatic")
    for i in range(100):
        d = root / f"d{i:03d}"
        d.mkdir()
        for j in range(500):
            os.close(os.open(d / f"file{j:04d}.dat", os.O_CREAT | os.O_WRONLY, 0o644))
    return root


def test_finding9_daemon_memory_bounded_over_200k_lookups(tmp_path: Path, wide_static: Path) -> None:
    """stat 50,000 existing paths and 150,000 missing ones: memory grows by the kernel's
    working set at most, not by a table of every path asked for."""
    overlay, mnt = tmp_path / "overlay", tmp_path / "mnt"
    overlay.mkdir()
    mnt.mkdir()
    config = write_config(tmp_path / "config.json", overlay, wide_static)
    with mounted(config, mnt) as pid:
        for _ in os.walk(mnt):
            pass
        baseline = rss_mib(pid)
        for i in range(100):
            for j in range(500):
                os.stat(mnt / f"d{i:03d}" / f"file{j:04d}.dat")
        for i in range(100):
            for j in range(1500):
                try:
                    os.stat(f"{mnt}/d{i:03d}/missing{j:05d}-" + "m" * 180)
                except FileNotFoundError:
                    pass
        grown = rss_mib(pid) - baseline
    assert grown < MEMORY_BOUND_MIB, f"the daemon grew by {grown:.0f} MiB over 200,000 lookups"


def test_finding9_daemon_memory_forgets_paths_that_vanish(tmp_path: Path) -> None:
    """Another writer renames overlay directories between listings (20 rounds of 10,000
    long-named files under new directory names). The kernel forgets every old name; the
    daemon must too: memory stays near one round's worth, not 20 rounds'."""
    overlay, mnt, static = tmp_path / "overlay", tmp_path / "mnt", tmp_path / "static"
    for d in (overlay, mnt, static):
        d.mkdir()

    def dname(i: int, r: int) -> str:
        return f"d{i:03d}r{r:03d}" + "D" * 240

    def fname(j: int) -> str:
        return f"f{j:04d}" + "F" * 245

    for i in range(50):
        d = overlay / dname(i, 0)
        d.mkdir()
        for j in range(200):
            os.close(os.open(d / fname(j), os.O_CREAT | os.O_WRONLY, 0o644))
    config = write_config(tmp_path / "config.json", overlay, static)
    rounds, baseline = 20, None
    with mounted(config, mnt, "entry_timeout=0", "attr_timeout=0") as pid:
        for r in range(rounds):
            for i in range(50):
                assert len(os.listdir(mnt / dname(i, r))) == 200
            for i in range(50):  # another writer renames the directories
                os.rename(overlay / dname(i, r), overlay / dname(i, r + 1))
            for i in range(50):  # the kernel finds the old names gone and forgets them
                fails_with(errno.ENOENT, os.stat, mnt / dname(i, r))
            if r == 1:
                baseline = rss_mib(pid)
        grown = rss_mib(pid) - baseline
    assert grown < MEMORY_BOUND_MIB, f"the daemon grew by {grown:.0f} MiB over {rounds - 2} rounds"
