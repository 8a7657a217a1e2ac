"""S3 roots through the real mount when things go wrong: a server that stops answering in
the middle of writes, a daemon killed with uploads pending, anonymous reads of a public
bucket, the block cache across mounts and under its size bound, and credentials kept out
of every log. The server is moto's, on 127.0.0.1; ``s3.pause()`` stops it (SIGSTOP)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mounting import force_unmount, mounted
from s3server import KEY, SECRET, S3Server

MiB = 1 << 20
UPLOAD_TIMEOUT = 2  # seconds (+1 per MiB) before a stalled upload fails with EIO


def _write_in_child(path: Path, data: bytes, fsync: bool = False, timeout: float = 30) -> int:
    """Write ``data`` to ``path`` (through the mount) in a child process, so a hang fails the
    test instead of wedging it; the errno the close (or fsync) failed with, 0 on success."""
    script = ("import os, sys\n"
              "path, data, do_sync = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3] == '1'\n"
              "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
              "os.write(fd, data)\n"
              "try:\n"
              "    if do_sync:\n"
              "        os.fsync(fd)\n"
              "finally:\n"
              "    try:\n"
              "        os.close(fd)\n"
              "    except OSError as e:\n"
              "        print(e.errno); sys.exit(0)\n"
              "print(0)\n")
    try:
        done = subprocess.run([sys.executable, "-c", script, str(path), data.hex(), "1" if fsync else "0"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"writing {path.name} hung for {timeout} s with the server stopped")
    if done.returncode != 0:  # the fsync raised: its errno is in the traceback's last line
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("OSError: [Errno "), done.stderr
        return int(last.split("[Errno ")[1].split("]")[0])
    return int(done.stdout.strip())


def _poll(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``check()`` holds; how long it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def _object(fs, url: str) -> bytes | None:
    fs.invalidate_cache()
    try:
        return fs.cat(url)
    except FileNotFoundError:
        return None


@pytest.fixture
def overlay_config(s3: S3Server, tmp_path: Path):
    """An S3 overlay over a local static root, with a short upload timeout."""
    bucket = s3.new_bucket()
    static, mnt = tmp_path / "static", tmp_path / "mnt"
    static.mkdir()
    (static / "file.txt").write_bytes(b"static file\n")
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": f"s3://{bucket}/overlay", "static_root": str(static),
        "overlay_fs_args": s3.options(),
        "copickfs": {"staging_dir": str(tmp_path / "staging"), "cache_dir": str(tmp_path / "cache"),
                     "upload_timeout": UPLOAD_TIMEOUT}}))
    return config, bucket, mnt, tmp_path / "staging"


_TWO_STEP_WRITER = """
import os, sys
path, data = sys.argv[1], bytes.fromhex(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data[:len(data) // 2])
print("opened", flush=True)
sys.stdin.readline()
os.write(fd, data[len(data) // 2:])
try:
    os.close(fd)
except OSError as e:
    print(e.errno); sys.exit(0)
print(0)
"""


def _fail_upload(s3: S3Server, path: Path, data: bytes) -> int:
    """Open ``path`` and write half of ``data`` with the server up, stop the server, write
    the rest and close: the close's errno (0 on success). The server stays stopped: the
    caller resumes it (in a finally)."""
    writer = subprocess.Popen([sys.executable, "-c", _TWO_STEP_WRITER, str(path), data.hex()],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "opened"  # type: ignore[union-attr]
        s3.pause()
        out, _ = writer.communicate("go\n", timeout=40)
        return int(out.split()[-1])
    except subprocess.TimeoutExpired:
        pytest.fail(f"writing {path.name} hung with the server stopped")
    finally:
        if writer.poll() is None:
            s3.resume()  # lets the daemon answer, so the writer can die
            writer.kill()
            writer.wait(timeout=60)


def test_server_stopped_in_the_middle_of_writes(s3: S3Server, overlay_config, tmp_path: Path) -> None:
    config, bucket, mnt, staging = overlay_config
    fs = s3.filesystem()
    a, b = os.urandom(3000), os.urandom(5000)
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        assert _write_in_child(mnt / "a.bin", a, fsync=True) == 0
        assert _object(fs, f"{bucket}/overlay/a.bin") == a
        writer = subprocess.Popen([sys.executable, "-c", _TWO_STEP_WRITER, str(mnt / "b.bin"), b.hex()],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "opened"  # type: ignore[union-attr]
            s3.pause()
            start = time.monotonic()
            out, _ = writer.communicate("go\n", timeout=40)
            took = time.monotonic() - start
            assert out.split()[-1] == str(errno.EIO), out
            assert took < 20, f"the failed close took {took:.1f} s"
            # a lookup the server must answer fails too, in bounded time, instead of hanging
            start = time.monotonic()
            assert _write_in_child(mnt / "elsewhere.bin", b"x", timeout=40) == errno.EIO
            took = time.monotonic() - start
            assert took < 20, f"the failed lookup took {took:.1f} s"
        except subprocess.TimeoutExpired:
            pytest.fail("the writer hung with the server stopped")
        finally:
            s3.resume()
            if writer.poll() is None:
                writer.kill()
            writer.wait(timeout=60)
        _poll(lambda: _object(fs, f"{bucket}/overlay/b.bin") == b, 30, "background upload of b.bin")
        assert (mnt / "b.bin").read_bytes() == b
        assert (mnt / "a.bin").read_bytes() == a
        _poll(lambda: not list(staging.rglob("*.json")), 10, "staged copies removed after the upload")
    assert _object(fs, f"{bucket}/overlay/a.bin") == a
    assert _object(fs, f"{bucket}/overlay/b.bin") == b


def test_daemon_killed_with_an_upload_pending(s3: S3Server, overlay_config, tmp_path: Path) -> None:
    config, bucket, mnt, staging = overlay_config
    fs = s3.filesystem()
    c = os.urandom(4000)
    with mounted(config, mnt, output=tmp_path / "daemon.out") as pid:
        try:
            assert _fail_upload(s3, mnt / "c.bin", c) == errno.EIO
            assert len(list(staging.rglob("*.json"))) == 1, "the failed upload is staged as pending"
            os.kill(pid, signal.SIGKILL)
            _poll(lambda: not os.path.exists(f"/proc/{pid}") or
                  open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z", 10, "daemon killed")
            force_unmount(mnt)  # the dead mount (the context's exit would clear it as well)
        finally:
            s3.resume()
    assert _object(fs, f"{bucket}/overlay/c.bin") is None, "nothing uploaded while the server was stopped"
    with mounted(config, mnt, output=tmp_path / "daemon2.out"):  # recovers (uploads) before serving
        _poll(lambda: _object(fs, f"{bucket}/overlay/c.bin") == c, 20, "c.bin uploaded by the next mount")
        assert (mnt / "c.bin").read_bytes() == c
        _poll(lambda: not list(staging.rglob("*.json")), 10, "staged copy removed after the upload")


def test_public_bucket_read_anonymously(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.new_bucket(public=True)
    s3.filesystem().pipe({f"{bucket}/pub/top.txt": b"top\n", f"{bucket}/pub/d/x.bin": b"x" * 5000,
                          f"{bucket}/pub/d/e/y.txt": b"why\n"})
    s3.publish(bucket)
    overlay, mnt = tmp_path / "overlay", tmp_path / "mnt"
    overlay.mkdir()
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": str(overlay), "static_root": f"s3://{bucket}/pub",
        "static_fs_args": {"anon": True, "endpoint_url": s3.endpoint},
        "copickfs": {"cache_dir": str(tmp_path / "cache")}}))
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        assert sorted(os.listdir(mnt)) == ["d", "top.txt"]
        assert sorted(os.listdir(mnt / "d")) == ["e", "x.bin"]
        assert (mnt / "top.txt").read_bytes() == b"top\n"
        assert (mnt / "d" / "x.bin").read_bytes() == b"x" * 5000
        assert (mnt / "d" / "e" / "y.txt").read_bytes() == b"why\n"
        (mnt / "d" / "new.txt").write_bytes(b"mine")
        with open(mnt / "top.txt", "ab") as f:
            f.write(b"more\n")
        assert (overlay / "d" / "new.txt").read_bytes() == b"mine"
        assert (overlay / "top.txt").read_bytes() == b"top\nmore\n"
        assert (mnt / "top.txt").read_bytes() == b"top\nmore\n"
    assert sorted(k.split("/", 1)[1] for k in s3.filesystem().find(bucket)) == \
        ["pub/d/e/y.txt", "pub/d/x.bin", "pub/top.txt"], "nothing written to the bucket"


def _static_config(s3: S3Server, tmp_path: Path, files: dict[str, bytes], cache_size: str) -> tuple[Path, Path, Path]:
    bucket = s3.new_bucket()
    s3.filesystem().pipe({f"{bucket}/static/{name}": data for name, data in files.items()})
    overlay, mnt, cache = tmp_path / "overlay", tmp_path / "mnt", tmp_path / "cache"
    overlay.mkdir()
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": str(overlay), "static_root": f"s3://{bucket}/static",
        "static_fs_args": s3.options(), "copickfs": {"cache_dir": str(cache), "cache_size": cache_size}}))
    return config, mnt, cache


def _read_in_child(path: Path, timeout: float = 20) -> bytes:
    try:
        done = subprocess.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb').read())",
                               str(path)], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {path.name} hung for {timeout} s")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_second_mount_reads_from_the_block_cache(s3: S3Server, tmp_path: Path) -> None:
    big = os.urandom(9 * MiB + 777)
    config, mnt, cache = _static_config(s3, tmp_path, {"big.bin": big}, "64M")
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        assert (mnt / "big.bin").read_bytes() == big
    data = list(cache.rglob("*.data"))
    assert len(data) == 1 and data[0].stat().st_blocks * 512 >= len(big)
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        assert os.stat(mnt / "big.bin").st_size == len(big)  # the listing comes from the server
        s3.pause()  # from now on only the cache can serve the bytes (a new mount: no page cache)
        try:
            assert _read_in_child(mnt / "big.bin") == big
        finally:
            s3.resume()
    assert list(cache.rglob("*.data")) == data


def _cached_bytes(cache: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in cache.rglob("*.data"))


def test_cache_stays_within_its_size_through_the_mount(s3: S3Server, tmp_path: Path) -> None:
    files = {f"f{i}.bin": os.urandom(5 * MiB) for i in range(3)}
    config, mnt, cache = _static_config(s3, tmp_path, files, "8M")
    bound = 8 * MiB + 5 * MiB  # the bound, plus the one file being read
    seen = []
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        for name, data in files.items():
            assert (mnt / name).read_bytes() == data
            seen.append(_cached_bytes(cache))
            assert seen[-1] <= bound, seen
        for name, data in files.items():  # evicted ones come back from the server, still right
            assert (mnt / name).read_bytes() == data
            assert _cached_bytes(cache) <= bound
    seen.append(_cached_bytes(cache))
    assert seen[-1] <= bound, seen
    print("cached bytes after each read and after unmount:", seen)


def test_credentials_never_logged(s3: S3Server, tmp_path: Path) -> None:
    secrets = [SECRET.encode(), KEY.encode()]
    # S3 static, with a cache
    big = os.urandom(5 * MiB)
    (tmp_path / "st").mkdir()
    config, mnt, cache = _static_config(s3, tmp_path / "st", {"a.txt": b"static a\n", "big.bin": big}, "64M")
    log1, out1 = tmp_path / "static.log", tmp_path / "static.out"
    with mounted(config, mnt, "debug", f"log={log1}", output=out1):
        assert (mnt / "a.txt").read_bytes() == b"static a\n"
        assert (mnt / "big.bin").read_bytes() == big
        (mnt / "new.txt").write_bytes(b"local")
        with open("/proc/self/mountinfo", "rb") as f:
            info = f.read()
    # S3 overlay, with a failing upload
    (tmp_path / "ov").mkdir()
    bucket = s3.new_bucket()
    static, mnt2, staging = tmp_path / "ov" / "static", tmp_path / "ov" / "mnt", tmp_path / "ov" / "staging"
    static.mkdir()
    mnt2.mkdir()
    (static / "s.txt").write_bytes(b"s\n")
    config2 = tmp_path / "ov" / "config.json"
    config2.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": f"s3://{bucket}/overlay", "static_root": str(static),
        "overlay_fs_args": s3.options(),
        "copickfs": {"staging_dir": str(staging), "upload_timeout": UPLOAD_TIMEOUT}}))
    log2, out2 = tmp_path / "overlay.log", tmp_path / "overlay.out"
    with mounted(config2, mnt2, "debug", f"log={log2}", output=out2):
        assert _write_in_child(mnt2 / "ok.txt", b"fine") == 0
        with open(mnt2 / "s.txt", "ab") as f:
            f.write(b"more\n")
        assert (mnt2 / "s.txt").read_bytes() == b"s\nmore\n"
        try:
            assert _fail_upload(s3, mnt2 / "fail.txt", b"failing") == errno.EIO
            leftover = [p.read_bytes() for p in staging.rglob("*") if p.is_file()]
        finally:
            s3.resume()
        with open("/proc/self/mountinfo", "rb") as f:
            info += f.read()
    texts = {"log (static)": log1.read_bytes(), "output (static)": out1.read_bytes(),
             "log (overlay)": log2.read_bytes(), "output (overlay)": out2.read_bytes(),
             "mountinfo": info, "staging while pending": b"\n".join(leftover)}
    assert b"upload of" in texts["log (overlay)"], "the failed upload is logged"
    for root in (cache, staging):
        for p in root.rglob("*"):
            if p.is_file():
                texts[str(p)] = p.read_bytes()
            texts["names under " + str(root)] = texts.get("names under " + str(root), b"") + str(p).encode()
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret.decode()} in the {where}"
