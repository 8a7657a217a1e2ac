"""The staging area of an object-store overlay, against a real S3 server (moto, fixture `s3`).

Filesystems here carry short client timeouts (``config_kwargs``), but what bounds a
flush against a stopped server is the staging area's own ``timeout``: a PUT waiting for
"100 Continue" from a SIGSTOPped server outlives botocore's read timeout.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from copickfs.storage.staging import StagedLayer, StagingArea, _describe, read_sidecars
from copickfs.union.layers import FsspecLayer
from s3server import KEY, SECRET, S3Server

RDWR_NEW = os.O_RDWR | os.O_CREAT


def client_options() -> dict[str, Any]:
    """Short client timeouts, no botocore retries (a fresh dict: botocore edits it)."""
    return {"config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}}


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture
def fs(s3: S3Server) -> Any:
    fs = s3.filesystem(**client_options())
    fs.retries = 1  # s3fs's own retry loop
    return fs


@pytest.fixture
def area(tmp_path: Path) -> Iterator[StagingArea]:
    area = StagingArea(str(tmp_path / "staging"), retry_interval=0.3, timeout=1.5, part_size=5 << 20)
    try:
        yield area
    finally:
        area.close_all()


def staged_names(area: StagingArea) -> list[str]:
    return sorted(n for n in os.listdir(area.directory) if n != "lock")


def wait_for(check: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_random_writes_appends_truncate_copy_up(fs: Any, bucket: str, area: StagingArea, tmp_path: Path) -> None:
    url = f"{bucket}/dir/data.bin"
    original = os.urandom(200_000)
    fs.pipe(url, original)
    ref = tmp_path / "ref.bin"
    ref.write_bytes(original)
    with open(ref, "r+b") as reference:
        f = area.open(fs, url, os.O_RDWR, len(original))  # copy-up of the object
        assert os.pread(f.fd, 10, 1000) == original[1000:1010]
        assert not f.dirty
        appender = area.open(fs, url, os.O_WRONLY | os.O_APPEND, len(original))
        for offset, data in [(5, b"hello"), (150_000, os.urandom(70_000)), (300_000, b"past the end")]:
            f.pwrite(data, offset)
            reference.seek(offset)
            reference.write(data)
        os.write(appender.fd, b"appended")  # straight to the descriptor, as libfuse writes
        reference.seek(0, os.SEEK_END)
        reference.write(b"appended")
        f.truncate(250_000)
        reference.truncate(250_000)
        os.write(appender.fd, b"tail")
        reference.seek(0, os.SEEK_END)
        reference.write(b"tail")
        assert f.dirty
        appender.close()
        f.close()
    assert fs.cat(url) == ref.read_bytes()
    assert staged_names(area) == []  # uploaded, nothing left staged
    assert area.lookup(url) is None


def test_two_opens_share_bytes(fs: Any, bucket: str, area: StagingArea) -> None:
    url = f"{bucket}/shared.txt"
    a = area.open(fs, url, RDWR_NEW, None)
    b = area.open(fs, url, os.O_RDWR, None)
    assert a.fd != b.fd
    a.pwrite(b"written by a", 0)
    assert os.pread(b.fd, 100, 0) == b"written by a"
    b.pwrite(b"B", 0)
    assert os.pread(a.fd, 100, 0) == b"Britten by a"
    assert area.staged_size(url) == 12
    reader = area.lookup(url)
    assert reader is not None and os.pread(reader.fd, 100, 0) == b"Britten by a"
    reader.close()
    assert not fs.exists(url)  # nothing uploaded before a flush
    a.flush()
    assert fs.cat(url) == b"Britten by a"
    a.close()
    os.write(b.fd, b"!")  # b's own offset: 0
    b.close()
    assert fs.cat(url) == b"!ritten by a"
    assert staged_names(area) == []


def test_large_file_uploads_in_parts(fs: Any, bucket: str, area: StagingArea) -> None:
    url = f"{bucket}/big.bin"
    data = os.urandom(12 << 20)
    f = area.open(fs, url, RDWR_NEW, None)
    os.write(f.fd, data)
    f.close()
    assert "-" in fs.info(url)["ETag"]  # a multipart upload's ETag: "<md5>-<parts>"
    assert fs.cat(url) == data


def test_failed_upload_is_eio_kept_and_retried(s3: S3Server, fs: Any, bucket: str, area: StagingArea) -> None:
    url = f"{bucket}/pending.txt"
    f = area.open(fs, url, RDWR_NEW, None)
    f.pwrite(b"acknowledged?", 0)
    s3.pause()
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as failed:
            f.flush()
        assert failed.value.errno == errno.EIO
        assert time.monotonic() - started < 10
        with pytest.raises(OSError) as failed_close:
            f.close()
        assert failed_close.value.errno == errno.EIO
        for message in (str(failed.value), str(failed_close.value)):
            assert KEY not in message and SECRET not in message
        [sidecar] = [n for n in staged_names(area) if n.endswith(".json")]
        doc = json.loads((Path(area.directory) / sidecar).read_text())
        assert doc["state"] == "pending" and doc["url"] == url
        assert (Path(area.directory) / sidecar.replace(".json", ".data")).read_bytes() == b"acknowledged?"
        [owed] = area.pending()
        assert owed["url"] == url and owed["size"] == 13 and owed["attempts"] >= 1
        assert SECRET not in json.dumps(owed) and SECRET not in json.dumps(doc)
        assert area.staged_size(url) == 13  # reads are served from the staged copy meanwhile
    finally:
        s3.resume()
    wait_for(lambda: fs.exists(url) and not staged_names(area))
    assert fs.cat(url) == b"acknowledged?"
    assert area.pending() == []


CHILD = textwrap.dedent("""
    import os, sys
    import s3fs
    from copickfs.storage.staging import StagingArea

    directory, endpoint, bucket, key, secret = sys.argv[1:]
    fs = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=endpoint, key=key, secret=secret,
                           client_kwargs={"region_name": "us-east-1"},
                           config_kwargs={"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}})
    fs.retries = 1
    area = StagingArea(directory, timeout=1.5)
    a = area.open(fs, f"{bucket}/a.txt", os.O_RDWR | os.O_CREAT, None)
    os.write(a.fd, b"flushed;")
    a.flush()
    os.write(a.fd, b"not flushed")
    print("a", flush=True)
    sys.stdin.readline()  # the parent stops the server
    b = area.open(fs, f"{bucket}/b.txt", os.O_RDWR | os.O_CREAT, None)
    os.write(b.fd, b"failed upload")
    try:
        b.flush()
    except OSError as e:
        print("failed", e.errno, flush=True)
    sys.stdin.readline()  # killed meanwhile
""")


def test_recovery_after_kill_9(s3: S3Server, fs: Any, bucket: str, tmp_path: Path) -> None:
    directory = str(tmp_path / "staging")
    child = subprocess.Popen([sys.executable, "-c", CHILD, directory, s3.endpoint, bucket, KEY, SECRET],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "a"
        assert fs.cat(f"{bucket}/a.txt") == b"flushed;"
        s3.pause()
        try:
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().split() == ["failed", str(errno.EIO)]
        finally:
            s3.resume()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    for name in os.listdir(directory):  # no credentials on disk, in names or contents
        assert KEY not in name and SECRET not in name
        text = (Path(directory) / name).read_bytes()
        assert KEY.encode() not in text and SECRET.encode() not in text
    states = {d["url"]: d["state"] for d in read_sidecars(directory)}
    assert states == {f"{bucket}/a.txt": "open", f"{bucket}/b.txt": "pending"}
    with StagingArea(directory) as area:
        assert area.recover(fs) == 2
        assert area.pending() == []
        assert sorted(os.listdir(directory)) == ["lock"]
    assert fs.cat(f"{bucket}/a.txt") == b"flushed;not flushed"  # a superset of the acknowledged
    assert fs.cat(f"{bucket}/b.txt") == b"failed upload"


def test_recovery_skips_copies_unchanged_since_upload(fs: Any, bucket: str, tmp_path: Path) -> None:
    directory = str(tmp_path / "staging")
    area = StagingArea(directory)
    f = area.open(fs, f"{bucket}/c.txt", RDWR_NEW, None)
    f.pwrite(b"one", 0)
    f.flush()
    _crash(area)
    fs.pipe(f"{bucket}/c.txt", b"changed by someone else")
    with StagingArea(directory) as again:
        assert again.recover(fs) == 0  # the copy had nothing the object lacked
    assert fs.cat(f"{bucket}/c.txt") == b"changed by someone else"
    assert sorted(os.listdir(directory)) == ["lock"]


def _crash(area: StagingArea) -> None:
    """Leave ``area`` as a killed process would: files as they are, the lock released."""
    with area._lock:
        area._stopping = area._closed = True
        area._wake.notify_all()
    os.close(area._lock_fd)


def test_one_process_per_area(tmp_path: Path) -> None:
    with StagingArea(str(tmp_path / "s")):
        with pytest.raises(OSError) as busy:
            StagingArea(str(tmp_path / "s"))
        assert busy.value.errno == errno.EBUSY
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700


def test_staged_layer(fs: Any, bucket: str, area: StagingArea) -> None:
    layer = StagedLayer(FsspecLayer(fs, f"{bucket}/overlay"), area)
    assert layer.serves_descriptors and not layer.is_local
    with layer.open("run/a.txt", "wb") as f:
        f.write(b"0123456789")
    assert fs.cat(f"{bucket}/overlay/run/a.txt") == b"0123456789"
    with layer.open("run/a.txt", "ab") as f:
        f.write(b"ab")
    layer.truncate("run/a.txt", 4)
    assert fs.cat(f"{bucket}/overlay/run/a.txt") == b"0123"
    with layer.open("run/a.txt", "rb") as f:
        assert f.read() == b"0123"

    staged = layer.open_staged("run/a.txt", os.O_RDWR)  # as the mount: writes to the descriptor
    os.pwrite(staged.fd, b"staged bytes", 0)
    st = layer.stat("run/a.txt")
    assert st is not None and st.size == 12  # the staged copy, not the object's 4 bytes
    with layer.open("run/a.txt", "rb") as f:
        assert f.read() == b"staged bytes"
    staged.sync()
    assert fs.cat(f"{bucket}/overlay/run/a.txt") == b"staged bytes"
    staged.close()

    with pytest.raises(FileNotFoundError):
        layer.create("new/b.txt")  # no parent
    layer.mkdir("new")
    assert layer.create("new/b.txt") is None  # staged, not uploaded yet: listed all the same
    assert layer.listdir("new") == {"b.txt": stat.S_IFREG}
    assert layer.stat("new/b.txt") is not None and not fs.exists(f"{bucket}/overlay/new/b.txt")
    loose = layer.open_staged("loose/x", os.O_RDWR | os.O_CREAT)
    assert layer.stat("loose").is_dir and layer.listdir("")["loose"] == stat.S_IFDIR  # type: ignore[union-attr]
    loose.close(upload=False)
    layer.remove("loose/x")
    opened = layer.open_file("new/b.txt", os.O_WRONLY)
    assert opened is not None
    os.write(opened.fd, b"bee")
    opened.flush()
    opened.close()
    assert fs.cat(f"{bucket}/overlay/new/b.txt") == b"bee"

    held = layer.open_staged("new/b.txt", os.O_RDWR)
    os.pwrite(held.fd, b"B", 0)
    layer.rename("new/b.txt", "new/c.txt")  # uploaded, moved, and the open copy follows
    assert not fs.exists(f"{bucket}/overlay/new/b.txt")
    os.pwrite(held.fd, b"C", 1)
    held.close()
    assert fs.cat(f"{bucket}/overlay/new/c.txt") == b"BCe"

    with layer.open("new/d.txt", "wb") as f:
        f.write(b"old d")
    replaced = layer.open_staged("new/d.txt", os.O_RDWR)
    os.pwrite(replaced.fd, b"unsaved", 0)
    layer.rename("new/c.txt", "new/d.txt")  # replaces d: its open copy is dropped, never uploaded
    replaced.close()
    assert fs.cat(f"{bucket}/overlay/new/d.txt") == b"BCe"
    layer.rename("new/d.txt", "new/c.txt")

    doomed = layer.open_staged("new/c.txt", os.O_RDWR)
    os.pwrite(doomed.fd, b"never uploaded", 0)
    layer.remove("new/c.txt")
    assert layer.stat("new/c.txt") is None and not fs.exists(f"{bucket}/overlay/new/c.txt")
    doomed.close()  # an unlinked file's last close uploads nothing
    assert not fs.exists(f"{bucket}/overlay/new/c.txt")
    wait_for(lambda: staged_names(area) == [], 5)


def test_writes_during_an_upload_are_uploaded_later(area: StagingArea) -> None:
    """A copy is deleted only if no newer generation was staged while it was uploading."""
    fs = MemoryFileSystem(skip_instance_cache=True)
    reading, finish = threading.Event(), threading.Event()

    def slow_put(lpath: str, rpath: str, **kwargs: Any) -> None:
        data = Path(lpath).read_bytes()
        reading.set()
        finish.wait(10)
        fs.pipe_file(rpath, data)

    fs.put_file = slow_put
    url = f"/staging-test/{os.getpid()}/x"
    f = area.open(fs, url, RDWR_NEW, None)
    os.write(f.fd, b"old")
    closer = threading.Thread(target=f.close)
    closer.start()
    assert reading.wait(10)
    os.pwrite(f.fd, b"new", 0)  # during the upload, straight to the descriptor
    finish.set()
    closer.join(10)
    assert fs.cat(url) == b"old"
    assert area.staged_size(url) == 3  # kept: newer than what was uploaded
    wait_for(lambda: fs.cat(url) == b"new" and staged_names(area) == [], 10)
    fs.rm(url)


def test_messages_carry_no_secrets(fs: Any, area: StagingArea) -> None:
    error = RuntimeError(f"Credential={KEY}/20250101/us-east-1 failed for https://u:{SECRET}@host/x with {SECRET}")
    text = _describe(error, fs, 1.0)
    assert KEY not in text and SECRET not in text
    with pytest.raises(ValueError):
        area.open(fs, "s3://user:pw@bucket/key", os.O_RDWR, None)


KILLED_WRITER = textwrap.dedent("""
    import os, sys
    import s3fs
    from copickfs.storage.staging import StagingArea

    directory, endpoint, bucket, key, secret = sys.argv[1:]
    fs = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url=endpoint, key=key, secret=secret,
                           client_kwargs={"region_name": "us-east-1"})
    area = StagingArea(directory, timeout=5)
    f = area.open(fs, f"{bucket}/big.bin", os.O_RDWR | os.O_CREAT, None)
    os.write(f.fd, b"staged, never uploaded")
    print("written", flush=True)
    sys.stdin.readline()  # killed meanwhile
""")


def _uploads(fs: Any, bucket: str) -> list[str]:
    return sorted(u["Key"] for u in fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []))


def test_recovery_aborts_the_multipart_upload_a_crash_left(s3: S3Server, fs: Any, bucket: str,
                                                             tmp_path: Path) -> None:
    directory = str(tmp_path / "staging")
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, directory, s3.endpoint, bucket, KEY, SECRET],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        # what a daemon killed in the middle of a multipart upload of big.bin leaves behind,
        # beside another key's upload that is none of this area's business
        for key in ("big.bin", "big.bin.other"):
            mpu = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
            fs.call_s3("upload_part", Bucket=bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=1,
                       Body=b"x" * (5 << 20))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert _uploads(fs, bucket) == ["big.bin", "big.bin.other"]
    with StagingArea(directory) as area:
        assert area.recover(fs) == 1
    assert fs.cat(f"{bucket}/big.bin") == b"staged, never uploaded"
    assert _uploads(fs, bucket) == ["big.bin.other"], "the crashed upload's parts are gone, no other"
