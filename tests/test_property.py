"""Stateful property tests: the union behaves like one plain directory.

Random sequences of create, overwrite (``O_TRUNC``), write at offsets (also past EOF),
truncate, unlink, mkdir, rmdir, rename and chmod are applied to the system under test
and to a reference: a plain directory that starts as a copy of the static tree. After
every step both trees must hold the same names, types, permission bits, sizes and
contents; every operation must succeed or fail with the same errno on both sides; the
static tree must never change; and no copy-up temporary may be left in the overlay.

The one documented difference: renaming a directory that static shows through is
``EXDEV`` (as kernel overlayfs), where the plain directory would rename it. The machine
keeps its own record of which directories still show through from static (neither
removed nor replaced since), and expects ``EXDEV`` exactly there.

The same rules run three ways: through one real mount with kernel caches off (the
overlay is emptied between examples, so every answer must come from the daemon);
through a fresh mount per example with the default, caching options; and against
`UnionFileSystem` used as a library, with no mount.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat as S
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from copickfs.mount.mountinfo import is_mounted
from copickfs.union import UnionFileSystem
from copickfs.union import markers
from mounting import mounted, write_config
from treehash import tree_digest

# A small alphabet so that operations collide with each other and with static often.
NAMES = ("a", "b", "c", "d", "e")
NEW_PATHS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
MODES = st.sampled_from([0o000, 0o400, 0o444, 0o600, 0o640, 0o644, 0o700, 0o711, 0o755, 0o777])
DATA = st.binary(max_size=700)
SIZES = st.integers(0, 6000)
UMASK = 0o022

STATIC_DIRS = {"a": 0o755, "a/c": 0o750, "c": 0o755, "d": 0o700}
STATIC_FILES = {"a/b": (1200, 0o644), "a/c/d": (2100, 0o600), "b": (3000, 0o755), "d/a": (500, 0o444)}

STATIC_NAMES = set(STATIC_DIRS) | set(STATIC_FILES)

# Modes such as 000 leave files and directories readable only by root, and every step
# reads the whole tree on both sides.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="comparing trees with mode-000 entries needs root")

# PROPERTY_EXAMPLES raises the number of examples for a longer hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "40")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def build_static(static: Path) -> None:
    rng = random.Random(20240611)
    for rel in sorted(STATIC_DIRS):
        (static / rel).mkdir()
    for rel, (size, mode) in STATIC_FILES.items():
        (static / rel).write_bytes(rng.randbytes(size))
        os.chmod(static / rel, mode)
    for rel, mode in STATIC_DIRS.items():
        os.chmod(static / rel, mode)


def errname(code: int) -> str:
    if code == 0:
        return "success"
    return errno.errorcode.get(code, str(code))


def outcome(call: Callable[[], Any]) -> int:
    """0 on success, else the errno of the OSError (-1 if the error carries none)."""
    try:
        call()
    except OSError as e:
        return e.errno if isinstance(e.errno, int) else -1
    return 0


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += n
        view = view[n:]


Entry = tuple[Any, ...]
Tree = dict[str, Entry]


class Target(Protocol):
    def create(self, rel: str, mode: int, data: bytes) -> None: ...
    def overwrite(self, rel: str, mode: int, data: bytes) -> None: ...
    def write(self, rel: str, offset: int, data: bytes) -> None: ...
    def truncate(self, rel: str, size: int) -> None: ...
    def unlink(self, rel: str) -> None: ...
    def mkdir(self, rel: str, mode: int) -> None: ...
    def rmdir(self, rel: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def chmod(self, rel: str, mode: int) -> None: ...
    def tree(self) -> Tree: ...


class PosixTarget:
    """Plain system calls under a root: the reference directory, or the mount point."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def _p(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def _open_write(self, rel: str, flags: int, mode: int, data: bytes, offset: int | None) -> None:
        fd = os.open(self._p(rel), flags | os.O_CLOEXEC, mode)
        try:
            write_all(fd, data, offset)
        finally:
            os.close(fd)

    def create(self, rel: str, mode: int, data: bytes) -> None:
        self._open_write(rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, data, None)

    def overwrite(self, rel: str, mode: int, data: bytes) -> None:
        self._open_write(rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, data, None)

    def write(self, rel: str, offset: int, data: bytes) -> None:
        self._open_write(rel, os.O_WRONLY, 0, data, offset)

    def truncate(self, rel: str, size: int) -> None:
        os.truncate(self._p(rel), size)

    def unlink(self, rel: str) -> None:
        os.unlink(self._p(rel))

    def mkdir(self, rel: str, mode: int) -> None:
        os.mkdir(self._p(rel), mode)

    def rmdir(self, rel: str) -> None:
        os.rmdir(self._p(rel))

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._p(src), self._p(dst))

    def chmod(self, rel: str, mode: int) -> None:
        os.chmod(self._p(rel), mode)

    def tree(self) -> Tree:
        out: Tree = {}

        def walk(rel: str) -> None:
            with os.scandir(self._p(rel) if rel else self.root) as entries:
                listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for name, listed_dir in listed:
                child = f"{rel}/{name}" if rel else name
                st_ = os.lstat(self._p(child))
                assert listed_dir == S.S_ISDIR(st_.st_mode), f"{child}: readdir and lstat disagree on type"
                out[child] = _entry(st_.st_mode, st_.st_size, lambda: Path(self._p(child)).read_bytes())
                if S.S_ISDIR(st_.st_mode):
                    walk(child)

        walk("")
        return out


