"""Per-path locks for the union's read-modify-write steps (copy-up, rename, whiteouts).

A fixed set of striped locks: paths hash onto stripes, and several paths are always
locked in stripe order, so two renames crossing each other cannot deadlock.
Lock order: a union operation takes its path locks first and nothing else after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class PathLocks:
    def __init__(self, stripes: int = 256) -> None:
        self._locks = [threading.RLock() for _ in range(stripes)]

    @contextmanager
    def hold(self, *paths: str) -> Iterator[None]:
        indices = sorted({hash(p) % len(self._locks) for p in paths})
        taken: list[threading.RLock] = []
        try:
            for i in indices:
                self._locks[i].acquire()
                taken.append(self._locks[i])
            yield
        finally:
            for lock in reversed(taken):
                lock.release()
