"""fsspec's own conformance tests (`fsspec.tests.abstract`) run against `UnionFileSystem`.

Each suite runs on three unions, so the union's layering is exercised under fsspec's
expectations, not only its file tree:

- ``Empty``: both layers empty; the tests work at the union root (names such as
  ``source`` and ``target`` sit at the top, where a path has no parent to cut).
- ``UnrelatedStatic``: static holds files the tests never name, beside and inside the
  directory the tests work in (``data/``), so every write copies ``data/`` up first and
  every listing merges static's names (which the tests must not see leak into targets).
- ``SourcesInStatic``: the files the tests copy and read are planted in the static layer
  (not written through the union): reads come from static, writes copy up, and removing a
  scenario writes whiteouts.

After every test the static tree must be unchanged byte for byte.

fsspec's ``tests/abstract/mv.py`` holds no abstract class (two tests of the local
filesystem); its checks are restated for the union at the end of this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fsspec.tests.abstract as abstract
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from copickfs.union import UnionFileSystem
from treehash import tree_digest


class UnionFixtures(abstract.AbstractFixtures):
    """The ``fs`` a backend provides, per fsspec's ``AbstractFixtures``: a fresh union per
    test, over a static tree that `plant_static` fills."""

    #: the directory inside the union the tests work in ("" is the union root)
    work_dir = ""

    def plant_static(self, static: Path) -> None:
        """Files the static layer holds before the test (none by default)."""

    @pytest.fixture
    def roots(self, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
        static, overlay = tmp_path / "static", tmp_path / "overlay"
        static.mkdir()
        overlay.mkdir()
        self.plant_static(static)
        yield static, overlay

    @pytest.fixture
    def static_digest(self, roots: tuple[Path, Path]) -> dict[str, str]:
        """The static tree's digest as planted (scenarios planted later update it)."""
        return {"expected": tree_digest(str(roots[0]))}

    @pytest.fixture
    def fs(self, roots: tuple[Path, Path], static_digest: dict[str, str]) -> Iterator[UnionFileSystem]:
        static, overlay = roots
        yield UnionFileSystem(str(overlay), str(static))
        assert tree_digest(str(static)) == static_digest["expected"], "the static tree changed"

    @pytest.fixture
    def fs_path(self) -> str:
        return self.work_dir


class Empty(UnionFixtures):
    pass


class UnrelatedStatic(UnionFixtures):
    work_dir = "data"

    def plant_static(self, static: Path) -> None:
        (static / "data" / "deeper").mkdir(parents=True)
        (static / "data" / "unrelated.txt").write_bytes(b"not the tests'")
        (static / "data" / "deeper" / "other.bin").write_bytes(os.urandom(1000))
        (static / "data-sibling").mkdir()
        (static / "data-sibling" / "file1").write_bytes(b"a prefix of the work dir's name")
        (static / "top.txt").write_bytes(b"top")


class SourcesInStatic(UnionFixtures):
    """The scenarios' sources are made in the static directory by a plain local
    filesystem, then read, copied and finally removed through the union."""

    @pytest.fixture
    def static_fs(self, roots: tuple[Path, Path]) -> DirFileSystem:
        """A filesystem over the static root that takes union paths."""
        return DirFileSystem(path=str(roots[0]), fs=LocalFileSystem(auto_mkdir=True))

    @pytest.fixture
    def fs_bulk_operations_scenario_0(self, fs, fs_join, fs_path, static_fs, static_digest) -> Iterator[str]:
        source = self._bulk_operations_scenario_0(static_fs, fs_join, fs_path)
        yield from self._planted(fs, static_fs, static_digest, source)

    @pytest.fixture
    def fs_glob_edge_cases_files(self, fs, fs_join, fs_path, static_fs, static_digest) -> Iterator[str]:
        source = self._glob_edge_cases_files(static_fs, fs_join, fs_path)
        yield from self._planted(fs, static_fs, static_digest, source)

    @pytest.fixture
    def fs_dir_and_file_with_same_name_prefix(self, fs, fs_join, fs_path, static_fs,
                                              static_digest) -> Iterator[str]:
        source = self._dir_and_file_with_same_name_prefix(static_fs, fs_join, fs_path)
        yield from self._planted(fs, static_fs, static_digest, source)

    @pytest.fixture
    def fs_10_files_with_hashed_names(self, fs, fs_join, fs_path, static_fs, static_digest) -> Iterator[str]:
        source = self._10_files_with_hashed_names(static_fs, fs_join, fs_path)
        yield from self._planted(fs, static_fs, static_digest, source)

    @staticmethod
    def _planted(fs: UnionFileSystem, static_fs: DirFileSystem, static_digest: dict[str, str],
                 source: str) -> Iterator[str]:
        static_digest["expected"] = tree_digest(static_fs.path)
        assert fs.layer_of(source) == "static"
        yield source
        fs.rm(source, recursive=True)  # whiteouts: static keeps its files
        assert not fs.exists(source)


