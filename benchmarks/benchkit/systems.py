"""The systems compared: the plain directories, copickfs, and the union filesystems beside it.

Every union is set up the same way: the static data set is the read-only lower layer and a
fresh, empty directory the writable upper layer. FUSE daemons run in the foreground as our
children (in their own session, so a Ctrl-C reaches only the script, which then unmounts
them); they are only ever signalled by the PID we started. Everything mounted is listed in
`ACTIVE` until it is unmounted, so `unmount_all` can clean up from any ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# mergerfs with its documented caching options; one writable branch (upper) over a read-only
# one (lower). category.create=ff: new files go to the first writable branch, their parent
# directories cloned there (a path-preserving policy would refuse dirs that exist only below).
MERGERFS_OPTIONS = "cache.files=auto-full,dropcacheonclose=true,func.getattr=newest,category.create=ff"

LOCAL_PEERS = ["fuse-overlayfs", "mergerfs", "unionfs-fuse", "overlayfs"]
PEER_BINARIES = {"fuse-overlayfs": "fuse-overlayfs", "mergerfs": "mergerfs", "unionfs-fuse": "unionfs",
                 "s3fs-fuse": "s3fs"}
DEBIAN_PACKAGES = {"fuse-overlayfs": "fuse-overlayfs", "mergerfs": "mergerfs", "unionfs-fuse": "unionfs-fuse",
                   "s3fs-fuse": "s3fs"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def mount_type(path: Path) -> str | None:
    """The fstype mounted exactly at ``path`` (from /proc, never touching the mount), or None."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        lines = f.readlines()
    for line in reversed(lines):
        fields = line.split()
        if _unescape(fields[4]) == target:
            return fields[fields.index("-") + 1]
    return None


def unmount(path: Path) -> None:
    """Unmount ``path`` if mounted: politely, then lazily (a busy mount must not stay behind)."""
    for attempt in range(3):
        kind = mount_type(path)
        if kind is None:
            return
        if kind.startswith("fuse"):
            fusermount = shutil.which("fusermount3") or "fusermount"
            argv = [fusermount, "-uz" if attempt == 2 else "-u", str(path)]
        else:
            argv = ["umount", *(["-l"] if attempt == 2 else []), str(path)]
        subprocess.run(argv, capture_output=True, check=False)
        if attempt:
            time.sleep(0.2)


def debian_version(peer: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", DEBIAN_PACKAGES[peer]], capture_output=True,
                       text=True, check=False)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "?"


