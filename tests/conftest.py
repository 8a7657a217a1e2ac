"""Shared fixtures: a static tree, an empty overlay, a union over them, and a real mount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from copickfs.union import UnionFileSystem
from mounting import mounted, write_config
from treehash import tree_digest


@dataclass
class Roots:
    static: Path
    overlay: Path
    mountpoint: Path
    config: Path


def build_static(static: Path) -> None:
    """A small tree with files, nested directories, an empty directory and a symlink."""
    (static / "dir" / "sub").mkdir(parents=True)
    (static / "empty").mkdir()
    (static / "file.txt").write_bytes(b"static file\n")
    (static / "dir" / "a.txt").write_bytes(b"a" * 100)
    (static / "dir" / "sub" / "deep.bin").write_bytes(os.urandom(300_000))
    (static / "dir" / "exec.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(static / "dir" / "exec.sh", 0o755)
    os.symlink("file.txt", static / "link")
    os.utime(static / "file.txt", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[Roots]:
    """Fresh roots; after the test the static tree must be unchanged byte for byte."""
    static, overlay, mountpoint = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static, overlay, mountpoint):
        d.mkdir()
    build_static(static)
    before = tree_digest(str(static))
    yield Roots(static, overlay, mountpoint, write_config(tmp_path / "config.json", overlay, static))
    assert tree_digest(str(static)) == before, "the static tree changed"


@pytest.fixture
def union(roots: Roots) -> UnionFileSystem:
    return UnionFileSystem(str(roots.overlay), str(roots.static))


@pytest.fixture
def mnt(roots: Roots) -> Iterator[Path]:
    """The union mounted at roots.mountpoint; unmounted even when the test fails."""
    with mounted(roots.config, roots.mountpoint):
        yield roots.mountpoint
