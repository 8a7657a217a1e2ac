"""copickfs as mount(8) and fstab use it, and as a plain overlayfs-style union of two
directories: ``mount -t fuse.copickfs``, fstab lines, ``umount``, ``-o lowerdir=,upperdir=``,
and a daemon killed with SIGKILL cleared by ``copickfs unmount`` and by ``umount -l``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from copickfs.mount.mountinfo import is_mounted, mount_type
from mounting import copickfs, force_unmount, mounted, write_config
from treehash import tree_digest

HELPER = Path("/sbin/mount.fuse.copickfs")


def _installed_helper() -> str:
    found = shutil.which("mount.fuse.copickfs", path=os.path.dirname(sys.executable))
    assert found, "the package installs the mount.fuse.copickfs script beside its Python"
    return found


@pytest.fixture
def mount_helper() -> Iterator[None]:
    """mount(8) finds helpers in /sbin only: link ours there for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mount(8) with a helper in /sbin needs root")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("util-linux mount/umount are not installed")
    target = _installed_helper()
    made = False
    if HELPER.is_symlink() or HELPER.exists():
        if os.path.realpath(HELPER) != os.path.realpath(target):
            pytest.skip(f"{HELPER} exists and is another installation's; left alone")
    else:
        HELPER.symlink_to(target)
        made = True
    try:
        yield
    finally:
        if made:
            HELPER.unlink()


@pytest.fixture
def roots(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, Path]]:
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static / "a", overlay, mnt):
        d.mkdir(parents=True)
    (static / "a" / "f.txt").write_bytes(b"static\n")
    config = write_config(tmp_path / "config.json", overlay, static)
    before = tree_digest(str(static))
    try:
        yield config, static, overlay, mnt
    finally:
        force_unmount(mnt)
        assert tree_digest(str(static)) == before, "the static tree changed"


def _daemon_pid(mnt: Path) -> int:
    result = copickfs("status", "--json", str(mnt))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["pid"]


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                return
        assert time.monotonic() < deadline, f"daemon {pid} still running"
        time.sleep(0.1)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)


def _check_union(mnt: Path, overlay: Path) -> None:
    assert (mnt / "a" / "f.txt").read_bytes() == b"static\n"
    (mnt / "a" / "new.txt").write_bytes(b"mine\n")
    assert (overlay / "a" / "new.txt").read_bytes() == b"mine\n"


def test_mount_t_fuse_copickfs_and_umount(mount_helper: None, roots) -> None:
    config, _, overlay, mnt = roots
    done = _run("mount", "-t", "fuse.copickfs", str(config), str(mnt),
                "-o", "entry_timeout=0,nofail,_netdev,x-systemd.automount,x-systemd.idle-timeout=60,defaults")
    assert done.returncode == 0, done.stderr
    assert mount_type(str(mnt)) == "fuse.copickfs"
    pid = _daemon_pid(mnt)
    _check_union(mnt, overlay)
    done = _run("umount", str(mnt))
    assert done.returncode == 0, done.stderr
    assert not is_mounted(str(mnt))
    _wait_gone(pid)


def test_an_fstab_line(mount_helper: None, roots, tmp_path: Path) -> None:
    config, _, overlay, mnt = roots
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# copickfs\n{config} {mnt} fuse.copickfs defaults,nofail,_netdev,attr_timeout=0 0 0\n")
    done = _run("mount", "-T", str(fstab), str(mnt))
    assert done.returncode == 0, done.stderr
    _check_union(mnt, overlay)
    assert _run("umount", str(mnt)).returncode == 0
    assert not is_mounted(str(mnt))


def test_an_overlayfs_style_fstab_line(mount_helper: None, roots, tmp_path: Path) -> None:
    _, static, overlay, mnt = roots
    work = tmp_path / "work"
    work.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"shared {mnt} fuse.copickfs lowerdir={static},upperdir={overlay},workdir={work},nofail 0 0\n")
    done = _run("mount", "-T", str(fstab), str(mnt))
    assert done.returncode == 0, done.stderr
    _check_union(mnt, overlay)
    assert os.listdir(work) == [], "copy-ups are made in the upper directory's own work area"
    assert _run("umount", str(mnt)).returncode == 0


def test_the_helper_fakes_and_is_sloppy_on_request(roots) -> None:
    config, static, overlay, mnt = roots
    helper = _installed_helper()
    fake = _run(helper, str(config), str(mnt), "-f", "-o", "nofail")
    assert fake.returncode == 0, fake.stderr
    assert not is_mounted(str(mnt))
    strict = _run(helper, str(config), str(mnt), "-o", "bogus=1")
    assert strict.returncode != 0 and "bogus: unknown mount option" in strict.stderr
    assert not is_mounted(str(mnt))
    sloppy = _run(helper, str(config), str(mnt), "-s", "-o", "bogus=1,entry_timeout=0")
    assert sloppy.returncode == 0, sloppy.stderr
    assert "ignoring unknown option 'bogus'" in sloppy.stderr
    try:
        _check_union(mnt, overlay)
    finally:
        force_unmount(mnt)
    assert _run(helper, str(config)).returncode == 2  # one line of usage, no traceback


