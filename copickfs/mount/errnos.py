"""Every errno the mount returns is chosen here, by exception class.

fsspec raises ``FileNotFoundError(path)`` with ``errno=None``, which an errno-less
reply would turn into EINVAL; an errno already set on an OSError is kept.
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("copickfs.mount")

_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, errno.ENOENT),
    (FileExistsError, errno.EEXIST),
    (IsADirectoryError, errno.EISDIR),
    (NotADirectoryError, errno.ENOTDIR),
    (PermissionError, errno.EACCES),
    (InterruptedError, errno.EINTR),
    (BlockingIOError, errno.EAGAIN),
    (TimeoutError, errno.ETIMEDOUT),
    (ConnectionError, errno.EIO),
    (NotImplementedError, errno.ENOTSUP),
    (ValueError, errno.EINVAL),
)


def errno_of(exc: BaseException) -> int:
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    return errno.EIO


F = TypeVar("F", bound=Callable[..., Any])


def translated(func: F) -> F:
    """Raise every failure of a FUSE operation as an OSError with the right errno."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as e:
            code = errno_of(e)
            if code == errno.EIO:  # a bug's traceback at once; a storage's failure only with debug
                (log.debug if isinstance(e, OSError) else log.exception)("%s%r failed", func.__name__,
                                                                        args[1:], exc_info=True)
            report = getattr(args[0], "report_failure", None) if args else None
            if report is not None:
                report(func.__name__, args[1:], code)
            raise OSError(code, str(e)) from e

    return wrapper  # type: ignore[return-value]
