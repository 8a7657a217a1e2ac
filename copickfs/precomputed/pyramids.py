"""Which union directories are precomputed pyramids, and what a path inside one names.

A directory is a pyramid when its ``info`` is a JSON object with a ``scales`` list.
What each directory is (`Place`) is worked out once, from its parent's place and, for
directories outside pyramids, one look at its ``info``, then kept in a dict: a path
outside every pyramid costs one dict lookup of its parent.

Changes made through the view are reported here (`info_changed`, `moved`, `touched`).
While an ``info`` written through the view does not parse yet (it is being written), its
directory is re-examined on each request below it, for `PENDING_SECONDS` at most.
Changes made behind the view's back (directly in the overlay) are not noticed.
"""

from __future__ import annotations

import stat as S
import threading
import time
from dataclasses import dataclass, field

from ..union import UnionFileSystem
from .names import Coords, Range, Variant, chunk_path, join, parse_flat, parse_range, scale_keys, split_gz

INFO = "info"
INFO_LIMIT = 16 << 20  # an info file larger than this is not a pyramid's
PENDING_SECONDS = 5.0
INDEX_SECONDS = 1.0  # how long a scale directory's listing of flat chunks is reused


@dataclass(frozen=True, slots=True)
class Place:
    """What a directory is, for the names inside it.

    ``pyramid`` is the pyramid root's path (None outside pyramids), ``rel`` the directory's
    path below that root, ``scale`` the scale directory's path when the directory is a
    scale directory (``ranges == ()``) or a nested directory below one (``(x,)``, ``(x, y)``).
    """

    pyramid: str | None = None
    keys: frozenset[str] = frozenset()
    rel: str = ""
    scale: str | None = None
    ranges: tuple[Range, ...] = ()


ORDINARY = Place()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A path that names a chunk: ``variant`` is how it is spelt."""

    path: str
    scale: str
    coords: Coords
    variant: Variant

    def path_of(self, variant: Variant) -> str:
        return chunk_path(self.scale, self.coords, variant)


@dataclass(frozen=True, slots=True)
class Nested:
    """A path that names a nested directory of a scale: ``ranges`` is ``(x,)`` or ``(x, y)``."""

    path: str
    scale: str
    ranges: tuple[Range, ...]


Role = Chunk | Nested


@dataclass
class FlatIndex:
    """The flat chunks stored in a scale directory: x → y → z → the ``.gz`` flags present."""

    made: float
    tree: dict[Range, dict[Range, dict[Range, set[bool]]]] = field(default_factory=dict)

    def has(self, ranges: tuple[Range, ...]) -> bool:
        level: dict = self.tree
        for r in ranges:
            if r not in level:
                return False
            level = level[r]
        return True


def is_fileish(kind: int) -> bool:
    """A listing's type bits that may be a chunk file (0: the storage did not say)."""
    return kind == 0 or S.S_ISREG(kind)


def is_dirish(kind: int) -> bool:
    return kind == 0 or S.S_ISDIR(kind)


def under(path: str, top: str) -> bool:
    return not top or path == top or path.startswith(top + "/")


