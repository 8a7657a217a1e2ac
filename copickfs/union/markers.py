"""Names of the overlay's marker files (OCI/AUFS convention), with no I/O.

Markers are plain files so they work on any storage (local, S3) and other tools
(container runtimes, `umoci`) already understand them:

- ``.wh.NAME`` in an overlay directory hides ``NAME`` of the static layer;
- ``.wh..wh..opq`` in an overlay directory hides everything static below it;
- ``.wh..wh.tmp.*`` are copy-up files in flight, never shown.

Every name starting with ``.wh.`` is reserved: never listed, never creatable by users.
"""

from __future__ import annotations

import posixpath

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
TEMP_PREFIX = ".wh..wh.tmp."


def is_reserved(name: str) -> bool:
    """True for names users may neither see nor create."""
    return name.startswith(PREFIX)


def whiteout_of(path: str) -> str:
    """The whiteout path that hides ``path``."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, PREFIX + name)


def hidden_name(marker: str) -> str | None:
    """The name a whiteout hides, or None if ``marker`` is not a whiteout."""
    if marker.startswith(PREFIX) and not marker.startswith(PREFIX + PREFIX):
        return marker[len(PREFIX):]
    return None


def opaque_marker_of(directory: str) -> str:
    return posixpath.join(directory, OPAQUE)
