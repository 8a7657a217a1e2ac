"""copickfs: one directory tree over a read-only static root and a writable overlay."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("copickfs")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