class PyramidMap:
    """The places of directories in one union, worked out lazily and kept."""

    def __init__(self, union: UnionFileSystem) -> None:
        self.union = union
        self._places: dict[str, Place] = {}
        self._pending: dict[str, float] = {}  # directory -> until when its info is re-read
        self._flat: dict[str, FlatIndex] = {}
        self._lock = threading.Lock()
        self._generation = 0

    # ------------------------------------------------------------ roles

    def role(self, path: str) -> Role | None:
        """What ``path`` names inside a pyramid; None for every other path."""
        if not path:
            return None
        parent, _, name = path.rpartition("/")
        place = None if self._pending else self._places.get(parent)
        if place is None:
            place = self.place(parent)
        if place.scale is None:
            return None
        depth = len(place.ranges)
        if depth == 0:
            base, gz = split_gz(name)
            coords = parse_flat(base)
            if coords is not None:
                return Chunk(path, place.scale, coords, Variant(False, gz))
            r = None if gz else parse_range(name)
            return None if r is None else Nested(path, place.scale, (r,))
        if depth == 1:
            r = parse_range(name)
            return None if r is None else Nested(path, place.scale, (place.ranges[0], r))
        base, gz = split_gz(name)
        r = parse_range(base)
        if r is None:
            return None
        (x, y) = place.ranges
        return Chunk(path, place.scale, (*x, *y, *r), Variant(True, gz))  # type: ignore[arg-type]

    def place(self, d: str) -> Place:
        """What directory ``d`` is (worked out once, then a dict lookup)."""
        blocked = self._unsettled(d) if self._pending else None
        known = self._places.get(d)
        if known is not None and (blocked is None or not under(d, blocked)):
            return known
        generation = self._generation
        chain = []
        current = d
        parent_place: Place | None = None
        while True:
            chain.append(current)
            if not current:
                break
            parent = current.rpartition("/")[0]
            hit = self._places.get(parent)
            if hit is not None and (blocked is None or not under(parent, blocked)):
                parent_place = hit
                break
            current = parent
        for current in reversed(chain):
            parent_place = self._derive(current, parent_place)
            if generation == self._generation and (blocked is None or not under(current, blocked)):
                self._places[current] = parent_place
        assert parent_place is not None
        return parent_place

    def _derive(self, d: str, parent: Place | None) -> Place:
        name = d.rpartition("/")[2]
        if parent is not None and parent.pyramid is not None:
            if parent.scale is None:  # the pyramid root, or a directory on the way to a scale
                rel = join(parent.rel, name)
                if rel in parent.keys:
                    return Place(parent.pyramid, parent.keys, rel, d, ())
                if any(k.startswith(rel + "/") for k in parent.keys):
                    return Place(parent.pyramid, parent.keys, rel)
            elif len(parent.ranges) < 2:
                r = parse_range(name)
                if r is not None:
                    return Place(parent.pyramid, parent.keys, join(parent.rel, name), parent.scale,
                                 parent.ranges + (r,))
        keys = self._keys_of(d)
        return ORDINARY if keys is None else Place(d, keys)

    def _keys_of(self, d: str) -> frozenset[str] | None:
        """The scale keys of directory ``d``'s info; None when ``d`` is no pyramid."""
        info = join(d, INFO)
        hit = self.union.lookup(info)
        if hit is None or not hit.stat.is_file or hit.stat.size > INFO_LIMIT:
            return None
        try:
            with self.union.open(info, "rb") as f:
                data = f.read(INFO_LIMIT + 1)
        except OSError:
            return None
        return scale_keys(data)

    # ------------------------------------------------------------ changes

    def info_changed(self, d: str) -> None:
        """``d/info`` was written, removed or renamed through the view."""
        with self._lock:
            self._generation += 1
            self._forget(d)
            self._pending[d] = time.monotonic() + PENDING_SECONDS

    def moved(self, src: str, dst: str) -> None:
        """A directory was renamed (it may hold pyramids, or be one)."""
        with self._lock:
            self._generation += 1
            self._forget(src)
            self._forget(dst)

    def touched(self, scale: str) -> None:
        """Chunks of ``scale`` were written or removed through the view."""
        self._flat.pop(scale, None)

    def _forget(self, top: str) -> None:
        for table in (self._places, self._flat):
            for key in [k for k in table if under(k, top)]:
                del table[key]

    def _unsettled(self, d: str) -> str | None:
        """The directory above ``d`` whose info, written through the view, does not parse yet."""
        now = time.monotonic()
        for top, until in list(self._pending.items()):
            if now < until:
                if not under(d, top):
                    continue
                if self._info_state(top) == "invalid":
                    return top
            with self._lock:
                if self._pending.pop(top, None) is not None:
                    self._generation += 1
                    self._forget(top)
        return None

    def _info_state(self, d: str) -> str:
        if self.union.lookup(join(d, INFO)) is None:
            return "absent"
        return "valid" if self._keys_of(d) is not None else "invalid"

    # ------------------------------------------------------------ flat chunks of a scale

    def flat_index(self, scale: str) -> FlatIndex:
        """The flat chunks stored in ``scale`` (one listing, reused for `INDEX_SECONDS`)."""
        now = time.monotonic()
        index = self._flat.get(scale)
        if index is not None and now - index.made < INDEX_SECONDS:
            return index
        index = FlatIndex(now)
        try:
            listing = self.union.listdir_types(scale)
        except (FileNotFoundError, NotADirectoryError):
            listing = {}
        for name, kind in listing.items():
            base, gz = split_gz(name)
            coords = parse_flat(base)
            if coords is not None and is_fileish(kind):
                x, y, z = coords[0:2], coords[2:4], coords[4:6]
                index.tree.setdefault(x, {}).setdefault(y, {}).setdefault(z, set()).add(gz)
        self._flat[scale] = index
        return index
