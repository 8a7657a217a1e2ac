"""libfuse's low-level API through `copickfs.mount.session`: a small in-memory filesystem
mounted for real, in a child process (a crash cannot hang pytest), and exercised with
ordinary system calls.

Run as a script (``python test_lowlevel.py MOUNTPOINT BACKING [plain]``) this file is the
daemon: `MemFS` serves a few files and directories, files read from and written to
descriptors of files in BACKING, a 3000-entry directory, and ``.stats`` (its counters, as
JSON, read with direct_io so every read reaches it).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import stat as S
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from copickfs.mount.lowlevel import (
    FUSE_CAP_READDIRPLUS_AUTO, FUSE_CAP_SPLICE_MOVE, FUSE_CAP_SPLICE_READ, FUSE_CAP_SPLICE_WRITE, ROOT_ID,
    ConnInfo, Entry, Opened,
)
from copickfs.mount.session import FuseSession, caller, caller_umask

DAY = 86400.0
BIG = 3000
USER = 1000  # any uid works; it needs no passwd entry
SPECIAL = (b".stats", b"whoami")  # never cached, read with direct_io


# ---------------------------------------------------------------------------- the daemon

class Attr:
    """The st_* fields the session needs; st_rdev/st_blksize/st_blocks left out on purpose
    (the session must default them)."""

    __slots__ = ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
                 "st_mtime_ns", "st_ctime_ns")

    def __init__(self, ino: int, mode: int, nlink: int, uid: int, gid: int, size: int, atime: int,
                 mtime: int, ctime: int) -> None:
        self.st_ino, self.st_mode, self.st_nlink, self.st_uid, self.st_gid = ino, mode, nlink, uid, gid
        self.st_size, self.st_atime_ns, self.st_mtime_ns, self.st_ctime_ns = size, atime, mtime, ctime


@dataclass
class Node:
    ino: int
    mode: int
    parent: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    data: bytearray | None = None  # a file in memory
    backing: str | None = None  # a file served from a descriptor
    target: bytes | None = None  # a symlink
    children: dict[bytes, int] | None = None  # a directory
    atime: int = 1_600_000_000_000_000_000
    mtime: int = 1_600_000_000_000_000_000


@dataclass
class Handle:
    node: Node
    fd: int | None = None
    content: bytes | None = None  # a snapshot (special files)
    entries: list[tuple[bytes, int]] | None = None  # a directory listing


class MemFS:
    """A handler for FuseSession: every method named as a low-level request."""

    def __init__(self, backing: str) -> None:
        self.backing = backing
        self.lock = threading.RLock()
        self.nodes: dict[int, Node] = {}
        self.nlookup: dict[int, int] = {}
        self.handles: dict[int, Handle] = {}
        self.next_fh = 1
        self.stats: dict[str, Any] = {"readdirplus": 0, "readdir": 0, "opendir": 0, "lookup": 0,
                                      "getattr": 0, "forgets": 0, "forget_calls": 0}
        root = self._add(ROOT_ID, S.S_IFDIR | 0o755, children={})
        root.parent = ROOT_ID
        self._file(root, b"hello.txt", b"hello world\n")
        sub = self._dir(root, b"dir", 0o755)
        self._file(sub, b"nested.txt", b"nested\n")
        self._dir(root, b"shared", 0o777)
        for name in (b"fromfd.bin", b"writable.bin"):
            path = os.path.join(backing, name.decode())
            self._add(self._new_ino(), S.S_IFREG | 0o644, root, name, backing=path)
        for name in SPECIAL:
            self._add(self._new_ino(), S.S_IFREG | 0o444, root, name, data=bytearray())
        for name in (b"big", b"big_plain"):
            big = self._dir(root, name, 0o755)
            for i in range(BIG):
                self._file(big, b"entry%05d" % i, b"x" * i)

    # ------------------------------------------------------------ the tree

    def _new_ino(self) -> int:
        return max(self.nodes, default=ROOT_ID) + 1

    def _add(self, ino: int, mode: int, parent: Node | None = None, name: bytes = b"", **kw: Any) -> Node:
        node = self.nodes[ino] = Node(ino, mode, parent.ino if parent else ROOT_ID, **kw)
        if parent is not None:
            assert parent.children is not None
            parent.children[name] = ino
        return node

    def _file(self, parent: Node, name: bytes, data: bytes) -> Node:
        return self._add(self._new_ino(), S.S_IFREG | 0o644, parent, name, data=bytearray(data))

    def _dir(self, parent: Node, name: bytes, perm: int) -> Node:
        return self._add(self._new_ino(), S.S_IFDIR | perm, parent, name, children={}, nlink=2)

    def _child(self, parent: int, name: bytes) -> Node:
        children = self.nodes[parent].children
        if children is None:
            raise OSError(errno.ENOTDIR, "not a directory")
        if name not in children:
            raise OSError(errno.ENOENT, "no such entry")
        return self.nodes[children[name]]

    def _size(self, node: Node) -> int:
        if node.backing is not None:
            return os.stat(node.backing).st_size
        if node.data is not None:
            return len(self._stats_json()) if node.ino == self._special(b".stats") else len(node.data)
        return len(node.target) if node.target is not None else 4096

    def _special(self, name: bytes) -> int:
        return self.nodes[ROOT_ID].children[name]  # type: ignore[index]

    def _attr(self, node: Node) -> Attr:
        return Attr(node.ino, node.mode, node.nlink, node.uid, node.gid, self._size(node), node.atime,
                    node.mtime, node.mtime)

    def _timeout(self, node: Node) -> float:
        return 0.0 if node.ino in (self._special(n) for n in SPECIAL) else DAY

    def _entry(self, node: Node) -> Entry:
        """An entry the kernel will hold: one more lookup to be forgotten."""
        with self.lock:
            self.nlookup[node.ino] = self.nlookup.get(node.ino, 0) + 1
        return Entry(node.ino, self._attr(node), self._timeout(node), self._timeout(node))

    def _stats_json(self) -> bytes:
        with self.lock:
            big = self.nodes[self._special(b"big")]
            assert big.children is not None
            live = sum(1 for ino in big.children.values() if self.nlookup.get(ino, 0) > 0)
            return json.dumps({**self.stats, "live_big": live,
                               "nlookup": {str(k): v for k, v in self.nlookup.items() if v}}).encode()

    def _owned(self, node: Node) -> Node:
        node.uid, node.gid, _ = caller()
        return node

    # ------------------------------------------------------------ requests

    def init(self, conn: ConnInfo) -> None:
        conn.want |= conn.capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ)
        conn.want &= ~FUSE_CAP_READDIRPLUS_AUTO  # always READDIRPLUS, never plain READDIR
        conn.max_write = 1 << 20

    def destroy(self) -> None:
        Path(self.backing, "destroyed").write_text("yes")

    def lookup(self, parent: int, name: bytes) -> Entry:
        self.stats["lookup"] += 1
        if name == b"eacces":
            raise PermissionError(errno.EACCES, "forbidden")
        if name == b"crash":
            raise RuntimeError("a bug in the handler")  # logged, EIO
        if name == b"noerrno":
            raise FileNotFoundError("fsspec style, errno None")  # mapped by class: ENOENT
        if name == b"negative":  # "no such name", cached by the kernel for a day
            self.stats["negative"] = self.stats.get("negative", 0) + 1
            return Entry(0, None, DAY, 0.0)
        with self.lock:
            return self._entry(self._child(parent, name))

    def forget(self, ino: int, nlookup: int) -> None:
        with self.lock:
            self.stats["forgets"] += nlookup
            self.stats["forget_calls"] += 1
            self.nlookup[ino] = self.nlookup.get(ino, 0) - nlookup
            assert self.nlookup[ino] >= 0, f"forgot {ino} more often than looked up"
            node = self.nodes.get(ino)
            if self.nlookup[ino] == 0 and node is not None and node.nlink == 0:
                del self.nodes[ino]

    def getattr(self, ino: int, fh: int | None) -> tuple[Attr, float]:
        self.stats["getattr"] += 1
        self.stats.setdefault("getattr_log", []).append(ino)
        node = self.nodes[ino]
        return self._attr(node), self._timeout(node)

    def setattr(self, ino: int, changes: dict[str, Any], fh: int | None) -> tuple[Attr, float]:
        with self.lock:
            node = self.nodes[ino]
            self.stats["last_setattr"] = sorted(changes)
            if "mode" in changes:
                node.mode = S.S_IFMT(node.mode) | S.S_IMODE(changes["mode"])
            if "uid" in changes:
                node.uid = changes["uid"]
            if "gid" in changes:
                node.gid = changes["gid"]
            if "size" in changes:
                if node.backing is not None:
                    os.truncate(node.backing, changes["size"])
                elif node.data is not None:
                    del node.data[changes["size"]:]
                    node.data.extend(bytes(changes["size"] - len(node.data)))
            for key, field in (("atime_ns", "atime"), ("mtime_ns", "mtime")):
                if key in changes:
                    setattr(node, field, time.time_ns() if changes[key] == "now" else changes[key])
            return self._attr(node), self._timeout(node)

    def readlink(self, ino: int) -> bytes:
        target = self.nodes[ino].target
        if target is None:
            raise OSError(errno.EINVAL, "not a symlink")
        return target

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int) -> Entry:
        if not S.S_ISREG(mode):
            raise OSError(errno.EPERM, "only regular files")
        with self.lock:
            return self._entry(self._owned(self._new_node(parent, name, mode, data=bytearray())))

    def _new_node(self, parent: int, name: bytes, mode: int, **kw: Any) -> Node:
        directory = self.nodes[parent]
        if name in directory.children:  # type: ignore[operator]
            raise OSError(errno.EEXIST, "exists")
        return self._add(self._new_ino(), mode, directory, name, **kw)

    def mkdir(self, parent: int, name: bytes, mode: int) -> Entry:
        with self.lock:
            node = self._new_node(parent, name, S.S_IFDIR | S.S_IMODE(mode), children={}, nlink=2)
            return self._entry(self._owned(node))

    def symlink(self, target: bytes, parent: int, name: bytes) -> Entry:
        with self.lock:
            return self._entry(self._owned(self._new_node(parent, name, S.S_IFLNK | 0o777, target=target)))

    def link(self, ino: int, newparent: int, newname: bytes) -> Entry:
        with self.lock:
            node = self.nodes[ino]
            directory = self.nodes[newparent]
            if newname in directory.children:  # type: ignore[operator]
                raise OSError(errno.EEXIST, "exists")
            directory.children[newname] = ino  # type: ignore[index]
            node.nlink += 1
            return self._entry(node)

    def _drop(self, node: Node) -> None:
        node.nlink -= 1 if not S.S_ISDIR(node.mode) else 2
        if node.nlink <= 0 and self.nlookup.get(node.ino, 0) == 0:
            del self.nodes[node.ino]

    def unlink(self, parent: int, name: bytes) -> None:
        with self.lock:
            node = self._child(parent, name)
            if S.S_ISDIR(node.mode):
                raise OSError(errno.EISDIR, "is a directory")
            del self.nodes[parent].children[name]  # type: ignore[union-attr]
            self._drop(node)

    def rmdir(self, parent: int, name: bytes) -> None:
        with self.lock:
            node = self._child(parent, name)
            if node.children is None:
                raise OSError(errno.ENOTDIR, "not a directory")
            if node.children:
                raise OSError(errno.ENOTEMPTY, "not empty")
            del self.nodes[parent].children[name]  # type: ignore[union-attr]
            self._drop(node)

    def rename(self, parent: int, name: bytes, newparent: int, newname: bytes, flags: int) -> None:
        with self.lock:
            node = self._child(parent, name)
            target_dir = self.nodes[newparent].children
            assert target_dir is not None
            if newname in target_dir:
                if flags & 1:  # RENAME_NOREPLACE
                    raise OSError(errno.EEXIST, "exists")
                old = self.nodes[target_dir[newname]]
                if old.children:
                    raise OSError(errno.ENOTEMPTY, "not empty")
                self._drop(old)
            del self.nodes[parent].children[name]  # type: ignore[union-attr]
            target_dir[newname] = node.ino
            node.parent = newparent

    def _handle(self, handle: Handle) -> int:
        with self.lock:
            fh, self.next_fh = self.next_fh, self.next_fh + 1
            self.handles[fh] = handle
            return fh

    def open(self, ino: int, flags: int) -> Opened:
        node = self.nodes[ino]
        if node.backing is not None:
            fd = os.open(node.backing, flags & (os.O_ACCMODE | os.O_TRUNC))
            return Opened(self._handle(Handle(node, fd=fd)), keep_cache=node.backing.endswith("fromfd.bin"))
        if node.ino == self._special(b".stats"):
            return Opened(self._handle(Handle(node, content=self._stats_json())), direct_io=True)
        if node.ino == self._special(b"whoami"):
            uid, gid, pid = caller()
            return Opened(self._handle(Handle(node, content=b"%d %d %d" % (uid, gid, pid))), direct_io=True)
        return Opened(self._handle(Handle(node)))

    def create(self, parent: int, name: bytes, mode: int, flags: int) -> tuple[Entry, Opened]:
        with self.lock:
            self.stats["create_umask"] = caller_umask()
            node = self._owned(self._new_node(parent, name, S.S_IFREG | S.S_IMODE(mode), data=bytearray()))
            return self._entry(node), Opened(self._handle(Handle(node)))

    def read(self, ino: int, size: int, off: int, fh: int) -> int | bytes:
        handle = self.handles[fh]
        if handle.fd is not None:
            return handle.fd  # libfuse reads the descriptor itself
        data = handle.content if handle.content is not None else handle.node.data
        assert data is not None
        return bytes(data[off:off + size])

    def write_fd(self, ino: int, fh: int) -> int | None:
        return self.handles[fh].fd

    def write(self, ino: int, fh: int, off: int, data: bytes) -> int:
        with self.lock:
            buf = self.handles[fh].node.data
            if buf is None:
                raise OSError(errno.EBADF, "not writable")
            if len(buf) < off:
                buf.extend(bytes(off - len(buf)))
            buf[off:off + len(data)] = data
            self.stats["memory_writes"] = self.stats.get("memory_writes", 0) + 1
            return len(data)

    def flush(self, ino: int, fh: int) -> None:
        pass

    def fsync(self, ino: int, datasync: int, fh: int) -> None:
        fd = self.handles[fh].fd
        if fd is not None:
            os.fsync(fd)

    def release(self, ino: int, fh: int, flags: int) -> None:
        with self.lock:
            handle = self.handles.pop(fh)
        if handle.fd is not None:
            os.close(handle.fd)

    def opendir(self, ino: int, flags: int) -> Opened:
        with self.lock:
            self.stats["opendir"] += 1
            node = self.nodes[ino]
            if node.children is None:
                raise OSError(errno.ENOTDIR, "not a directory")
            entries = [(b".", ino), (b"..", node.parent), *sorted(node.children.items())]
        return Opened(self._handle(Handle(node, entries=entries)), cache_readdir=True, keep_cache=True)

    def readdirplus(self, ino: int, size: int, off: int, fh: int) -> Iterator[tuple[bytes, int, Any]]:
        self.stats["readdirplus"] += 1
        entries = self.handles[fh].entries
        assert entries is not None
        for index in range(off, len(entries)):
            name, child = entries[index]
            if name in (b".", b".."):  # not counted: the session sends these without a node id
                yield name, index + 1, lambda child=child: Entry(child, self._attr(self.nodes[child]), 0, 0)
            else:
                yield name, index + 1, lambda child=child: (
                    self._entry(self.nodes[child]) if child in self.nodes else None)

    def readdir(self, ino: int, size: int, off: int, fh: int) -> Iterator[tuple[bytes, int, int, int]]:
        self.stats["readdir"] += 1
        entries = self.handles[fh].entries
        assert entries is not None
        for index in range(off, len(entries)):
            name, child = entries[index]
            yield name, S.S_IFMT(self.nodes[child].mode), child, index + 1

    def releasedir(self, ino: int, fh: int) -> None:
        with self.lock:
            self.handles.pop(fh)

    def statfs(self, ino: int) -> os.statvfs_result:
        return os.statvfs(self.backing)


class PlainMemFS(MemFS):
    """Without READDIRPLUS: the kernel lists with plain READDIR."""

    readdirplus = None  # type: ignore[assignment]

    def init(self, conn: ConnInfo) -> None:
        conn.max_write = 1 << 20


def serve(mountpoint: str, backing: str, plain: bool) -> int:
    logging.basicConfig(level=logging.WARNING, format="lltest[%(process)d] %(levelname)s %(message)s")
    fs = (PlainMemFS if plain else MemFS)(backing)
    options = ["fsname=lltest", "subtype=lltest", "default_permissions", "allow_other"]
    return FuseSession(fs, mountpoint, options).run()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2], sys.argv[3:] == ["plain"]))


# ---------------------------------------------------------------------------- the tests

def is_mounted(path: str) -> bool:
    """Whether the kernel lists a mount at ``path`` (read as bytes: other mounts on the
    machine may have names that are not UTF-8)."""
    target = os.fsencode(os.path.abspath(path))
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4].decode("unicode_escape").encode("latin-1") == target for line in f)


def force_unmount(mountpoint: Path) -> None:
    """fusermount3 -u, then -uz (lazy) for a mount whose daemon died."""
    for flags in ("-u", "-uz"):
        if is_mounted(str(mountpoint)):
            subprocess.run(["fusermount3", flags, str(mountpoint)], capture_output=True, check=False)


@dataclass
class Mount:
    root: Path
    mnt: Path
    backing: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stats(self) -> dict[str, Any]:
        return json.loads((self.mnt / ".stats").read_bytes())


@pytest.fixture(scope="module")
def fuse_root() -> Iterator[Path]:
    """A directory uid 1000 can reach (pytest's tmp_path is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="copickfs-lowlevel-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fromfd_data() -> bytes:
    return os.urandom(3 << 20)


def start(root: Path, name: str, data: bytes, plain: bool = False) -> Mount:
    mnt, backing = root / name / "mnt", root / name / "backing"
    mnt.mkdir(parents=True)
    backing.mkdir()
    for d in (mnt.parent, mnt, backing):
        d.chmod(0o755)
    (backing / "fromfd.bin").write_bytes(data)
    (backing / "writable.bin").write_bytes(b"0123456789" * 10)
    log = root / name / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(mnt), str(backing),
                                 *(["plain"] if plain else [])], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    m = Mount(root / name, mnt, backing, proc, log)
    deadline = time.monotonic() + 30
    while not is_mounted(str(mnt)):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(m)
            raise RuntimeError(f"the daemon did not mount ({proc.returncode}): {log.read_text()}")
        time.sleep(0.02)
    os.stat(mnt)
    return m


