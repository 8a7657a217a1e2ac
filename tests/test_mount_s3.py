"""A static root on S3 through the mount: reads through the block cache, writes to a local
overlay, and nothing written to the bucket. The server is moto's, on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest

from mounting import mounted
from s3server import SECRET, S3Server

BIG = 9 * (1 << 20) + 12345  # several cache blocks, not a multiple of one


def _bucket_digest(s3: S3Server, bucket: str) -> dict[str, str]:
    fs = s3.filesystem()
    return {key: fs.info(key)["ETag"] for key in fs.find(bucket)}


@pytest.fixture
def s3_static(s3: S3Server, tmp_path: Path):
    bucket = s3.new_bucket()
    fs = s3.filesystem()
    big = os.urandom(BIG)
    fs.pipe({f"{bucket}/static/file.txt": b"static file\n", f"{bucket}/static/dir/a.txt": b"a" * 100,
             f"{bucket}/static/dir/sub/big.bin": big})
    overlay, mnt, cache = tmp_path / "overlay", tmp_path / "mnt", tmp_path / "cache"
    for d in (overlay, mnt):
        d.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": str(overlay), "static_root": f"s3://{bucket}/static",
        "static_fs_args": s3.options(), "copickfs": {"cache_dir": str(cache), "cache_size": "64M"}}))
    before = _bucket_digest(s3, bucket)
    yield config, overlay, mnt, cache, big
    assert _bucket_digest(s3, bucket) == before, "the static bucket changed"


def _drop_page_cache() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


def test_s3_static_reads_writes_and_whiteouts(s3_static) -> None:
    config, overlay, mnt, cache, big = s3_static
    with mounted(config, mnt):
        assert sorted(os.listdir(mnt)) == ["dir", "file.txt"]
        assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "sub"]
        assert (mnt / "file.txt").read_bytes() == b"static file\n"
        assert os.stat(mnt / "dir" / "sub" / "big.bin").st_size == BIG
        with open(mnt / "dir" / "sub" / "big.bin", "rb") as f:  # random reads across blocks
            for offset in (BIG - 10, 4 << 20, (4 << 20) - 3, 0, 123457):
                f.seek(offset)
                assert f.read(1000) == big[offset:offset + 1000]
        assert hashlib.sha256((mnt / "dir/sub/big.bin").read_bytes()).digest() == hashlib.sha256(big).digest()
        with open(mnt / "file.txt", "ab") as f:  # copy-up from S3 into the local overlay
            f.write(b"more\n")
        assert (overlay / "file.txt").read_bytes() == b"static file\nmore\n"
        os.unlink(mnt / "dir" / "a.txt")
        assert (overlay / "dir" / ".wh.a.txt").is_file()
        assert sorted(os.listdir(mnt / "dir")) == ["sub"]
        (mnt / "dir" / "new.txt").write_bytes(b"new")
        assert (overlay / "dir" / "new.txt").read_bytes() == b"new"
        with pytest.raises(OSError) as e:
            os.stat(mnt / "dir" / "a.txt")
        assert e.value.errno == errno.ENOENT
    assert any(cache.rglob("*.data")), "the block cache holds the bytes read"


def test_s3_static_rereads_come_from_the_cache(s3: S3Server, s3_static) -> None:
    config, overlay, mnt, cache, big = s3_static
    with mounted(config, mnt):
        assert (mnt / "dir/sub/big.bin").read_bytes() == big
        s3.pause()  # the server stops answering: only the cache can serve the bytes now
        try:
            if not _drop_page_cache():
                pytest.skip("cannot drop the page cache (needs root): the re-read would not reach the daemon")
            assert (mnt / "dir/sub/big.bin").read_bytes() == big
        finally:
            s3.resume()


def test_s3_credentials_stay_out_of_mounts_and_cache(s3_static) -> None:
    config, overlay, mnt, cache, big = s3_static
    with mounted(config, mnt):
        (mnt / "file.txt").read_bytes()
        with open("/proc/self/mountinfo", "rb") as f:
            assert SECRET.encode() not in f.read()
    for path in cache.rglob("*"):
        if path.is_file() and not path.name.endswith(".data"):
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.fixture
def s3_overlay(s3: S3Server, tmp_path: Path):
    bucket = s3.new_bucket()
    static, mnt = tmp_path / "static", tmp_path / "mnt"
    (static / "dir").mkdir(parents=True)
    (static / "file.txt").write_bytes(b"static file\n")
    (static / "dir" / "a.txt").write_bytes(b"a" * 100)
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": f"s3://{bucket}/overlay", "static_root": str(static),
        "overlay_fs_args": s3.options(),
        "copickfs": {"staging_dir": str(tmp_path / "staging"), "cache_dir": str(tmp_path / "cache")}}))
    return config, bucket, mnt, tmp_path / "staging"


def test_s3_overlay_writes_are_uploaded_on_close(s3: S3Server, s3_overlay) -> None:
    config, bucket, mnt, staging = s3_overlay
    fs = s3.filesystem()
    with mounted(config, mnt):
        (mnt / "new.txt").write_bytes(b"hello")
        assert fs.cat(f"{bucket}/overlay/new.txt") == b"hello"  # uploaded when closed
        with open(mnt / "file.txt", "ab") as f:  # copy-up of a local static file into S3
            f.write(b"more\n")
            f.flush()
            os.fsync(f.fileno())
            assert fs.cat(f"{bucket}/overlay/file.txt") == b"static file\nmore\n"
        with open(mnt / "new.txt", "r+b") as f:  # a random write in the middle
            f.seek(1)
            f.write(b"EL")
        assert (mnt / "new.txt").read_bytes() == b"hELlo"
        os.unlink(mnt / "dir" / "a.txt")
        assert fs.exists(f"{bucket}/overlay/dir/.wh.a.txt")
        os.rename(mnt / "new.txt", mnt / "renamed.txt")
        assert sorted(os.listdir(mnt)) == ["dir", "file.txt", "renamed.txt"]
    assert fs.cat(f"{bucket}/overlay/renamed.txt") == b"hELlo"
    assert not fs.exists(f"{bucket}/overlay/new.txt")
    assert not [p for p in staging.rglob("*.json")], "nothing left pending"


def test_both_roots_on_s3(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    fs = s3.filesystem()
    fs.pipe({f"{bucket}/static/file.txt": b"static file\n", f"{bucket}/static/dir/a.txt": b"a" * 100})
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": f"s3://{bucket}/overlay",
        "static_root": f"s3://{bucket}/static", "overlay_fs_args": s3.options(), "static_fs_args": s3.options(),
        "copickfs": {"staging_dir": str(tmp_path / "staging"), "cache_dir": str(tmp_path / "cache")}}))
    before = {k: fs.info(k)["ETag"] for k in fs.find(f"{bucket}/static")}
    with mounted(config, mnt):
        with open(mnt / "file.txt", "ab") as f:  # copy-up from S3 static to the S3 overlay
            f.write(b"more\n")
        assert (mnt / "file.txt").read_bytes() == b"static file\nmore\n"
        os.mkdir(mnt / "empty")
        os.unlink(mnt / "dir" / "a.txt")
        assert sorted(os.listdir(mnt)) == ["dir", "empty", "file.txt"] and os.listdir(mnt / "dir") == []
    assert fs.cat(f"{bucket}/overlay/file.txt") == b"static file\nmore\n"
    assert fs.exists(f"{bucket}/overlay/dir/.wh.a.txt")
    assert {k: fs.info(k)["ETag"] for k in fs.find(f"{bucket}/static")} == before
    with mounted(config, mnt):  # the empty directory persists (a marker object)
        assert sorted(os.listdir(mnt)) == ["dir", "empty", "file.txt"]
