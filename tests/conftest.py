"""Shared fixtures: a static tree, an empty overlay, a union over them, and a real mount."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from copickfs.union import UnionFileSystem
from mounting import mounted, write_config
from s3server import s3  # noqa: F401  (the session's S3 server fixture)
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


# ---------------------------------------------------------------------------- hardening tests

BIG_STATIC_SIZE = 400 * (1 << 20)


@pytest.fixture(scope="session")
def big_static(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A static root holding ``pub/big.bin``: 400 MiB of non-repeating data, root-owned, mode
    0600, written once per session (a copy-up of it takes long enough to be watched).
    Returns (root, sha256 of big.bin)."""
    import hashlib

    root = tmp_path_factory.mktemp("bigstatic")
    (root / "pub").mkdir()
    digest = hashlib.sha256()
    block = os.urandom(4 << 20)
    with open(root / "pub" / "big.bin", "wb") as f:
        for i in range(BIG_STATIC_SIZE // len(block)):
            chunk = i.to_bytes(8, "little") + block[8:]
            digest.update(chunk)
            f.write(chunk)
    os.chmod(root / "pub" / "big.bin", 0o600)
    return root, digest.hexdigest()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs with only 64 inodes (for running out of them), unmounted afterwards."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64,mode=0755", "tmpfs", str(where)],
                   check=True, capture_output=True, timeout=60)
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=60)