def stop(m: Mount) -> int:
    """Unmount (also a dead daemon's mount), reap the daemon we started, return its status."""
    try:
        force_unmount(m.mnt)
        try:
            return m.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
            return -9
    finally:
        force_unmount(m.mnt)


@pytest.fixture(scope="module")
def fs(fuse_root: Path, fromfd_data: bytes) -> Iterator[Mount]:
    m = start(fuse_root, "main", fromfd_data)
    try:
        yield m
    finally:
        status = stop(m)
        log = m.log.read_text()
    assert status == 0, f"the daemon exited with {status}: {log}"
    assert (m.backing / "destroyed").exists(), "destroy() was not called"
    assert log.count("Traceback") == log.count("RuntimeError: a bug in the handler"), log


def fails_with(code: int, call: Any, *args: Any) -> None:
    with pytest.raises(OSError) as e:
        call(*args)
    assert e.value.errno == code, f"{call.__name__}{args}: {e.value!r}, expected {errno.errorcode[code]}"


def test_session_setup_errors(tmp_path: Path) -> None:
    """Ops the handler lacks stay NULL (libfuse answers them); a bad option or mount point
    is a one-line RuntimeError, and nothing is left mounted."""
    session = FuseSession(object(), str(tmp_path), ["no_such_option"])
    assert session._ops.lookup is None and session._ops.readdirplus is None and session._ops.init
    with pytest.raises(RuntimeError, match="fuse_session_new failed"):
        session.run()
    missing = tmp_path / "missing"
    with pytest.raises(RuntimeError, match="cannot mount"):
        FuseSession(MemFS(str(tmp_path)), str(missing), ["fsname=lltest"]).run()
    assert not is_mounted(str(missing))
    with pytest.raises(RuntimeError, match="only valid inside"):
        caller()


