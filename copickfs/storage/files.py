"""Small file and URL helpers the storage modules share (cache entries, staged copies)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def safe_url(url: str) -> str:
    """``url`` as it may appear in messages and on disk: no user info; http(s) URLs also
    lose their query (pre-signed signatures). Object keys may contain '?', so others keep it."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.scheme in ("http", "https"):
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return urlunsplit(parts._replace(netloc=netloc)) if parts.netloc else url


def protocols(fs: Any) -> tuple[str, ...]:
    """The protocol names of an fsspec filesystem (``"s3"`` in those of s3fs)."""
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def unlink_quietly(path: str) -> None:
    """Remove ``path``; already gone is fine."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_json_object(path: str) -> dict[str, Any] | None:
    """A sidecar's JSON object; None when missing, unreadable or not an object."""
    try:
        with open(path, "rb") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
