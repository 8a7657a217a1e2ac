"""Telling a service manager how the daemon is doing: systemd's sd_notify protocol.

A service started with ``Type=notify`` gets ``$NOTIFY_SOCKET``, a Unix datagram socket (a
path, or ``@name`` for the abstract namespace). Each message is one datagram of
``KEY=VALUE`` lines; the manager learns the sender's PID from the kernel (with
``NotifyAccess=main`` only the main process is heard). Without ``$NOTIFY_SOCKET`` every
call here does nothing, so the daemon behaves the same outside systemd.

The daemon says:

- ``STATUS=...`` at each step (shown by ``systemctl status``);
- ``READY=1`` (with ``MAINPID``) once the mount answers: `MountWatcher` waits until the
  kernel lists a copickfs mount at the mount point and a ``stat`` of it is answered by
  that mount (see `answered_by_mount`);
- ``STOPPING=1`` when the FUSE loop ends (SIGTERM, SIGINT, SIGHUP, or an unmount), before
  the daemon unmounts and flushes.

Nothing here fails the mount: a message that cannot be sent is logged once and dropped.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Callable

from .mountinfo import COPICKFS_TYPE, mount_entry

log = logging.getLogger("copickfs.mount")

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def socket_address(value: str) -> bytes | None:
    """The address ``$NOTIFY_SOCKET`` names, for ``sendto``; None for one we cannot use.

    An absolute path, or ``@name`` for the abstract namespace (a leading NUL byte), as
    sd_notify(3) accepts them (``vsock:`` addresses are not supported here).
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


class Notifier:
    """Sends sd_notify messages to the socket ``$NOTIFY_SOCKET`` named when it was made.

    The variable is taken out of the environment, as sd_notify(3)'s ``unset_environment``
    does, so programs the daemon runs (fusermount3) do not speak for the service. READY is
    sent at most once, and never after STOPPING.
    """

    def __init__(self, environ: dict[str, str] | os._Environ[str] | None = None) -> None:
        env = os.environ if environ is None else environ
        value = env.pop(NOTIFY_SOCKET, None)
        self.address = socket_address(value) if value else None
        if value and self.address is None:
            log.warning("ignoring NOTIFY_SOCKET=%r: not an absolute path or @abstract name", value)
        self._lock = threading.Lock()
        self._ready = self._stopping = self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``lines``; True if it went out (False without a socket)."""
        if self.address is None:
            return False
        message = "\n".join(lines).encode("utf-8", "backslashreplace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager: %s", e.strerror or e)
            return False
        return True

    def status(self, text: str) -> None:
        self.send(f"STATUS={' '.join(text.split())}")  # one line, whatever the text holds

    def ready(self, status: str) -> bool:
        """READY=1 with the daemon's PID and ``status``; only once, and not once stopping."""
        with self._lock:
            if self._ready or self._stopping:
                return False
            self._ready = True
            return self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={' '.join(status.split())}")

    def stopping(self, status: str) -> None:
        """STOPPING=1 (once): the mount is about to go."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self.send("STOPPING=1", f"STATUS={' '.join(status.split())}")


def answered_by_mount(mountpoint: str) -> bool:
    """A copickfs mount is at ``mountpoint`` and a ``stat`` of it was answered by that mount.

    The kernel lists the mount (``/proc/self/mountinfo``: type ``fuse.copickfs``) as soon as
    mount(2) returns, before the daemon has answered FUSE's INIT; a stat of the root then
    waits for INIT and a GETATTR reply, so its return means requests are being served. Its
    ``st_dev`` must be the mount's device: a stat that raced an unmount describes the
    directory underneath instead.
    """
    entry = mount_entry(mountpoint)
    if entry is None or entry[1] != COPICKFS_TYPE:
        return False
    try:
        st = os.stat(mountpoint)
    except OSError:
        return False
    return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" == entry[0]


class MountWatcher:
    """A thread that calls ``on_ready`` once the mount at ``mountpoint`` answers.

    It wakes whenever the mount table changes (poll(2) on ``/proc/self/mountinfo`` reports
    POLLPRI; checked at least every ``interval`` seconds too) until `answered_by_mount`, or
    until `stop` is called (the session ended or failed first).
    """

    def __init__(self, mountpoint: str, on_ready: Callable[[], None], interval: float = 0.5) -> None:
        self.mountpoint = mountpoint
        self.on_ready = on_ready
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copickfs-ready", daemon=True)

    def start(self) -> MountWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            table = open("/proc/self/mountinfo", "rb")
        except OSError:
            table = None
        try:
            poller = select.poll()
            if table is not None:
                poller.register(table, select.POLLPRI | select.POLLERR)
            while not self._stop.is_set():
                if answered_by_mount(self.mountpoint):
                    if not self._stop.is_set():
                        self.on_ready()
                    return
                poller.poll(int(self.interval * 1000))  # the kernel re-arms it as it reports
        except Exception:
            log.exception("watching for the mount to answer failed")
        finally:
            if table is not None:
                table.close()
