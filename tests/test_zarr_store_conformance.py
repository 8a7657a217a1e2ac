"""zarr's store conformance tests (`zarr.testing.store.StoreTests`) for the stores copickfs
hands out: `copickfs.copick.stores.open_store` gives a zarr `FsspecStore` over the union
(through fsspec's async wrapper), and nothing else.

Each suite runs on three unions:

- ``NoStatic``: an overlay alone;
- ``UnrelatedStatic``: static holds the store's (empty) directory and neighbours whose
  names share its prefix, so every write copies the directory up and every listing
  merges static's names, none of which may leak into the store's;
- ``KeysInStatic``: as ``UnrelatedStatic``, and the suite's `set` plants values in the
  static layer (bypassing the union, as `set` bypasses the store), so reads come from
  static, overwrites copy up and deletes write whiteouts.

The suite's `get` reads through the union's own file API (not the store). After every
test the static tree, as last planted, must be unchanged byte for byte.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from zarr.core.buffer import Buffer, cpu
from zarr.storage import FsspecStore
from zarr.testing.store import StoreTests

from copickfs.copick.stores import open_store
from copickfs.union import UnionFileSystem
from treehash import tree_digest

STORE_PATH = "project/arr.zarr"


def asyncio_tests(cls: type) -> type:
    """Mark the class's coroutine tests (its own and inherited) for pytest-asyncio, whose
    strict mode runs only marked ones; each gets a marked wrapper, so zarr's shared test
    functions stay as they are."""
    for name in dir(cls):
        func = getattr(cls, name)
        if name.startswith("test_") and inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def marked(*args: Any, __test: Any = func, **kwargs: Any) -> Any:
                return await __test(*args, **kwargs)
            setattr(cls, name, pytest.mark.asyncio(marked))
    return cls


class UnionStoreTests(StoreTests[FsspecStore, cpu.Buffer]):
    store_cls = FsspecStore
    buffer_cls = cpu.Buffer

    def plant_static(self, static: Path) -> None:
        """What the static layer holds before the test (nothing by default)."""

    @pytest.fixture
    def roots(self, tmp_path: Path) -> tuple[Path, Path]:
        static, overlay = tmp_path / "static", tmp_path / "overlay"
        static.mkdir()
        overlay.mkdir()
        self.plant_static(static)
        self.static_root = static  # pytest binds fixtures to the test's instance: `set` reads it
        return static, overlay

    @pytest.fixture
    def union(self, roots: tuple[Path, Path]) -> Iterator[UnionFileSystem]:
        """The union; after the test, the static tree as last planted must be unchanged."""
        static, overlay = roots
        self.static_digest = tree_digest(str(static))
        yield UnionFileSystem(str(overlay), str(static))
        assert tree_digest(str(static)) == self.static_digest, "the static tree changed"

    @pytest.fixture
    def store_kwargs(self, union: UnionFileSystem) -> dict[str, Any]:
        """The arguments of the store copickfs hands out for ``STORE_PATH``."""
        handed_out = open_store(union, STORE_PATH, read_only=False)
        assert type(handed_out) is FsspecStore
        return {"fs": handed_out.fs, "path": handed_out.path, "read_only": False}

    @pytest_asyncio.fixture
    async def store(self, open_kwargs: dict[str, Any]) -> FsspecStore:
        return await self.store_cls.open(**open_kwargs)

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> FsspecStore:
        return self.store_cls(**store_kwargs)

    @staticmethod
    def _union(store: FsspecStore) -> UnionFileSystem:
        return store.fs.sync_fs

    async def get(self, store: FsspecStore, key: str) -> Buffer:
        return self.buffer_cls.from_bytes(self._union(store).cat_file(f"{store.path}/{key}"))

    async def set(self, store: FsspecStore, key: str, value: Buffer) -> None:
        self._union(store).pipe_file(f"{store.path}/{key}", value.to_bytes())

    def test_store_repr(self, store: FsspecStore) -> None:
        assert str(store) == f"<FsspecStore(UnionAsyncFileSystem, {STORE_PATH})>"

    def test_store_supports_writes(self, store: FsspecStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: FsspecStore) -> None:
        assert store.supports_listing

    def test_handed_out_store_equals_the_suites(self, union: UnionFileSystem,
                                                 store_kwargs: dict[str, Any]) -> None:
        assert open_store(union, STORE_PATH, read_only=False) == self.store_cls(**store_kwargs)
        reader = open_store(union, STORE_PATH, read_only=True)
        assert reader.read_only and reader != self.store_cls(**store_kwargs)


@asyncio_tests
class TestNoStatic(UnionStoreTests):
    @pytest.fixture
    def union(self, roots: tuple[Path, Path]) -> UnionFileSystem:
        return UnionFileSystem(str(roots[1]))


@asyncio_tests
class TestUnrelatedStatic(UnionStoreTests):
    def plant_static(self, static: Path) -> None:
        (static / STORE_PATH).mkdir(parents=True)
        (static / "project" / "arr.zarr2").mkdir()
        (static / "project" / "arr.zarr2" / "zarr.json").write_bytes(b"{}")
        (static / "project" / "arr.zarr.json").write_bytes(b"{}")
        (static / "project" / "other.zarr" / "c").mkdir(parents=True)
        (static / "project" / "other.zarr" / "c" / "0").write_bytes(b"\x00" * 8)


@asyncio_tests
class TestKeysInStatic(UnionStoreTests):
    plant_static = TestUnrelatedStatic.plant_static

    async def set(self, store: FsspecStore, key: str, value: Buffer) -> None:
        """Plant the value in the static layer, unless the overlay holds the key or hides
        it (a whiteout, an opaque directory): then static could not show it, and the value
        is written through the union, as after a copy-up."""
        union = self._union(store)
        path = f"{store.path}/{key}"
        if union.layer_of(path) != "overlay":
            planted = self.static_root / path
            planted.parent.mkdir(parents=True, exist_ok=True)
            planted.write_bytes(value.to_bytes())
            self.static_digest = tree_digest(str(self.static_root))
            if union.layer_of(path) == "static":
                return
        union.pipe_file(path, value.to_bytes())
