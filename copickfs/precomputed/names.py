"""Chunk names of a Neuroglancer precomputed pyramid, and their parsers. No I/O.

A chunk of scale ``KEY`` covering ``[x0,x1) × [y0,y1) × [z0,z1)`` has four names, as
neuroglancer-scripts' ``FileAccessor`` reads them:

- flat ``KEY/x0-x1_y0-y1_z0-z1`` and nested ``KEY/x0-x1/y0-y1/z0-z1``,
- each raw, or gzip-compressed with a ``.gz`` suffix.

`VARIANTS` is the order in which a chunk's stored variants win when several exist
(only possible when something other than copickfs wrote them): nested before flat, as
neuroglancer-scripts' reader ends up choosing, and raw before ``.gz``.
"""

from __future__ import annotations

import json
import operator
import posixpath
import re
from dataclasses import dataclass
from typing import Any

GZ = ".gz"

#: MIME types neuroglancer-scripts never gzips.
NO_COMPRESS_MIME_TYPES = frozenset({"application/json", "image/jpeg", "image/png"})

Range = tuple[int, int]
Coords = tuple[int, int, int, int, int, int]

_INT = r"-?\d+"
_RANGE = re.compile(rf"({_INT})-({_INT})")
_FLAT = re.compile(rf"({_INT})-({_INT})_({_INT})-({_INT})_({_INT})-({_INT})")


@dataclass(frozen=True, slots=True)
class Variant:
    """One of a chunk's four spellings."""

    nested: bool
    gz: bool


#: Which stored variant of a chunk wins when several are stored.
VARIANTS = (Variant(True, False), Variant(True, True), Variant(False, False), Variant(False, True))


def check_relative(path: str, what: str = "path") -> str:
    """``path`` normalised, or ValueError if it is absolute, empty or leaves the pyramid."""
    if not isinstance(path, str):
        path = str(path)
    if path.startswith("/") or "\\" in path:
        raise ValueError(f"{what} must be relative to the pyramid: {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{what} leaves the pyramid: {path!r}")
    if not parts:
        raise ValueError(f"{what} names no file in the pyramid: {path!r}")
    return "/".join(parts)


def check_coords(chunk_coords: Any) -> Coords:
    """Six integers ``(x0, x1, y0, y1, z0, z1)``; ValueError otherwise."""
    try:
        coords = tuple(operator.index(c) for c in chunk_coords)
    except TypeError:
        raise ValueError(f"chunk coordinates must be six integers: {chunk_coords!r}") from None
    if len(coords) != 6:
        raise ValueError(f"chunk coordinates must be six integers: {chunk_coords!r}")
    return coords  # type: ignore[return-value]


def chunk_path(key: str, coords: Coords, variant: Variant) -> str:
    """The pyramid-relative path of one variant of a chunk."""
    x0, x1, y0, y1, z0, z1 = coords
    if variant.nested:
        name = f"{key}/{x0}-{x1}/{y0}-{y1}/{z0}-{z1}"
    else:
        name = f"{key}/{x0}-{x1}_{y0}-{y1}_{z0}-{z1}"
    return name + GZ if variant.gz else name


def split_gz(name: str) -> tuple[str, bool]:
    """``("a", True)`` for ``"a.gz"``, ``("a", False)`` for ``"a"``."""
    if name.endswith(GZ):
        return name[: -len(GZ)], True
    return name, False


def parse_range(name: str) -> Range | None:
    """``(0, 64)`` for ``"0-64"``; None for anything else."""
    m = _RANGE.fullmatch(name)
    return None if m is None else (int(m[1]), int(m[2]))


def parse_flat(name: str) -> Coords | None:
    """The coordinates of a flat chunk basename ``x0-x1_y0-y1_z0-z1`` (no ``.gz``), or None."""
    m = _FLAT.fullmatch(name)
    return None if m is None else tuple(int(g) for g in m.groups())  # type: ignore[return-value]


def range_name(r: Range) -> str:
    return f"{r[0]}-{r[1]}"


def flat_name(coords: Coords, gz: bool) -> str:
    x0, x1, y0, y1, z0, z1 = coords
    return f"{x0}-{x1}_{y0}-{y1}_{z0}-{z1}" + (GZ if gz else "")


def scale_keys(info: bytes) -> frozenset[str] | None:
    """The scale keys of an ``info`` file, or None unless it is a JSON object with a ``scales`` list.

    Keys that would leave the pyramid (absolute, ``..``) are left out.
    """
    try:
        data = json.loads(info)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("scales"), list):
        return None
    keys = set()
    for scale in data["scales"]:
        key = scale.get("key") if isinstance(scale, dict) else None
        if isinstance(key, str):
            try:
                keys.add(check_relative(key, "key"))
            except ValueError:
                continue
    return frozenset(keys)


def join(*parts: str) -> str:
    """Join relative paths where ``""`` is the root."""
    return posixpath.join(*[p for p in parts if p]) if any(parts) else ""