def test_stat_list_read(fs: Mount) -> None:
    assert sorted(os.listdir(fs.mnt)) == sorted(
        ["hello.txt", "dir", "shared", "fromfd.bin", "writable.bin", ".stats", "whoami", "big", "big_plain"])
    st = os.stat(fs.mnt / "hello.txt")
    assert S.S_ISREG(st.st_mode) and S.S_IMODE(st.st_mode) == 0o644 and st.st_size == 12
    assert st.st_mtime_ns == 1_600_000_000_000_000_000 and st.st_nlink == 1
    assert st.st_blocks == 1  # defaulted from the size: the handler's attributes have no st_blocks
    assert S.S_ISDIR(os.stat(fs.mnt / "dir").st_mode)
    assert (fs.mnt / "hello.txt").read_bytes() == b"hello world\n"
    assert (fs.mnt / "dir" / "nested.txt").read_bytes() == b"nested\n"
    assert [e.name for e in os.scandir(fs.mnt / "dir")] == ["nested.txt"]
    sv = os.statvfs(fs.mnt)
    assert sv.f_namemax == os.statvfs(fs.backing).f_namemax and sv.f_bsize > 0


def test_read_from_descriptor(fs: Mount, fromfd_data: bytes) -> None:
    assert (fs.mnt / "fromfd.bin").read_bytes() == fromfd_data
    with open(fs.mnt / "fromfd.bin", "rb") as f:
        f.seek(1_000_001)
        assert f.read(70_000) == fromfd_data[1_000_001:1_070_001]
    assert os.stat(fs.mnt / "fromfd.bin").st_size == len(fromfd_data)


