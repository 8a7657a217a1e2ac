"""copickfs as a systemd service: the units pass `systemd-analyze verify`, and the daemon
speaks sd_notify — READY=1 only once the mount answers, STOPPING=1 on SIGTERM before a
clean unmount — to a test socket standing in for systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from copickfs.mount.mountinfo import COPICKFS_TYPE, is_mounted, mount_type
from copickfs.mount.notify import Notifier, socket_address
from mounting import force_unmount, write_config

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "copickfs@.service"
EXAMPLES = ("mnt-copickfs-project.mount", "mnt-copickfs-project.automount")
WAIT = 60.0  # seconds a test waits for a datagram before failing instead of hanging

# Settings that give a service a mount namespace of its own (the mount would be invisible
# outside it) or hide /dev/fuse.
NAMESPACED = {
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ReadOnlyPaths",
    "ReadWritePaths", "InaccessiblePaths", "ExecPaths", "NoExecPaths", "TemporaryFileSystem", "BindPaths",
    "BindReadOnlyPaths", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "ProtectProc", "ProcSubset", "ProtectHostname", "ProtectClock", "DynamicUser",
    "RootDirectory", "RootImage", "MountFlags", "MountAPIVFS", "DevicePolicy", "DeviceAllow",
    "MemoryDenyWriteExecute",
}


def unit_settings(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Section -> [(key, value)] of a unit file (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path}: {line!r} outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def test_the_service_unit_is_a_notify_service_in_the_host_mount_namespace() -> None:
    service = unit_settings(UNIT)["Service"]
    keys = dict(service)
    assert keys["Type"] == "notify"
    assert keys["NotifyAccess"] == "main"
    assert keys["KillMode"] == "mixed"
    assert keys["Restart"] == "on-failure"
    assert keys["ExecStart"].split()[:3] == ["copickfs", "mount", "-f"]
    assert "/etc/copickfs/%i.json" in keys["ExecStart"]
    assert "ExecStartPost" not in keys, "readiness comes from READY=1, not from polling"
    assert not NAMESPACED & keys.keys(), f"would hide the mount or /dev/fuse: {NAMESPACED & keys.keys()}"
    assert "CAP_SYS_ADMIN" in keys["CapabilityBoundingSet"].split()


# ---------------------------------------------------------------------------- systemd-analyze verify

@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("systemd-analyze is not installed, and installing it needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("systemd-analyze is not installed, and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"], env=env,
                   check=True, capture_output=True)
    found = shutil.which("systemd-analyze")
    assert found, "apt-get installed systemd, but there is no systemd-analyze"
    return found


@pytest.fixture
def system_root(tmp_path: Path) -> Path:
    """An empty system for `systemd-analyze verify --root`: systemd's own units, and a
    stand-in for an installed copickfs (verify checks that ExecStart's command exists in
    the default search path under the root; it does not read ExecSearchPath=)."""
    root = tmp_path / "root"
    units = Path("/usr/lib/systemd/system")
    if not units.is_dir():
        units = Path("/lib/systemd/system")
    shutil.copytree(units, root / "usr/lib/systemd/system", symlinks=True)
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True)
    (bindir / "copickfs").write_text("#!/bin/sh\n")
    (bindir / "copickfs").chmod(0o755)
    return root


def verify(analyze: str, root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([analyze, "verify", "--man=no", "--generators=no", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=120)


def test_installed_units_pass_systemd_analyze_verify(systemd_analyze: str, system_root: Path,
                                                     tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "overlay").mkdir()
    config = write_config(tmp_path / "project.json", tmp_path / "overlay", tmp_path / "static")
    installed = subprocess.run(
        ["bash", str(REPO / "scripts/install-service.sh"), "--root", str(system_root), "project",
         str(config), "/data/my project"], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    etc = system_root / "etc"
    assert (etc / "systemd/system/copickfs@.service").read_bytes() == UNIT.read_bytes()
    assert 'MOUNTPOINT="/data/my project"' in (etc / "copickfs/project.env").read_text()
    assert (etc / "copickfs/project.json").stat().st_mode & 0o077 == 0, "a config may hold credentials"
    for name in EXAMPLES:
        shutil.copy(REPO / "systemd" / name, etc / "systemd/system" / name)

    result = verify(systemd_analyze, system_root, "copickfs@project.service", *EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr
    # verify only warns (exit 0) about unknown keys or values it cannot parse: none allowed.
    assert (result.stdout + result.stderr).strip() == ""


def test_verify_catches_a_broken_unit(systemd_analyze: str, system_root: Path) -> None:
    """The check above would see a mistake: an unknown key and a bad value are reported."""
    units = system_root / "etc/systemd/system"
    units.mkdir(parents=True)
    text = UNIT.read_text().replace("Type=notify", "Typ=notify").replace("KillMode=mixed", "KillMode=some")
    (units / "copickfs@.service").write_text(text)
    result = verify(systemd_analyze, system_root, "copickfs@project.service")
    output = result.stdout + result.stderr
    assert "Typ" in output and "some" in output


# ---------------------------------------------------------------------------- sd_notify

def test_notify_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == b"/run/systemd/notify"
    assert socket_address("@abstract/name") == b"\0abstract/name"
    assert socket_address("relative") is None
    assert socket_address("@") is None


def test_notifier_without_socket_does_nothing() -> None:
    env: dict[str, str] = {}
    notifier = Notifier(env)
    assert not notifier.enabled
    assert not notifier.ready("x")
    notifier.stopping("y")


def test_notifier_sends_ready_once_and_never_after_stopping(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(WAIT)
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        notifier = Notifier(env)
        assert "NOTIFY_SOCKET" not in env, "programs the daemon runs must not speak for the service"
        notifier.status("starting\nup")
        assert sock.recv(4096) == b"STATUS=starting up"
        assert notifier.ready("serving")
        assert sock.recv(4096) == f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving".encode()
        assert not notifier.ready("again")
        notifier.stopping("bye")
        notifier.stopping("bye again")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"
        late = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify")})
        late.stopping("stopped first")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopped first"
        assert not late.ready("too late")
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)  # nothing else was sent


class NotifySocket:
    """A datagram socket standing in for systemd's: messages with the sender's PID."""

    def __init__(self, address: str, bind_to: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(bind_to)
        self.sock.settimeout(WAIT)

    def receive(self) -> tuple[dict[str, str], int]:
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = -1
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("=iII", payload[:12])[0]
        fields = dict(line.partition("=")[::2] for line in data.decode().splitlines())
        return fields, pid

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock = NotifySocket(path, path)
    else:
        name = f"copickfs-test-{uuid.uuid4().hex}"
        sock = NotifySocket(f"@{name}", b"\0" + name.encode())
    try:
        yield sock
    finally:
        sock.close()


def test_ready_once_the_mount_answers_and_stopping_before_a_clean_unmount(
        notify_socket: NotifySocket, tmp_path: Path) -> None:
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
    (static / "ExperimentRuns/TS_001/Picks").mkdir(parents=True)
    picks = static / "ExperimentRuns/TS_001/Picks/me_1_ribosome.json"
    picks.write_bytes(b'{"points": []}\n')
    config = write_config(tmp_path / "config.json", overlay, static)
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket.address)
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "copickfs", "mount", "-f", str(config), str(mnt)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        seen: list[dict[str, str]] = []
        while True:
            try:
                fields, sender = notify_socket.receive()
            except TimeoutError:
                pytest.fail(f"no READY=1 (got {seen}); daemon: {(tmp_path / 'daemon.log').read_text()}")
            seen.append(fields)
            assert sender == proc.pid, "NotifyAccess=main hears only the daemon itself"
            if "READY" in fields:
                break
            assert "STOPPING" not in fields
        # Freeze the daemon where it said READY: the mount must be there already.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            mounted_as = mount_type(str(mnt))
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert mounted_as == COPICKFS_TYPE
        assert fields["READY"] == "1" and fields["MAINPID"] == str(proc.pid)
        assert str(mnt) in fields["STATUS"]
        assert (mnt / "ExperimentRuns/TS_001/Picks/me_1_ribosome.json").read_bytes() == picks.read_bytes()
        assert any("STATUS" in f and "READY" not in f for f in seen), "a STATUS line while starting"

        written = os.urandom(100_000)
        fd = os.open(mnt / "ExperimentRuns/TS_001/Picks/you_2_ribosome.json", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, written)
            os.fsync(fd)
        finally:
            os.close(fd)

        os.kill(proc.pid, signal.SIGTERM)
        after: list[dict[str, str]] = []
        while not any("STOPPING" in f for f in after):
            try:
                fields, sender = notify_socket.receive()
            except TimeoutError:
                pytest.fail(f"no STOPPING=1 after SIGTERM (got {after})")
            assert sender == proc.pid
            after.append(fields)
        assert not any("READY" in f for f in after), "READY=1 is sent once"
        assert proc.wait(timeout=WAIT) == 0, (tmp_path / "daemon.log").read_text()
        assert not is_mounted(str(mnt)), "the daemon unmounts on SIGTERM"
        assert (overlay / "ExperimentRuns/TS_001/Picks/you_2_ribosome.json").read_bytes() == written
        assert not (static / "ExperimentRuns/TS_001/Picks/you_2_ribosome.json").exists()
    finally:
        force_unmount(mnt)
        if proc.poll() is None:
            proc.kill()  # our own daemon, by PID
            proc.wait()
            force_unmount(mnt)
    assert not is_mounted(str(mnt))