class MountedTarget(PosixTarget):
    """A mount of its own for one example, with the default (caching) mount options."""

    def __init__(self, config: Path, mountpoint: Path) -> None:
        self._mount = ExitStack()
        self._mount.enter_context(mounted(config, mountpoint))
        super().__init__(mountpoint)

    def close(self) -> None:
        self._mount.close()


class LibraryTarget:
    """The same calls on `UnionFileSystem` as a library: its POSIX verbs, no mount."""

    def __init__(self, union: UnionFileSystem) -> None:
        self.union = union

    def _fd(self, rel: str, flags: int) -> int:
        fd = self.union.open_fd(rel, flags)
        assert fd is not None, "a local overlay must give a file descriptor"
        return fd

    def _write_fd(self, fd: int, data: bytes, offset: int | None) -> None:
        try:
            write_all(fd, data, offset)
        finally:
            os.close(fd)

    def create(self, rel: str, mode: int, data: bytes) -> None:
        self.union.create(rel, mode)
        self._write_fd(self._fd(rel, os.O_WRONLY), data, None)

    def overwrite(self, rel: str, mode: int, data: bytes) -> None:
        if self.union.lookup(rel) is None:
            self.union.create(rel, mode)
            fd = self._fd(rel, os.O_WRONLY)
        else:
            fd = self._fd(rel, os.O_WRONLY | os.O_TRUNC)
        self._write_fd(fd, data, None)

    def write(self, rel: str, offset: int, data: bytes) -> None:
        self._write_fd(self._fd(rel, os.O_WRONLY), data, offset)

    def truncate(self, rel: str, size: int) -> None:
        self.union.truncate(rel, size)

    def unlink(self, rel: str) -> None:
        self.union.unlink(rel)

    def mkdir(self, rel: str, mode: int) -> None:
        self.union.mkdir(rel, create_parents=False, mode=mode)

    def rmdir(self, rel: str) -> None:
        self.union.rmdir(rel)

    def rename(self, src: str, dst: str) -> None:
        self.union.posix_rename(src, dst)

    def chmod(self, rel: str, mode: int) -> None:
        self.union.chmod(rel, mode)

    def tree(self) -> Tree:
        out: Tree = {}

        def walk(rel: str) -> None:
            for name, kind in self.union.listdir_types(rel).items():
                child = f"{rel}/{name}" if rel else name
                st_, _ = self.union.stat_entry(child)
                assert kind == S.S_IFMT(st_.mode), f"{child}: listing and stat disagree on its type"

                def read(child: str = child) -> bytes:
                    with self.union.open(child, "rb") as f:
                        return f.read()

                out[child] = _entry(st_.mode, st_.size, read)
                if st_.is_dir:
                    walk(child)

        walk("")
        return out


def _entry(mode: int, size: int, read: Callable[[], bytes]) -> Entry:
    """What must agree for one name: type and permission bits; size and bytes of a file."""
    if S.S_ISREG(mode):
        data = read()
        assert len(data) == size, f"stat says {size} bytes, read gives {len(data)}"
        return ("file", oct(S.S_IMODE(mode)), size, data)
    return (S.S_IFMT(mode), oct(S.S_IMODE(mode)))


def _short(entry: Entry | None) -> Entry | None:
    if entry is None or len(entry) < 4:
        return entry
    return (*entry[:3], f"<{len(entry[3])} bytes>")


def describe_difference(got: Tree, want: Tree) -> str:
    lines = []
    for name in sorted(set(got) | set(want)):
        g, w = got.get(name), want.get(name)
        if g != w:
            if g is not None and w is not None and len(g) > 3 and g[:3] == w[:3]:
                first = next(i for i, (x, y) in enumerate(zip(g[3], w[3])) if x != y)
                lines.append(f"{name}: contents differ from byte {first}")
            else:
                lines.append(f"{name}: system {_short(g)} reference {_short(w)}")
    return "; ".join(lines)


