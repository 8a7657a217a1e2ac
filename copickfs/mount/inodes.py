"""Inode numbers that stay the same for a path for the life of the mount, across copy-up and rename."""

from __future__ import annotations

import itertools
import threading


class InodeTable:
    ROOT = 1

    def __init__(self) -> None:
        self._by_path: dict[str, int] = {"": self.ROOT}
        self._numbers = itertools.count(self.ROOT + 1)
        self._lock = threading.Lock()

    def __call__(self, path: str) -> int:
        number = self._by_path.get(path)
        if number is None:
            with self._lock:
                number = self._by_path.setdefault(path, next(self._numbers))
        return number

    def moved(self, src: str, dst: str, is_dir: bool) -> None:
        """``src`` (and, for a directory, everything below it) is now ``dst``."""
        prefix = src + "/"
        with self._lock:
            self._by_path.pop(dst, None)
            if not is_dir:
                if src in self._by_path:
                    self._by_path[dst] = self._by_path.pop(src)
                return
            moved = {p: n for p, n in self._by_path.items() if p == src or p.startswith(prefix)}
            for path, number in moved.items():
                del self._by_path[path]
                self._by_path[dst + path[len(src):]] = number

    def forget(self, path: str) -> None:
        with self._lock:
            self._by_path.pop(path, None)