def test_write_through_descriptor(fs: Mount) -> None:
    path = fs.mnt / "writable.bin"
    with open(path, "r+b") as f:
        f.seek(5)
        assert f.write(b"ABCDE") == 5
    expected = b"01234ABCDE" + b"0123456789" * 9
    assert (fs.backing / "writable.bin").read_bytes() == expected  # copied into the backing fd in C
    assert path.read_bytes() == expected
    big = os.urandom(3 << 20)
    path.write_bytes(big)  # O_TRUNC, then 1 MiB writes
    assert (fs.backing / "writable.bin").read_bytes() == big
    assert os.stat(path).st_size == len(big)


def test_create_write_in_memory(fs: Mount) -> None:
    path = fs.mnt / "shared" / "memory.txt"
    before = fs.stats().get("memory_writes", 0)
    path.write_bytes(b"first")
    with open(path, "ab") as f:
        f.write(b" second")
    assert path.read_bytes() == b"first second"
    assert fs.stats()["memory_writes"] > before  # handler.write got the bytes (no write_fd)
    os.truncate(path, 5)
    assert path.read_bytes() == b"first"
    os.chmod(path, 0o600)
    assert S.S_IMODE(os.stat(path).st_mode) == 0o600
    os.utime(path, ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_002))
    assert os.stat(path).st_mtime_ns == 1_700_000_000_000_000_002
    assert fs.stats()["last_setattr"] == ["atime_ns", "mtime_ns"]
    os.utime(path)  # both "now"
    assert abs(os.stat(path).st_mtime_ns - time.time_ns()) < 10 * 10**9
    os.unlink(path)