class Env:
    """Directories shared by all examples of one run; `reset` starts an example afresh."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.static = base / "static"
        self.overlay = base / "overlay"
        self.reference = base / "reference"
        self.scratch = base / "scratch"
        for d in (self.static, self.overlay):
            d.mkdir()
        build_static(self.static)
        self.static_digest = tree_digest(str(self.static))

    def reset(self) -> None:
        for entry in os.scandir(self.overlay):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        if self.reference.exists():
            shutil.rmtree(self.reference)
        shutil.copytree(self.static, self.reference, symlinks=True)

    def trial_rename(self, src: str, dst: str) -> int:
        """What rename(2) says on a scratch copy of the reference (which stays untouched)."""
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        shutil.copytree(self.reference, self.scratch, symlinks=True)
        try:
            return outcome(lambda: os.rename(self.scratch / src, self.scratch / dst))
        finally:
            shutil.rmtree(self.scratch)


class UnionMachine(RuleBasedStateMachine):
    env: Env
    make_target: Callable[[Env], Target]

    def __init__(self) -> None:
        super().__init__()
        self.env.reset()
        self.sut = self.make_target(self.env)
        self.ref = PosixTarget(self.env.reference)
        # Directories that still show through from static: renaming them is EXDEV.
        self.static_dirs = set(STATIC_DIRS)
        self.known: list[str] = []
        self.known_dirs: list[str] = []

    def teardown(self) -> None:
        close = getattr(self.sut, "close", None)
        if close is not None:
            close()

    # ------------------------------------------------------------ helpers

    def _path(self, data: st.DataObject, label: str, dirs: bool = False) -> str:
        # Names present now or in static (also once deleted), or any name at all;
        # directories more often where ``dirs`` (their renames are the subtle ones).
        choices = [st.sampled_from(sorted(set(self.known) | STATIC_NAMES)), NEW_PATHS]
        if dirs and self.known_dirs:
            choices.insert(0, st.sampled_from(self.known_dirs))
        return data.draw(st.one_of(choices), label=label)

    def _same(self, what: str, sut_call: Callable[[], Any], ref_call: Callable[[], Any]) -> int:
        got, want = outcome(sut_call), outcome(ref_call)
        assert got == want, f"{what}: system says {errname(got)}, reference says {errname(want)}"
        return got

    # ------------------------------------------------------------ rules

    @initialize(doomed=st.lists(st.sampled_from(sorted(STATIC_DIRS)), unique=True, max_size=2), mode=MODES)
    def recreate_static_dirs(self, doomed: list[str], mode: int) -> None:
        """Empty some static directories, remove and make them again (whiteouts, opaque dirs).

        Plain steps, compared like any other: this only makes the states where a name was
        deleted and made again common, instead of a rare three-step coincidence.
        """
        for top in doomed:
            subtree = [p for p in self.ref.tree() if p == top or p.startswith(top + "/")]
            for path in sorted(subtree, key=lambda p: p.count("/"), reverse=True):
                if os.path.isdir(self.env.reference / path):
                    self.rmdir_path(path)
                else:
                    self._same(f"unlink {path!r}", lambda: self.sut.unlink(path),
                               lambda: self.ref.unlink(path))
            self._same(f"mkdir {top!r}", lambda: self.sut.mkdir(top, mode), lambda: self.ref.mkdir(top, mode))

    def rmdir_path(self, path: str) -> None:
        if self._same(f"rmdir {path!r}", lambda: self.sut.rmdir(path), lambda: self.ref.rmdir(path)) == 0:
            self.static_dirs.discard(path)

    @rule(data=st.data(), mode=MODES, content=DATA)
    def create(self, data: st.DataObject, mode: int, content: bytes) -> None:
        path = self._path(data, "path")
        self._same(f"create {path!r}", lambda: self.sut.create(path, mode, content),
                   lambda: self.ref.create(path, mode, content))

    @rule(data=st.data(), mode=MODES, content=DATA)
    def overwrite(self, data: st.DataObject, mode: int, content: bytes) -> None:
        path = self._path(data, "path")
        self._same(f"open(O_CREAT|O_TRUNC) {path!r}", lambda: self.sut.overwrite(path, mode, content),
                   lambda: self.ref.overwrite(path, mode, content))

    @rule(data=st.data(), offset=SIZES, content=DATA)
    def write(self, data: st.DataObject, offset: int, content: bytes) -> None:
        path = self._path(data, "path")
        self._same(f"pwrite {path!r} at {offset}", lambda: self.sut.write(path, offset, content),
                   lambda: self.ref.write(path, offset, content))

    @rule(data=st.data(), size=SIZES)
    def truncate(self, data: st.DataObject, size: int) -> None:
        path = self._path(data, "path")
        self._same(f"truncate {path!r} to {size}", lambda: self.sut.truncate(path, size),
                   lambda: self.ref.truncate(path, size))

    @rule(data=st.data())
    def unlink(self, data: st.DataObject) -> None:
        path = self._path(data, "path")
        self._same(f"unlink {path!r}", lambda: self.sut.unlink(path), lambda: self.ref.unlink(path))

    @rule(data=st.data(), mode=MODES)
    def mkdir(self, data: st.DataObject, mode: int) -> None:
        path = self._path(data, "path")
        self._same(f"mkdir {path!r}", lambda: self.sut.mkdir(path, mode), lambda: self.ref.mkdir(path, mode))

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        self.rmdir_path(self._path(data, "path", dirs=True))

    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        src, dst = self._path(data, "src", dirs=True), self._path(data, "dst")
        what = f"rename {src!r} -> {dst!r}"
        if src in self.static_dirs and src != dst:
            # The plain directory would move it; the union must refuse with EXDEV. Where
            # the reference fails too, the same errno (ENOTEMPTY may also be EXDEV, as
            # kernel overlayfs checks EXDEV first).
            want = self.env.trial_rename(src, dst)
            got = outcome(lambda: self.sut.rename(src, dst))
            if want == 0:
                allowed = {errno.EXDEV}
            else:
                allowed = {want, errno.EXDEV} if want == errno.ENOTEMPTY else {want}
            assert got in allowed, (f"{what} of a directory static shows: system says {errname(got)}, "
                                    f"expected {' or '.join(sorted(map(errname, allowed)))}")
            return
        if self._same(what, lambda: self.sut.rename(src, dst), lambda: self.ref.rename(src, dst)) == 0:
            if src != dst:
                self.static_dirs.discard(dst)  # an empty static directory replaced by an overlay one

    @rule(data=st.data(), mode=MODES)
    def chmod(self, data: st.DataObject, mode: int) -> None:
        path = self._path(data, "path")
        self._same(f"chmod {path!r} {mode:o}", lambda: self.sut.chmod(path, mode),
                   lambda: self.ref.chmod(path, mode))

    # ------------------------------------------------------------ checks

    @invariant()
    def trees_agree(self) -> None:
        got, want = self.sut.tree(), self.ref.tree()
        assert got == want, "trees differ: " + describe_difference(got, want)
        self.known = sorted(want)
        self.known_dirs = [p for p in self.known if want[p][0] == S.S_IFDIR]

    @invariant()
    def static_unchanged(self) -> None:
        assert tree_digest(str(self.env.static)) == self.env.static_digest, "the static tree changed"

    @invariant()
    def no_copy_up_leftovers(self) -> None:
        for directory, _, files in os.walk(self.env.overlay):
            stray = [f for f in files if f.startswith(markers.TEMP_PREFIX)]
            assert not stray, f"copy-up temporaries left in the overlay: {directory}/{stray}"


def run_machine(env: Env, make_target: Callable[[Env], Target], config: settings = SETTINGS) -> None:
    machine = type("Machine", (UnionMachine,), {"env": env, "make_target": staticmethod(make_target)})
    old_umask = os.umask(UMASK)
    try:
        run_state_machine_as_test(machine, settings=config)
    finally:
        os.umask(old_umask)


def test_mount_behaves_like_a_plain_directory(tmp_path: Path) -> None:
    env = Env(tmp_path)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    config = write_config(tmp_path / "config.json", env.overlay, env.static)
    # The overlay is emptied between examples behind the mount's back: no kernel caching
    # of names or attributes (the writeback cache trusts the sizes the kernel cached), so
    # every answer comes from the daemon. The default options, writeback included, are
    # the next test's.
    with mounted(config, mountpoint, "entry_timeout=0,attr_timeout=0,negative_timeout=0,nowriteback_cache"):
        run_machine(env, lambda env: PosixTarget(mountpoint))
    assert tree_digest(str(env.static)) == env.static_digest


def test_library_behaves_like_a_plain_directory(tmp_path: Path) -> None:
    env = Env(tmp_path)
    run_machine(env, lambda env: LibraryTarget(UnionFileSystem(str(env.overlay), str(env.static))))
    assert tree_digest(str(env.static)) == env.static_digest


def test_mount_with_kernel_caches_behaves_like_a_plain_directory(tmp_path: Path) -> None:
    """Default mount options: long-lived kernel caches must never give a stale answer.

    A fresh mount per example (the overlay is emptied while nothing is mounted), so
    fewer examples.
    """
    env = Env(tmp_path)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    config = write_config(tmp_path / "config.json", env.overlay, env.static)
    run_machine(env, lambda env: MountedTarget(config, mountpoint),
                settings(SETTINGS, max_examples=max(1, SETTINGS.max_examples // 3)))
    assert not is_mounted(str(mountpoint)), "an example left its mount behind"
    assert tree_digest(str(env.static)) == env.static_digest
