"""`copickfs status MOUNTPOINT`: the running daemon's own report, read through its control
file (``.wh..wh.status``): the layers, counters, open files, and an S3 overlay's pending
uploads, with no secret in it and nothing in it for other users."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from mounting import copickfs, mounted, write_config
from s3server import KEY, SECRET, S3Server
from test_mount_s3_failures import _fail_upload, _object, _poll, overlay_config  # noqa: F401
from users import User, as_user_json, hostile_user, public_dir  # noqa: F401

STATUS = ".wh..wh.status"


def _status(mnt: Path) -> dict:
    result = copickfs("status", "--json", str(mnt))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def local_mount(tmp_path: Path):
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static / "a", overlay, mnt):
        d.mkdir(parents=True)
    (static / "a" / "f.txt").write_bytes(b"static\n")
    config = write_config(tmp_path / "config.json", overlay, static)
    with mounted(config, mnt) as pid:
        yield mnt, overlay, static, pid


def test_status_reports_layers_counters_and_open_files(local_mount) -> None:
    mnt, overlay, static, pid = local_mount
    first = _status(mnt)
    assert first["pid"] == pid and first["mountpoint"] == str(mnt)
    assert first["layers"]["overlay"] == {"url": str(overlay), "local": True}
    assert first["layers"]["static"] == {"url": str(static), "local": True}
    assert first["config"]["name"] == "test"
    with open(mnt / "a" / "f.txt", "rb") as held:
        assert held.read() == b"static\n"
        for _ in range(3):
            assert not (mnt / "a" / "missing").exists()
        during = _status(mnt)
    assert during["open_files"]["files"] == 1
    assert during["operations"]["open"] >= first["operations"].get("open", 0) + 2  # ours and status's
    assert during["errors"].get("lookup:ENOENT", 0) >= 1
    after = _status(mnt)
    assert after["open_files"]["files"] == 0
    assert after["uptime_seconds"] >= first["uptime_seconds"]


def test_status_text_form(local_mount) -> None:
    mnt, overlay, static, _ = local_mount
    result = copickfs("status", str(mnt))
    assert result.returncode == 0, result.stderr
    assert f"overlay: {overlay}" in result.stdout and f"static: {static}" in result.stdout
    assert "errors:" in result.stdout


def test_the_control_file_is_hidden_and_read_only(local_mount) -> None:
    mnt, overlay, _, _ = local_mount
    assert STATUS not in os.listdir(mnt)
    assert json.loads((mnt / STATUS).read_bytes())["mountpoint"] == str(mnt)  # cat works
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(OSError) as caught:
            os.close(os.open(mnt / STATUS, flags))
        assert caught.value.errno == errno.EACCES
    for action in (lambda: os.unlink(mnt / STATUS), lambda: os.rename(mnt / STATUS, mnt / "x"),
                   lambda: os.chmod(mnt / STATUS, 0o644), lambda: (mnt / "y").write_bytes(b"") or
                   os.rename(mnt / "y", mnt / STATUS)):
        with pytest.raises(OSError) as caught:
            action()
        assert caught.value.errno in (errno.EPERM, errno.EACCES), caught.value
    assert not (overlay / STATUS).exists() and STATUS not in os.listdir(mnt)
    assert not (mnt / "a" / STATUS).exists(), "only the root has the control file"


def test_status_of_something_else_is_a_one_line_error(tmp_path: Path) -> None:
    result = copickfs("status", str(tmp_path))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path} is not mounted"]


def test_other_users_cannot_read_the_status(public_dir: Path, hostile_user: User) -> None:  # noqa: F811
    static, overlay, mnt = public_dir / "static", public_dir / "overlay", public_dir / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
        os.chmod(d, 0o755)
    config = write_config(public_dir / "config.json", overlay, static,
                          overlay_fs_args={"secret": "do-not-show"})
    with mounted(config, mnt, "allow_other"):
        seen = as_user_json(hostile_user.uid, hostile_user.gid,
                            "import json, os, sys\n"
                            "try:\n"
                            "    open(os.path.join(sys.argv[1], '.wh..wh.status'), 'rb').read(); print(json.dumps(0))\n"
                            "except OSError as e:\n"
                            "    print(json.dumps(e.errno))\n", str(mnt))
        assert seen == errno.EACCES
        assert _status(mnt)["config"]["overlay_fs_args"] == {"secret": "***"}  # root reads it


def test_pending_uploads_are_listed_without_credentials(s3: S3Server, overlay_config,  # noqa: F811
                                                        tmp_path: Path) -> None:
    config, bucket, mnt, staging = overlay_config
    data = os.urandom(3000)
    with mounted(config, mnt, output=tmp_path / "daemon.out"):
        try:
            assert _fail_upload(s3, mnt / "late.bin", data) == errno.EIO
            report = copickfs("status", "--json", str(mnt), timeout=60)  # answered with the server stopped
        finally:
            s3.resume()
        assert report.returncode == 0, report.stderr
        assert KEY not in report.stdout and SECRET not in report.stdout
        assert json.loads(report.stdout)["options"]["writeback_cache"] is False  # others share the bucket
        overlay = json.loads(report.stdout)["layers"]["overlay"]
        assert [p["url"] for p in overlay["staging"]["pending_uploads"]] == [f"s3://{bucket}/overlay/late.bin"]
        assert overlay["staging"]["pending_uploads"][0]["size"] == len(data)
        text = copickfs("status", str(mnt)).stdout
        assert KEY not in text and SECRET not in text
        _poll(lambda: _object(s3.filesystem(), f"{bucket}/overlay/late.bin") == data, 30, "the retried upload")
        _poll(lambda: not _status(mnt)["layers"]["overlay"]["staging"]["pending_uploads"], 10,
              "the pending list emptied")


def test_failed_requests_are_logged_once_each_and_rate_limited(tmp_path: Path) -> None:
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static / "full", overlay, mnt):
        d.mkdir(parents=True)
    (static / "full" / "x").write_bytes(b"x")
    config = write_config(tmp_path / "config.json", overlay, static, overlay_fs_args={"secret": "do-not-show"})
    log = tmp_path / "daemon.out"
    with mounted(config, mnt, "negative_timeout=0", output=log):
        for _ in range(3):
            assert not (mnt / "missing").exists()  # a lookup's miss is no failure of the mount
        with pytest.raises(OSError) as caught:
            os.rmdir(mnt / "full")
        assert caught.value.errno == errno.ENOTEMPTY
        weird = mnt / "new\nline"
        weird.mkdir()
        (weird / "y").write_bytes(b"y")
        with pytest.raises(OSError):
            os.rmdir(weird)
        for _ in range(500):  # a client looping on a failing call
            with pytest.raises(OSError):
                os.rmdir(mnt / "full")
    lines = log.read_text().splitlines()
    failures = [line for line in lines if " WARNING rmdir " in line]
    assert failures[0].endswith("rmdir full: ENOTEMPTY (Directory not empty)")
    assert any(line.endswith("rmdir new\\nline: ENOTEMPTY (Directory not empty)") for line in failures)
    assert 10 <= len(failures) < 200, f"{len(failures)} lines for 502 failures"
    assert not any("missing" in line for line in lines)
    assert "do-not-show" not in log.read_text()


def test_metrics_file_in_prometheus_text_format(local_mount, tmp_path: Path) -> None:
    mnt, overlay, static, _ = local_mount
    metrics = tmp_path / "metrics" / "copickfs.prom"
    metrics.parent.mkdir()
    other = tmp_path / "mnt2"
    other.mkdir()
    config = write_config(tmp_path / "config2.json", overlay, static)
    with mounted(config, other, f"metrics_file={metrics}", "metrics_interval=1"):
        assert not (other / "nope").exists()
        assert (other / "a" / "f.txt").read_bytes() == b"static\n"
        deadline = time.monotonic() + 20
        while "op=\"open\"" not in (metrics.read_text() if metrics.exists() else ""):
            assert time.monotonic() < deadline, "no metrics written"
            time.sleep(0.2)
        assert os.stat(metrics).st_mode & 0o777 == 0o644
    text = metrics.read_text()  # the last write, at the end
    assert f'copickfs_requests_total{{mountpoint="{other}",op="lookup"}}' in text
    assert f'copickfs_errors_total{{mountpoint="{other}",op="lookup",errno="ENOENT"}}' in text
    assert "# TYPE copickfs_requests_total counter" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2 and float(line.rsplit(" ", 1)[1]) >= 0
    assert [p.name for p in metrics.parent.iterdir()] == ["copickfs.prom"], "no temporary file left"


def test_failure_log_rate_limit() -> None:
    from copickfs.mount.failures import FailureLog

    now = [0.0]
    flog = FailureLog(rate=2, burst=3, clock=lambda: now[0])
    assert [flog.failed("rmdir", "a", errno.ENOTEMPTY) for _ in range(5)] == [True, True, True, False, False]
    now[0] += 1.0  # two more tokens
    assert [flog.failed("rmdir", "a", errno.ENOTEMPTY) for _ in range(3)] == [True, True, False]
    assert flog.failed("lookup", "x", errno.ENOENT) is False


def test_status_answers_during_load(local_mount) -> None:
    import threading

    mnt, overlay, _, _ = local_mount
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                path = mnt / f"load-{n}-{i % 50}.bin"
                path.write_bytes(os.urandom(4096))
                assert len(path.read_bytes()) == 4096
                if i % 7 == 0:
                    path.unlink()
                i += 1
        except BaseException as e:  # reported by the test
            errors.append(e)

    workers = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for w in workers:
        w.start()
    try:
        reports = []
        for _ in range(10):
            reports.append(_status(mnt))
            time.sleep(0.1)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert not errors, errors
    creates = [r["operations"].get("create", 0) for r in reports]
    assert creates == sorted(creates) and creates[-1] > creates[0] > 0  # counting while it runs
    assert all(set(r["open_files"]) == {"files", "directories"} for r in reports)
    assert len(list(overlay.glob("load-*.bin"))) > 0