def test_errors_reach_the_caller(fs: Mount) -> None:
    fails_with(errno.ENOENT, os.stat, fs.mnt / "missing")
    fails_with(errno.ENOENT, open, fs.mnt / "dir" / "missing")
    fails_with(errno.ENOENT, os.stat, fs.mnt / "noerrno")  # an errno-less FileNotFoundError
    fails_with(errno.EACCES, os.stat, fs.mnt / "eacces")
    for _ in range(3):
        fails_with(errno.ENOENT, os.stat, fs.mnt / "negative")
    assert fs.stats()["negative"] == 1  # the negative entry was cached
    fails_with(errno.EIO, os.stat, fs.mnt / "crash")  # any other exception: EIO (and a logged traceback)
    fails_with(errno.ENOTDIR, os.listdir, fs.mnt / "hello.txt")
    fails_with(errno.ENOTEMPTY, os.rmdir, fs.mnt / "dir")
    fails_with(errno.EEXIST, os.mkdir, fs.mnt / "dir")
    fails_with(errno.EPERM, os.mkfifo, fs.mnt / "shared" / "fifo")
    # No getxattr method: libfuse answers ENOSYS, which the kernel turns into EOPNOTSUPP for good.
    fails_with(errno.EOPNOTSUPP, os.getxattr, fs.mnt / "hello.txt", "user.x")


