"""One log line per failed request, with its path and errno, at a bounded rate.

Why bounded: a client looping on a failing call (a retry loop, a hostile user on an
``allow_other`` mount) must not flood the journal. Up to ``burst`` lines go out at once and
``rate`` per second after that; what is dropped is counted and reported by the next line
that gets through. Misses of a lookup (ENOENT) are no failure of the mount and are not
logged (a shell's PATH search makes dozens); ``debug`` traces every request anyway.
Lines name the operation, the path (escaped: one line whatever the name holds) and the
errno; never an exception's text, which may carry a URL.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("copickfs.mount")


class FailureLog:
    def __init__(self, rate: float = 10.0, burst: int = 50, clock=time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._dropped = 0
        self._lock = threading.Lock()

    def failed(self, op: str, path: str | None | Callable[[], str | None], code: int) -> bool:
        """Log one failure unless over the rate; whether it was logged. ``path`` may be a
        function giving it, called only for a line that goes out (not for a lookup's miss,
        nor past the rate)."""
        if op == "lookup" and code == errno.ENOENT:
            return False
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                self._dropped += 1
                return False
            self._tokens -= 1
            dropped, self._dropped = self._dropped, 0
        name = errno.errorcode.get(code, str(code))
        if callable(path):
            path = path()
        where = ascii(path)[1:-1] if path is not None else "?"
        suffix = f" ({dropped} more failure line(s) dropped by the rate limit)" if dropped else ""
        log.warning("%s %s: %s (%s)%s", op, where or "/", name, _strerror(code), suffix)
        return True


def _strerror(code: int) -> str:
    import os

    try:
        return os.strerror(code)
    except ValueError:
        return "unknown error"
