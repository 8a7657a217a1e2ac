"""Names of the overlay's marker files (OCI/AUFS convention), with no I/O.

Markers are plain files so they work on any storage (local, S3) and other tools
(container runtimes, `umoci`) already understand them:

- ``.wh.NAME`` in an overlay directory hides ``NAME`` of the static layer;
- ``.wh..wh..opq`` in an overlay directory hides everything static below it;
- ``.wh..wh.long.HEX`` is the whiteout of a name too long for the ``.wh.`` prefix to fit
  in NAME_MAX (252 bytes or more): HEX is the SHA-256 of the name's bytes;
- ``.wh..wh.work`` at the overlay root is the private directory copy-ups are made in
  (``.wh..wh.tmp.*`` beside the target, by older releases).

Every name starting with ``.wh.`` is reserved: never listed, never creatable by users.
"""

from __future__ import annotations

import hashlib
import os
import posixpath

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
TEMP_PREFIX = ".wh..wh.tmp."
LONG_PREFIX = ".wh..wh.long."
NAME_MAX = 255
#: A directory at the overlay root (0700) where copy-ups are made before they are renamed into place.
WORK_DIR = ".wh..wh.work"


def is_reserved(name: str) -> bool:
    """True for names users may neither see nor create."""
    return name.startswith(PREFIX)


def whiteout_name(name: str) -> str:
    """The marker name that hides ``name``: ``.wh.NAME``, or a digest where that is too long."""
    marker = PREFIX + name
    if len(marker) <= NAME_MAX // 4 or len(os.fsencode(marker)) <= NAME_MAX:
        return marker
    return LONG_PREFIX + hashlib.sha256(os.fsencode(name)).hexdigest()


def whiteout_of(path: str) -> str:
    """The whiteout path that hides ``path``."""
    parent, name = posixpath.split(path)
    return posixpath.join(parent, whiteout_name(name))


def hidden_name(marker: str) -> str | None:
    """The name a whiteout hides, or None if ``marker`` is not a whiteout."""
    if marker.startswith(PREFIX) and not marker.startswith(PREFIX + PREFIX):
        return marker[len(PREFIX):]
    return None


def opaque_marker_of(directory: str) -> str:
    return posixpath.join(directory, OPAQUE)