def test_names(fs: Mount) -> None:
    d = fs.mnt / "shared" / "names"
    os.mkdir(d, 0o755)
    assert S.S_ISDIR(os.stat(d).st_mode)
    (d / "a").write_bytes(b"A")
    os.rename(d / "a", d / "b")
    assert os.listdir(d) == ["b"] and (d / "b").read_bytes() == b"A"
    fails_with(errno.ENOENT, os.stat, d / "a")
    os.mkdir(d / "sub")
    os.rename(d / "b", d / "sub" / "c")
    assert os.listdir(d / "sub") == ["c"]
    os.symlink("sub/c", d / "link")
    assert os.readlink(d / "link") == "sub/c" and (d / "link").read_bytes() == b"A"
    os.link(d / "sub" / "c", d / "hard")
    assert os.stat(d / "hard").st_nlink == 2 and os.stat(d / "hard").st_ino == os.stat(d / "sub" / "c").st_ino
    for name in ("link", "hard", "sub/c"):
        os.unlink(d / name)
    fails_with(errno.ENOENT, os.stat, d / "sub" / "c")
    os.rmdir(d / "sub")
    os.rmdir(d)
    fails_with(errno.ENOENT, os.stat, d)


def test_forget_after_unlink(fs: Mount) -> None:
    """An unlinked file's inode is evicted at once (fuse's drop_inode deletes unused inodes)
    and its lookups are forgotten: deterministic, unlike waiting for memory pressure."""
    path = fs.mnt / "shared" / "doomed"
    path.write_bytes(b"x")
    ino = os.stat(path).st_ino
    assert fs.stats()["nlookup"].get(str(ino), 0) >= 1
    os.unlink(path)
    deadline = time.monotonic() + 10
    while fs.stats()["nlookup"].get(str(ino), 0) != 0:  # FORGET goes out asynchronously
        assert time.monotonic() < deadline, "no FORGET for an unlinked file"
        time.sleep(0.05)