def test_overlayfs_style_options_need_no_config(roots, tmp_path: Path) -> None:
    _, static, overlay, mnt = roots
    opts = f"lowerdir={static},upperdir={overlay},workdir={tmp_path}"
    done = copickfs("mount", "overlay", str(mnt), "-o", opts)
    assert done.returncode == 0, done.stderr
    try:
        _check_union(mnt, overlay)
        os.unlink(mnt / "a" / "f.txt")  # a whiteout in the upper directory, static untouched
        assert not (mnt / "a" / "f.txt").exists() and (static / "a" / "f.txt").exists()
    finally:
        force_unmount(mnt)


def test_relative_dirs_are_taken_from_the_working_directory(roots, tmp_path: Path) -> None:
    _, static, overlay, mnt = roots
    done = subprocess.run([sys.executable, "-m", "copickfs", "mount", "x", "mnt", "-o",
                           "lowerdir=static,upperdir=overlay"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    try:
        _check_union(mnt, overlay)
    finally:
        force_unmount(mnt)


@pytest.mark.parametrize("opts, message", [
    ("lowerdir={static}:{overlay},upperdir={overlay}",
     "-o lowerdir={static}:{overlay}: several lower directories are not supported"),
    ("lowerdir={static}", "-o upperdir: missing"),
    ("lowerdir={static},upperdir={missing}", "-o upperdir: {missing} is not an existing directory"),
    ("lowerdir={missing},upperdir={overlay}", "-o lowerdir: {missing} is not an existing directory"),
    ("lowerdir={static},upperdir={overlay},workdir={missing}", "-o workdir: {missing} is not an existing directory"),
    ("lowerdir=,upperdir={overlay}", "-o lowerdir: needs a directory"),
])
def test_bad_overlayfs_style_options(roots, tmp_path: Path, opts: str, message: str) -> None:
    _, static, overlay, mnt = roots
    names = {"static": static, "overlay": overlay, "missing": tmp_path / "missing"}
    done = copickfs("mount", "none", str(mnt), "-o", opts.format(**names))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: " + message.format(**names)), done.stderr
    assert not is_mounted(str(mnt))


@pytest.mark.parametrize("clear", ["copickfs unmount", "umount -l"])
def test_a_killed_daemon_is_cleared_and_fsynced_writes_survive(roots, tmp_path: Path, clear: str) -> None:
    config, _, overlay, mnt = roots
    if clear == "umount -l" and shutil.which("umount") is None:
        pytest.skip("util-linux umount is not installed")
    with mounted(config, mnt) as pid:
        with open(mnt / "a" / "kept.bin", "wb") as f:
            f.write(b"fsynced\n")
            f.flush()
            os.fsync(f.fileno())
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
        with pytest.raises(OSError):
            os.stat(mnt / "a")  # "Transport endpoint is not connected"
        done = copickfs("unmount", str(mnt)) if clear == "copickfs unmount" else _run("umount", "-l", str(mnt))
        assert done.returncode == 0, done.stderr
        assert not is_mounted(str(mnt))
    with mounted(config, mnt):
        assert (mnt / "a" / "kept.bin").read_bytes() == b"fsynced\n"
        assert (mnt / "a" / "f.txt").read_bytes() == b"static\n"


def test_an_autofs_trigger_is_neither_opened_nor_listed(monkeypatch, roots) -> None:
    """Under fstab's x-systemd.automount the mount point is an autofs trigger when mount(8)
    runs us: opening or listing it would ask for the very mount being made, and wait."""
    from copickfs.config import load_config
    from copickfs.mount import preflight

    config, _, overlay, mnt = roots
    touched: list[str] = []
    real_open, real_listdir = os.open, os.listdir
    monkeypatch.setattr(preflight, "mount_type", lambda p: "autofs" if p == str(mnt) else None)
    monkeypatch.setattr(os, "open", lambda p, *a, **k: touched.append(str(p)) or real_open(p, *a, **k))
    monkeypatch.setattr(os, "listdir", lambda p=".": touched.append(str(p)) or real_listdir(p))
    with preflight.claim_mountpoint(str(mnt), load_config(config)) as claim:
        assert claim.path == str(mnt) and claim.fd == -1
    assert touched == []
    inside = overlay / "m"
    inside.mkdir()
    monkeypatch.setattr(preflight, "mount_type", lambda p: "autofs")
    with pytest.raises(preflight.MountError, match="lies inside overlay_root"):
        preflight.claim_mountpoint(str(inside), load_config(config))