def missing_reason(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None when it can (overlayfs is probed separately)."""
    binary = PEER_BINARIES.get(peer)
    if binary and shutil.which(binary) is None:
        return (f"not installed (apt-get install {DEBIAN_PACKAGES[peer]}"
                + (", or --install-peers)" if peer in ("mergerfs", "unionfs-fuse") else ")"))
    return None


def probe_overlayfs(base: Path) -> str | None:
    """Try one kernel overlay mount of empty dirs; the reason it failed, or None."""
    if os.geteuid() != 0:
        return "mounting kernel overlayfs needs root"
    shutil.rmtree(base, ignore_errors=True)
    dirs = [base / d for d in ("lower", "upper", "work", "mnt")]
    for d in dirs:
        d.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}", str(dirs[3])],
                       capture_output=True, text=True, check=False)
    try:
        if r.returncode != 0:
            return f"mount -t overlay failed: {(r.stderr or r.stdout).strip()[-200:]}"
        return None
    finally:
        unmount(dirs[3])
        if mount_type(dirs[3]) is None:
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Mounted:
    """One mounted system. ``proc`` is the foreground daemon we started (None for the kernel's)."""

    name: str
    mountpoint: Path
    logfile: Path
    proc: subprocess.Popen[bytes] | None = None

    def peak_rss_mib(self) -> float | None:
        """VmHWM of the daemon: its peak resident memory so far (read before unmounting)."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self) -> None:
        unmount(self.mountpoint)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            unmount(self.mountpoint)


ACTIVE: list[Mounted] = []


def unmount_all() -> None:
    """Unmount everything still listed, newest first; keep going past failures."""
    while ACTIVE:
        m = ACTIVE.pop()
        try:
            m.stop()
        except Exception as e:  # noqa: BLE001 - the rest must still be unmounted
            log(f"warning: unmounting {m.mountpoint}: {e}")


@dataclass
class System:
    """Where one system's workloads look: the static tree's view and the place new files go."""

    name: str
    read_root: Path
    write_root: Path
    mount: Mounted | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Launcher:
    """Sets up each system over ``static`` with a fresh upper dir under ``runs/``."""

    work: Path
    static: Path
    copickfs_cmd: list[str]
    copickfs_opts: list[str]

    def setup(self, name: str, run: int) -> System:
        base = self.work / "runs" / f"{name}-{run}"
        shutil.rmtree(base, ignore_errors=True)
        upper = base / "upper"
        upper.mkdir(parents=True)
        if name == "direct":
            return System(name, self.static, upper)
        mp = self.work / "mnt" / name
        mp.mkdir(parents=True, exist_ok=True)
        if mount_type(mp) is not None:
            raise RuntimeError(f"{mp} is already mounted")
        logfile = self.work / "logs" / f"{name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        m = Mounted(name, mp, logfile)
        ACTIVE.append(m)  # listed before it exists: a failed start is cleaned up too
        if name == "overlayfs":
            (base / "work").mkdir()
            r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                f"lowerdir={self.static},upperdir={upper},workdir={base / 'work'}", str(mp)],
                               capture_output=True, text=True, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"mount -t overlay failed: {r.stderr.strip()}")
        else:
            self._start_daemon(m, self._argv(name, base, upper, mp))
        return System(name, mp, mp, m)

    def _argv(self, name: str, base: Path, upper: Path, mp: Path) -> list[str]:
        if name == "copickfs":
            config = base / "config.json"
            config.write_text(json.dumps({"config_type": "filesystem", "name": "bench",
                                          "overlay_root": str(upper), "static_root": str(self.static)}))
            argv = [*self.copickfs_cmd, "mount", "-f", str(config), str(mp)]
            for opt in self.copickfs_opts:
                argv += ["-o", opt]
            return argv
        if name == "fuse-overlayfs":
            (base / "work").mkdir()
            layers = f"lowerdir={self.static},upperdir={upper},workdir={base / 'work'}"
            return ["fuse-overlayfs", "-f", "-o", layers, str(mp)]
        if name == "mergerfs":
            return ["mergerfs", "-f", "-o", f"{MERGERFS_OPTIONS},fsname=bench-mergerfs",
                    f"{upper}=RW:{self.static}=RO", str(mp)]
        if name == "unionfs-fuse":
            return ["unionfs", "-f", "-o", "cow", f"{upper}=RW:{self.static}=RO", str(mp)]
        raise ValueError(f"unknown system {name!r}")

    @staticmethod
    def _start_daemon(m: Mounted, argv: list[str], timeout: float = 30.0) -> None:
        with open(m.logfile, "ab") as out:
            m.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                      start_new_session=True)
        deadline = time.monotonic() + timeout
        while mount_type(m.mountpoint) is None:
            if m.proc.poll() is not None:
                tail = m.logfile.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{m.name} exited ({m.proc.returncode}): " + " | ".join(tail))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{m.name} did not mount within {timeout:.0f} s")
            time.sleep(0.02)
        os.stat(m.mountpoint)  # it answers

    def teardown(self, system: System, run: int) -> None:
        if system.mount is not None:
            peak = system.mount.peak_rss_mib()
            if peak is not None:
                system.extra["peak_rss_mib"] = peak
            system.mount.stop()
            if system.mount in ACTIVE:
                ACTIVE.remove(system.mount)
        shutil.rmtree(self.work / "runs" / f"{system.name}-{run}", ignore_errors=True)