def _listing(path: Path) -> dict[str, int]:
    return {e.name: e.stat().st_size for e in os.scandir(path)}


def test_big_listing_is_complete_and_cached(fs: Mount) -> None:
    expected = {"entry%05d" % i: i for i in range(BIG)}
    before = fs.stats()
    assert _listing(fs.mnt / "big") == expected
    first = fs.stats()
    assert first["readdirplus"] - before["readdirplus"] > 1  # several pages
    assert first["readdir"] == before["readdir"]  # READDIRPLUS_AUTO cleared: plus only
    assert first["live_big"] == BIG  # every entry sent was counted as a lookup, once...
    assert all(first["nlookup"][str(ino)] == 1 for ino in
               (os.stat(fs.mnt / "big" / n).st_ino for n in ("entry00000", "entry02999")))
    for _ in range(2):
        assert _listing(fs.mnt / "big") == expected
    again = fs.stats()
    assert again["readdirplus"] == first["readdirplus"], "the kernel did not cache the listing"
    assert again["lookup"] - first["lookup"] <= 1  # only .stats (zero timeout), nothing in big
    # GETATTR reaches the daemon only for .stats (zero timeout) and for big itself (the
    # kernel refreshes a directory's times around a listing), never for an entry of big.
    asked = set(again["getattr_log"][len(first["getattr_log"]):])
    assert asked <= {os.stat(fs.mnt / ".stats").st_ino, os.stat(fs.mnt / "big").st_ino}, asked
    assert again["opendir"] == first["opendir"] + 2  # OPENDIR still reaches the daemon

    # Dropping the kernel's dentries and inodes sends a (batch) FORGET for every inode.
    # /proc/sys/vm/drop_caches is machine-wide and root-only; where it is not writable
    # (unprivileged containers) that part is skipped.
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
    except OSError as e:
        pytest.skip(f"cannot drop the kernel's caches here: {e}")
    deadline = time.monotonic() + 15
    while (stats := fs.stats())["live_big"] != 0:
        assert time.monotonic() < deadline, f"{stats['live_big']} entries of big were never forgotten"
        time.sleep(0.1)
    assert stats["forgets"] >= before["forgets"] + BIG


