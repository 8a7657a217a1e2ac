from pathlib import Path


def test_mount_reads_static_and_writes_overlay(roots, mnt: Path) -> None:
    assert (mnt / "file.txt").read_bytes() == b"static file\n"
    (mnt / "new.txt").write_bytes(b"hello")
    assert (roots.overlay / "new.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in mnt.iterdir()) == ["dir", "empty", "file.txt", "link", "new.txt"]