# ------------------------------------------------------------------ the suites, per union

class TestEmptyCopy(abstract.AbstractCopyTests, Empty):
    pass


class TestEmptyGet(abstract.AbstractGetTests, Empty):
    pass


class TestEmptyPut(abstract.AbstractPutTests, Empty):
    pass


class TestEmptyOpen(abstract.AbstractOpenTests, Empty):
    pass


class TestEmptyPipe(abstract.AbstractPipeTests, Empty):
    pass


class TestUnrelatedStaticCopy(abstract.AbstractCopyTests, UnrelatedStatic):
    pass


class TestUnrelatedStaticGet(abstract.AbstractGetTests, UnrelatedStatic):
    pass


class TestUnrelatedStaticPut(abstract.AbstractPutTests, UnrelatedStatic):
    pass


class TestUnrelatedStaticOpen(abstract.AbstractOpenTests, UnrelatedStatic):
    pass


class TestUnrelatedStaticPipe(abstract.AbstractPipeTests, UnrelatedStatic):
    pass


class TestSourcesInStaticCopy(abstract.AbstractCopyTests, SourcesInStatic):
    pass


class TestSourcesInStaticGet(abstract.AbstractGetTests, SourcesInStatic):
    pass


class TestSourcesInStaticPut(abstract.AbstractPutTests, SourcesInStatic):
    pass


class TestSourcesInStaticOpen(abstract.AbstractOpenTests, SourcesInStatic):
    pass


class TestSourcesInStaticPipe(abstract.AbstractPipeTests, SourcesInStatic):
    pass


# ------------------------------------------------------------------ fsspec's mv checks

@pytest.fixture(params=["overlay", "static"])
def mv_union(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UnionFileSystem]:
    """A union whose ``source_file.txt`` lies in the overlay or in static."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    (static if request.param == "static" else overlay).joinpath("source_file.txt").write_text("content")
    before = tree_digest(str(static))
    yield UnionFileSystem(str(overlay), str(static))
    assert tree_digest(str(static)) == before, "the static tree changed"


def test_move_raises_error_with_missing_target_directory(mv_union: UnionFileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        mv_union.mv("source_file.txt", "non_existent_directory/destination_file.txt")
    assert mv_union.cat_file("source_file.txt") == b"content"
    assert not mv_union.exists("non_existent_directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root here: a 0555 directory refuses root nothing")
@pytest.mark.parametrize("recursive", [True, False])
def test_move_raises_error_with_read_only_target_directory(mv_union: UnionFileSystem, tmp_path: Path,
                                                           recursive: bool) -> None:
    protected = tmp_path / "overlay" / "protected_directory"
    protected.mkdir()
    protected.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            mv_union.mv("source_file.txt", "protected_directory/destination_file.txt", recursive=recursive)
        assert not (protected / "destination_file.txt").exists()
        assert mv_union.cat_file("source_file.txt") == b"content"
    finally:
        protected.chmod(0o755)