def test_caller_is_the_requesting_user(fs: Mount) -> None:
    out = subprocess.run(["cat", str(fs.mnt / "whoami")], capture_output=True, check=True, user=USER,
                         group=USER)
    uid, gid, pid = map(int, out.stdout.split())
    assert (uid, gid) == (USER, USER) and pid > 0
    assert (fs.mnt / "whoami").read_bytes().split()[:2] == [b"%d" % os.getuid(), b"%d" % os.getgid()]
    path = fs.mnt / "shared" / "by_user"
    subprocess.run(["sh", "-c", f"umask 027 && touch '{path}'"], check=True, user=USER, group=USER)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (USER, USER)
    assert S.S_IMODE(st.st_mode) == 0o640  # the kernel applied the umask (no FUSE_CAP_DONT_MASK)
    assert fs.stats()["create_umask"] == 0o027  # and caller_umask() saw it
    os.unlink(path)


def test_plain_readdir_and_signal_stop(fuse_root: Path, fromfd_data: bytes) -> None:
    """A handler without readdirplus: plain READDIR, resumed at next_off across pages,
    cached like the plus listing; SIGTERM then stops the daemon cleanly (status 0)."""
    m = start(fuse_root, "plain", fromfd_data, plain=True)
    try:
        names = sorted(os.listdir(m.mnt / "big_plain"))
        assert names == ["entry%05d" % i for i in range(BIG)]
        first = m.stats()
        assert first["readdir"] > 1 and first["readdirplus"] == 0  # several pages
        assert first["live_big"] == 0  # plain READDIR looks nothing up
        assert sorted(os.listdir(m.mnt / "big_plain")) == names
        assert m.stats()["readdir"] == first["readdir"]
        assert os.stat(m.mnt / "big_plain" / "entry00007").st_size == 7
        m.proc.send_signal(signal.SIGTERM)  # the daemon we started, by PID
        assert m.proc.wait(timeout=10) == 0
        assert not is_mounted(str(m.mnt))
    finally:
        stop(m)
