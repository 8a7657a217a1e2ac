"""The kernel's inodes of the mount: numbers, the union path each stands for, lookup counts.

libfuse's low-level API names every file by the inode number we gave it in a LOOKUP
reply. A node lives from its first lookup until the kernel FORGETs it, so the table is
as large as the kernel's inode cache, not as every path ever seen; past ``soft_limit``
nodes, `stale` offers the least recently used for the kernel to drop (the mount asks it
to with an entry invalidation, and the FORGET that follows removes them).

Numbers are stable for the life of a node, across copy-up and rename. Hard links of the
overlay share one node (keyed by the storage's device and inode), so both names report
one inode number. A node whose last name went away (unlinked while open) keeps its
number and is answered through its open descriptors.
"""

from __future__ import annotations

import errno
import itertools
import os
import posixpath
import stat as S
import threading
from collections.abc import Iterator

from ..union.stat import Stat

ROOT = 1


class Node:
    __slots__ = ("ino", "kind", "path", "nlookup", "key", "aliases", "fds")

    def __init__(self, ino: int, path: str | None, key: tuple[int, int] | None, kind: int = 0) -> None:
        self.ino = ino
        self.kind = kind  # S_IFMT bits: a name that now holds another type is another inode
        self.path = path  # the name the union knows it by; None once unlinked
        self.nlookup = 0
        self.key = key  # (st_dev, st_ino) of a hard-linked overlay file, else None
        self.aliases: set[str] | None = None  # its other names, for hard links only
        self.fds: list[int] | None = None  # descriptors of its open handles

    def names(self) -> Iterator[str]:
        if self.path is not None:
            yield self.path
        yield from self.aliases or ()


def identity(st: Stat) -> tuple[int, int] | None:
    """The key hard links share: only files that have several names."""
    return (st.dev, st.ino) if st.ino and st.nlink > 1 and not st.is_dir else None


class InodeTable:
    """Lock order: this table's lock is the innermost; nothing is called while holding it."""

    def __init__(self, soft_limit: int = 100_000) -> None:
        self.soft_limit = soft_limit
        self._nodes: dict[int, Node] = {ROOT: Node(ROOT, "", None, S.S_IFDIR)}
        self._nodes[ROOT].nlookup = 1 << 62  # never forgotten
        self._by_path: dict[str, Node] = {"": self._nodes[ROOT]}
        self._by_key: dict[tuple[int, int], Node] = {}
        self._numbers = itertools.count(ROOT + 1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._nodes)

    # ------------------------------------------------------------ kernel references

    def lookup(self, path: str, st: Stat) -> int:
        """The number of ``path`` (whose attributes are ``st``), counting one kernel reference."""
        key = identity(st)
        kind = S.S_IFMT(st.mode)
        with self._lock:
            node = self._by_path.get(path)
            if node is not None and node.kind != kind and node.ino != ROOT:
                del self._by_path[path]  # replaced behind our back by another type
                self._drop_name(node, path)
                node = None
            if node is None and key is not None:
                node = self._by_key.get(key)
                if node is not None:  # another name of a hard-linked file
                    self._add_name(node, path)
            if node is None:
                node = Node(next(self._numbers), path, key, kind)
                self._nodes[node.ino] = node
                self._by_path[path] = node
            else:
                self._nodes[node.ino] = self._nodes.pop(node.ino)  # most recently used last
            if key is not None and node.key is None:
                node.key = key
            if node.key is not None:
                self._by_key[node.key] = node
            node.nlookup += 1
            return node.ino

    def peek(self, path: str) -> int | None:
        """The number of ``path`` if the kernel knows it; no reference is counted."""
        node = self._by_path.get(path)
        return None if node is None else node.ino

    def forget(self, ino: int, count: int) -> None:
        with self._lock:
            node = self._nodes.get(ino)
            if node is None or ino == ROOT:
                return
            node.nlookup -= count
            if node.nlookup > 0:
                return
            del self._nodes[ino]
            for name in list(node.names()):
                if self._by_path.get(name) is node:
                    del self._by_path[name]
            if node.key is not None and self._by_key.get(node.key) is node:
                del self._by_key[node.key]

    def stale(self, count: int) -> list[tuple[int, str]]:
        """Up to ``count`` (parent number, name) pairs of the least recently used nodes past
        the soft limit that hold no open files, for the kernel to drop."""
        with self._lock:
            excess = min(count, len(self._nodes) - self.soft_limit)
            out: list[tuple[int, str]] = []
            if excess <= 0:
                return out
            for node in self._nodes.values():
                if node.ino == ROOT or node.fds or node.path is None:
                    continue
                parent = self._by_path.get(posixpath.dirname(node.path))
                if parent is not None:
                    out.append((parent.ino, posixpath.basename(node.path)))
                    if len(out) >= excess:
                        break
            return out

    # ------------------------------------------------------------ names

    def path(self, ino: int) -> str:
        """The union path of ``ino``: ESTALE for a number the kernel should not hold,
        ENOENT for a file with no name left."""
        node = self._nodes.get(ino)
        if node is None:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        if node.path is None:
            raise OSError(errno.ENOENT, "unlinked")
        return node.path

    def node(self, ino: int) -> Node:
        node = self._nodes.get(ino)
        if node is None:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        return node

    def child(self, parent: int, name: str) -> str:
        base = self.path(parent)
        return f"{base}/{name}" if base else name

    def linked(self, ino: int, path: str, st: Stat) -> None:
        """``path`` is a new hard link of ``ino``: one more name, one more kernel reference."""
        with self._lock:
            node = self._nodes.get(ino)
            if node is None:
                raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
            stale = self._by_path.get(path)
            if stale is not None and stale is not node:
                self._drop_name(stale, path)
            self._add_name(node, path)
            node.key = identity(st)
            if node.key is not None:
                self._by_key[node.key] = node
            node.nlookup += 1

    def removed(self, path: str) -> None:
        """``path`` no longer names its node (unlink, rmdir, replaced by a rename)."""
        with self._lock:
            node = self._by_path.pop(path, None)
            if node is not None:
                self._drop_name(node, path)

    def moved(self, src: str, dst: str) -> None:
        """``src`` (and everything below it) is now ``dst``; whatever ``dst`` named is gone."""
        with self._lock:
            replaced = self._by_path.pop(dst, None)
            if replaced is not None:
                self._drop_name(replaced, dst)
            node = self._by_path.pop(src, None)
            if node is not None:
                self._drop_name(node, src)
                self._add_name(node, dst)
            prefix = src + "/"
            below = [(p, n) for p, n in self._by_path.items() if p.startswith(prefix)]
            for path, child in below:
                del self._by_path[path]
                self._drop_name(child, path)
                self._add_name(child, dst + path[len(src):])

    def _add_name(self, node: Node, path: str) -> None:
        self._by_path[path] = node
        if node.path is None:
            node.path = path
        elif node.path != path:
            node.aliases = (node.aliases or set()) | {path}

    @staticmethod
    def _drop_name(node: Node, path: str) -> None:
        if node.path == path:
            node.path = node.aliases.pop() if node.aliases else None
        elif node.aliases:
            node.aliases.discard(path)

    # ------------------------------------------------------------ open files

    def opened(self, ino: int, fd: int | None) -> None:
        if fd is None:
            return
        with self._lock:
            node = self._nodes.get(ino)
            if node is not None:
                node.fds = (node.fds or []) + [fd]

    def closed(self, ino: int, fd: int | None) -> None:
        if fd is None:
            return
        with self._lock:
            node = self._nodes.get(ino)
            if node is not None and node.fds and fd in node.fds:
                node.fds = [f for f in node.fds if f != fd] or None

    def open_fd(self, ino: int) -> int | None:
        """A descriptor of an open handle of ``ino`` (answers for files with no name left)."""
        node = self._nodes.get(ino)
        return node.fds[0] if node is not None and node.fds else None
