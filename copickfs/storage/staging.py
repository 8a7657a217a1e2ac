"""Writes to an object-store overlay, staged in local files until they are uploaded.

Why: an object store has no random writes, appends or truncates, and a PUT is all or
nothing. So a file opened for writing is copied into a local file (a copy-up from the
remote overlay; empty for a new or truncated file), served from a local descriptor like a
local layer's file, and uploaded whole on fsync and on close (s3fs: multipart for large
files). As rclone's write-back queue, the staged copy outlives a failed upload and the
daemon: a failed upload fails that fsync/close with EIO, the copy stays on disk marked
"pending" and is retried in the background and at the next start (`StagingArea.recover`).

On disk, per staged file, in a 0700 directory private to one overlay:

- ``<id>.data``: the bytes (``<id>`` is random: no path or credential in names);
- ``<id>.json``: its sidecar, replaced atomically (temp file, fsync, rename, fsync of the
  directory), so a crash leaves the old or the new one: ``{"format": 1, "url", "state":
  "open"|"pending", "size", "generation", "clean": [size, mtime_ns, ctime_ns] | null,
  "attempts", "last_error", "updated_ns"}``. ``clean`` is the data file's signature when
  its bytes were last known to equal the object (downloaded or uploaded): recovery skips
  a copy still at that signature and uploads every other one.

Crash safety, in short: a sidecar is written before the first descriptor of a staged file
is handed out (after its download, so a half-downloaded copy is never taken for data), and
it is removed only after an upload of the copy's latest bytes succeeded. Recovery uploads
whatever a staged copy holds: a superset of what successful fsyncs and closes
acknowledged (those bytes are in the object store already, or still in the copy).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import hashlib
import io
import json
import logging
import mimetypes
import os
import posixpath
import re
import stat as S
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.asyn import AsyncFileSystem

from ..union.layers import MODE_FLAGS, Layer
from ..union.openfile import OpenFile
from ..union.stat import Stat
from .files import protocols, read_json_object, safe_url, unlink_quietly

log = logging.getLogger(__name__)

OPEN, PENDING = "open", "pending"
FORMAT = 1
MiB = 1 << 20

#: Part size of multipart uploads (S3's minimum is 5 MiB); files under two parts are one PUT.
PART_SIZE = 8 * MiB

#: How long a staged copy keeps a background upload waiting after a release without one
#: (a new file created by `StagedLayer.create`, about to be opened and written).
DEFER = 1.0


def _coarse_tick_ns() -> int:
    """The granularity of file timestamps (the kernel's coarse clock), plus a margin."""
    try:
        return int(time.clock_getres(getattr(time, "CLOCK_REALTIME_COARSE", 5)) * 1e9) + 1_000_000
    except OSError:
        return 10_000_000


_TICK_NS = _coarse_tick_ns()

#: A data file's signature: (size, mtime_ns, ctime_ns); ctime changes with every write.
Sig = tuple[int, int, int]


def default_staging_dir() -> str:
    """Where a mount stages writes unless told: state, not cache (losing it loses data):
    $XDG_STATE_HOME/copickfs/staging, or /var/lib/copickfs/staging for root."""
    if os.geteuid() == 0:
        return "/var/lib/copickfs/staging"
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "copickfs", "staging")


def staging_directory(base: str, overlay_url: str) -> str:
    """The staging area of one overlay under ``base``: named by a hash of its URL without
    user info, so changed credentials find the same pending uploads."""
    return os.path.join(base, hashlib.sha256(safe_url(overlay_url).encode()).hexdigest()[:32])


def read_sidecars(directory: str) -> list[dict[str, Any]]:
    """The staged files of an area as its sidecars say (for ``status`` without the daemon):
    every one of them is uploaded by the next `StagingArea.recover`."""
    found = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        if name.endswith(".json"):
            doc = _load_sidecar(os.path.join(directory, name))
            if doc is not None:
                item = {k: doc.get(k) for k in ("url", "state", "size", "attempts", "last_error")}
                try:  # the sidecar's size may predate the last writes
                    item["size"] = os.stat(os.path.join(directory, name[:-5] + ".data")).st_size
                except OSError:
                    pass
                found.append(item)
    return found


class _Entry:
    """One staged file: shared by every open of its URL (a refcount), uploaded under `lock`."""

    def __init__(self, area: StagingArea, fs: fsspec.AbstractFileSystem, url: str, ident: str) -> None:
        self.fs = fs
        self.url = url
        self.id = ident
        self.data = os.path.join(area.directory, ident + ".data")
        self.sidecar = os.path.join(area.directory, ident + ".json")
        self.fd = -1  # O_RDWR, the area's own: fstat, uploads, reopening for handles
        self.refcount = 1
        self.handles: set[StagedFile] = set()
        #: Bumped on every change seen (writes through helpers, a new signature).
        self.generation = 0
        #: The generation last uploaded (or downloaded): clean when it is `generation`.
        self.uploaded = 0
        self.sig: Sig | None = None
        self.clean_sig: Sig | None = None
        self.state = OPEN
        self.attempts = 0
        self.last_error: str | None = None
        self.next_attempt: float | None = None  # monotonic time of a background upload
        self.dropped = False
        self.written: tuple[Any, ...] | None = None  # what the sidecar says now
        self.lock = threading.Lock()  # one upload (or sidecar write) at a time
        self.ready = threading.Event()
        self.failed = False
        #: An earlier upload failed or was cut short (a crash): it may have left an
        #: incomplete multipart upload of our key behind, to abort before the next one.
        self.may_leave_parts = False


class StagedFile(OpenFile):
    """One open of a staged file: ``fd`` is a local descriptor of the staged copy (its own
    offset; O_APPEND if asked), shared with every other open of the same URL."""

    def __init__(self, area: StagingArea, entry: _Entry, fd: int, writable: bool) -> None:
        super().__init__(fd)
        self._area = area
        self._entry = entry
        self.writable = writable
        self.closed = False

    @property
    def url(self) -> str:
        return self._entry.url

    @property
    def dirty(self) -> bool:
        """Whether the copy holds bytes not known to be uploaded (a hint: `flush` decides)."""
        return self._area._looks_dirty(self._entry)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        n = os.pwrite(self.fd, data, offset)
        self.mark_dirty()
        return n

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)
        self.mark_dirty()

    def mark_dirty(self) -> None:
        """Say the copy changed (writes to ``fd`` are also noticed by its timestamps)."""
        self._area._bump(self._entry)

    def sync(self, data_only: bool = False) -> None:
        """fsync(2): the object store holds every byte written before, or EIO."""
        self.flush()

    def flush(self) -> None:
        """Upload the copy if it changed; EIO (the copy kept, retried in the background) if
        that fails."""
        if self.closed:
            raise OSError(errno.EBADF, "staged file is closed", safe_url(self.url))
        self._area._flush_entry(self._entry)

    def close(self, upload: bool = True) -> None:
        """Flush (if open for writing and ``upload``), then release; a failed upload raises
        EIO here and stays pending. ``upload=False`` leaves the upload to the background."""
        if self.closed:
            return
        try:
            if upload and self.writable:
                self.flush()
        finally:
            self.closed = True
            os.close(self.fd)
            self._area._release(self._entry, self)

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StagedFile {safe_url(self.url)} fd={self.fd}>"


class StagingArea:
    """The staged files of one overlay, in a local directory this process locks for itself."""

    def __init__(self, directory: str, retry_interval: float = 5.0, *, timeout: float = 60.0,
                 min_rate: float = 1 * MiB, part_size: int = PART_SIZE, upload_concurrency: int = 4) -> None:
        """``timeout`` + size / ``min_rate`` bounds one upload or download: past it the
        transfer is cancelled and fails (a stalled server must fail the fsync, not hang it)."""
        if retry_interval <= 0:
            raise ValueError("retry_interval must be positive")
        self.directory = os.path.abspath(directory)
        self.retry_interval = retry_interval
        self.timeout = timeout
        self.min_rate = min_rate
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        _make_private_dir(self.directory)
        self._lock_fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OSError(errno.EBUSY, "staging area in use by another process", self.directory) from None
        self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._entries: dict[str, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False

    # ------------------------------------------------------------ opening

    def open(self, fs: fsspec.AbstractFileSystem, url: str, flags: int,
             existing_size: int | None | Callable[[], int | None]) -> StagedFile:
        """``url`` opened with open(2) ``flags``, served from its staged copy.

        A URL already staged shares that copy (so writers see each other's bytes). Else the
        copy is made: from the object (``existing_size`` bytes; None: there is none) unless
        O_TRUNC. ``existing_size`` may be a callable, asked only when a copy is made: a
        caller's stat made before a concurrent upload finished could be stale.
        """
        _check_url(url)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        while True:
            with self._lock:
                if self._closed:
                    raise OSError(errno.ESHUTDOWN, "staging area closed", self.directory)
                entry = self._entries.get(url)
                made = entry is None
                if entry is None:
                    entry = self._entries[url] = _Entry(self, fs, url, uuid.uuid4().hex)
                else:
                    entry.refcount += 1
            if made:
                try:
                    self._make_copy(entry, flags, existing_size)
                except BaseException:
                    self._abandon_copy(entry)
                    raise
                break
            entry.ready.wait()
            if not entry.failed:
                break
            with self._lock:
                entry.refcount -= 1  # its maker failed: try to make one ourselves
        try:
            fd = _reopen(entry.fd, os.O_RDWR | (flags & os.O_APPEND))
        except BaseException:
            self._release(entry, None)
            raise
        handle = StagedFile(self, entry, fd, writable)
        with self._lock:
            entry.handles.add(handle)
            if entry.state == OPEN:
                entry.next_attempt = None  # an open writer uploads at its flush/close
        if flags & os.O_TRUNC and not made:
            handle.truncate(0)
        return handle

    def lookup(self, url: str) -> StagedFile | None:
        """A read-only open of ``url``'s staged copy (None if there is none): reads of a
        staged file come from it, the object store may still hold older bytes. Close it."""
        with self._lock:
            entry = self._entries.get(url)
            if entry is None or not entry.ready.is_set() or entry.failed:
                return None
            entry.refcount += 1
        try:
            fd = _reopen(entry.fd, os.O_RDONLY)
        except BaseException:
            self._release(entry, None)
            raise
        handle = StagedFile(self, entry, fd, writable=False)
        with self._lock:
            entry.handles.add(handle)
        return handle

    def staged_stat(self, url: str) -> os.stat_result | None:
        """fstat() of ``url``'s staged copy, None if there is none."""
        with self._lock:  # the descriptor cannot be closed meanwhile
            entry = self._entries.get(url)
            if entry is None or not entry.ready.is_set() or entry.failed:
                return None
            return os.fstat(entry.fd)

    def staged_size(self, url: str) -> int | None:
        st = self.staged_stat(url)
        return None if st is None else st.st_size

    def staged_urls(self, prefix: str = "") -> list[str]:
        """URLs with a staged copy, equal to ``prefix`` or below ``prefix + "/"``."""
        with self._lock:
            urls = [u for u, e in self._entries.items() if e.ready.is_set() and not e.failed]
        if not prefix:
            return sorted(urls)
        return sorted(u for u in urls if u == prefix or u.startswith(prefix.rstrip("/") + "/"))

    def _make_copy(self, entry: _Entry, flags: int, existing_size: int | None | Callable[[], int | None]) -> None:
        """Fill a new entry's data file, then write its sidecar: only then is it data."""
        size = existing_size() if callable(existing_size) else existing_size
        fetch = size is not None and size > 0 and not flags & os.O_TRUNC
        if fetch:
            assert size is not None
            try:
                self._transfer(entry.fs, "get_file", entry.url, entry.data, size=size)
            except FileNotFoundError:
                raise
            except Exception as e:
                raise OSError(errno.EIO, f"download of {safe_url(entry.url)} failed: "
                              f"{_describe(e, entry.fs, self._limit(size))}") from None
        entry.fd = os.open(entry.data, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        os.fchmod(entry.fd, 0o600)
        with entry.lock:
            self._observe(entry)
            if size is not None and not flags & os.O_TRUNC:  # the object's bytes: clean
                entry.uploaded = entry.generation
                entry.clean_sig = entry.sig
            self._write_sidecar(entry)
        entry.ready.set()

    def _abandon_copy(self, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(entry.url) is entry:
                del self._entries[entry.url]
            entry.failed = True
            entry.refcount = 0
        for path in (entry.sidecar, entry.data):
            unlink_quietly(path)
        if entry.fd >= 0:
            os.close(entry.fd)
            entry.fd = -1
        entry.ready.set()

    # ------------------------------------------------------------ changes and uploads

    def _bump(self, entry: _Entry) -> None:
        with self._lock:
            entry.generation += 1

    def _looks_dirty(self, entry: _Entry) -> bool:
        with self._lock:
            if entry.dropped or entry.fd < 0:
                return False
            st = os.fstat(entry.fd)
            sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            return entry.uploaded < entry.generation or entry.sig is None or sig != entry.sig

    def _observe(self, entry: _Entry) -> None:
        """Bump the generation if the copy changed since last seen (writes straight to a
        descriptor, which libfuse makes, are seen by their ctime).

        The signature is taken only once the kernel's coarse clock has moved past its
        ctime, so that any later write gets a later ctime and cannot go unseen; a copy
        still being written counts as changed every time. Caller holds ``entry.lock``.
        """
        sig: Sig | None = None
        for _ in range(3):
            before = time.time_ns()
            st = os.fstat(entry.fd)
            wait = st.st_ctime_ns + _TICK_NS - before
            if wait < 0:
                sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                break
            time.sleep(wait / 1e9)
        with self._lock:
            if sig is None or sig != entry.sig:
                entry.sig = sig
                entry.generation += 1

    def _flush_entry(self, entry: _Entry) -> None:
        with entry.lock:
            self._upload(entry)
            self._settle(entry)

    def _upload(self, entry: _Entry) -> None:
        """Upload the whole copy if it changed since the last upload; on failure mark it
        pending (on disk too) and schedule a retry, then raise EIO. Holds ``entry.lock``."""
        if entry.dropped:
            return
        self._observe(entry)
        with self._lock:
            generation, sig = entry.generation, entry.sig
            if entry.uploaded >= generation:
                return
        size = os.fstat(entry.fd).st_size
        try:
            if entry.may_leave_parts:
                self._abort_leftover_parts(entry)
            self._transfer(entry.fs, "put_file", entry.data, entry.url, size=size,
                           **self._put_options(entry.fs, entry.url))
        except Exception as e:
            entry.may_leave_parts = True
            message = _describe(e, entry.fs, self._limit(size))
            log.warning("upload of %s failed (kept, will retry): %s", safe_url(entry.url), message)
            with self._lock:
                entry.attempts += 1
                entry.last_error = message
                entry.state = PENDING
                self._schedule(entry, self._backoff(entry.attempts))
            try:
                os.fsync(entry.fd)  # the copy is the only one now: survive a power loss too
                self._write_sidecar(entry)
            except OSError as e2:
                log.error("cannot record pending upload of %s: %s", safe_url(entry.url), e2)
            raise OSError(errno.EIO, f"upload of {safe_url(entry.url)} failed: {message}") from None
        with self._lock:
            entry.uploaded = max(entry.uploaded, generation)
            entry.clean_sig = sig
            entry.attempts = 0
            entry.last_error = None

    def _settle(self, entry: _Entry) -> None:
        """After an upload or the last release: a clean copy nobody holds is deleted (only
        if no newer generation was staged meanwhile); a dirty one nobody holds is left to
        the background; the sidecar says the rest. Holds ``entry.lock``."""
        if entry.dropped:
            return
        if entry.refcount == 0:
            self._observe(entry)
        with self._lock:
            clean = entry.uploaded >= entry.generation
            if clean:
                entry.state = OPEN
                entry.next_attempt = None
                entry.attempts = 0
            if clean and entry.refcount == 0 and self._entries.get(entry.url) is entry:
                del self._entries[entry.url]
                unlink_quietly(entry.sidecar)  # before anyone may stage this URL anew
                entry.dropped = True
                fd, entry.fd = entry.fd, -1
            else:
                fd = -1
                if not clean and entry.refcount == 0 and entry.next_attempt is None:
                    self._schedule(entry, DEFER)
        if fd >= 0:
            unlink_quietly(entry.data)
            os.close(fd)
            self._sync_dir()
        else:
            self._write_sidecar(entry)

    def _release(self, entry: _Entry, handle: StagedFile | None) -> None:
        with self._lock:
            entry.handles.discard(handle)  # type: ignore[arg-type]
            entry.refcount -= 1
            last = entry.refcount == 0
            if last and entry.dropped and entry.fd >= 0:
                os.close(entry.fd)
                entry.fd = -1
                return
        if last and not entry.dropped:
            with entry.lock:
                self._settle(entry)

    def _schedule(self, entry: _Entry, delay: float) -> None:
        """A background upload of ``entry`` in ``delay`` seconds. Holds ``self._lock``."""
        entry.next_attempt = time.monotonic() + delay
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="copickfs-staging", daemon=True)
            self._thread.start()
        self._wake.notify_all()

    def _backoff(self, attempts: int) -> float:
        return min(self.retry_interval, 0.1 * 2 ** max(0, attempts - 1))

    def _run(self) -> None:
        """The retry thread: uploads whatever is due, oldest first, until `close_all`."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = time.monotonic()
                waiting = [e for e in self._entries.values() if e.next_attempt is not None and e.ready.is_set()]
                due = sorted((e for e in waiting if e.next_attempt <= now), key=lambda e: e.next_attempt)  # type: ignore[arg-type,return-value]
                if not due:
                    soonest = min((e.next_attempt for e in waiting), default=None)  # type: ignore[type-var]
                    self._wake.wait(None if soonest is None else max(0.0, soonest - now))
                    continue
            for entry in due:
                if self._stopping:
                    return
                with entry.lock:
                    with self._lock:
                        if entry.dropped or entry.next_attempt is None or entry.next_attempt > time.monotonic():
                            continue
                        entry.next_attempt = None
                    try:
                        self._upload(entry)
                    except OSError:
                        continue  # rescheduled with a longer delay
                    except Exception:
                        log.exception("staging: unexpected error uploading %s", safe_url(entry.url))
                        with self._lock:
                            self._schedule(entry, self.retry_interval)
                        continue
                    self._settle(entry)

    # ------------------------------------------------------------ renames and removals

    def drop(self, url: str) -> bool:
        """Forget ``url``'s staged copy (its file was removed): never uploaded again; open
        descriptors keep reading and writing the unlinked copy. Whether there was one."""
        with self._lock:
            entry = self._entries.get(url)
        if entry is None:
            return False
        entry.ready.wait()
        with entry.lock:
            return self._drop_locked(entry)

    def _drop_locked(self, entry: _Entry) -> bool:
        with self._lock:
            if self._entries.get(entry.url) is not entry or entry.failed:
                return False
            del self._entries[entry.url]
            unlink_quietly(entry.sidecar)  # first: a crash never resurrects a removed file
            entry.dropped = True
            entry.next_attempt = None
            if entry.refcount == 0 and entry.fd >= 0:
                os.close(entry.fd)
                entry.fd = -1
        unlink_quietly(entry.data)
        self._sync_dir()
        return True

    def rename(self, src: str, dst: str, move: Callable[[], None]) -> None:
        """Rename staged copies at or below ``src`` to ``dst``, around ``move`` (which
        renames the objects): each is uploaded first (EIO leaves everything as it was),
        copies staged at ``dst`` are dropped (replaced), and after ``move`` the copies
        follow their new names. No upload runs meanwhile, so none lands at an old name, and
        a failed ``move`` leaves every copy as it was."""
        _check_url(dst)

        def below(prefix: str) -> list[_Entry]:
            with self._lock:
                return [self._entries[u] for u in sorted(self._entries) if u == prefix or u.startswith(prefix + "/")]

        moving, replaced = below(src), below(dst)
        for entry in moving + replaced:
            entry.ready.wait()
        moving = [e for e in moving if not e.failed]
        replaced = [e for e in replaced if not e.failed]
        held: list[_Entry] = []
        try:
            for entry in sorted(moving + replaced, key=lambda e: e.url):  # one order for all
                entry.lock.acquire()
                held.append(entry)
            for entry in moving:
                self._upload(entry)
            move()
            for entry in replaced:
                self._drop_locked(entry)
            for entry in moving:
                if entry.dropped:
                    continue
                with self._lock:
                    new = dst + entry.url[len(src):]
                    if self._entries.get(entry.url) is entry:
                        del self._entries[entry.url]
                    entry.url = new
                    self._entries[new] = entry
                self._write_sidecar(entry)
        finally:
            for entry in held:
                entry.lock.release()
        for entry in held:
            if not entry.dropped and entry.refcount == 0:
                with entry.lock:
                    self._settle(entry)

    def flush(self, url: str) -> None:
        """Upload ``url``'s staged copy if it changed (EIO if that fails); nothing if none."""
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            entry.ready.wait()
            if not entry.failed:
                self._flush_entry(entry)

    # ------------------------------------------------------------ recovery and shutdown

    def recover(self, fs: fsspec.AbstractFileSystem, wait: bool = True) -> int:
        """Take over the staged copies a previous run left (it crashed, or its uploads
        failed): each is uploaded now (``wait``) or by the background; failures stay pending
        and are retried. Call it before the first `open`. Returns how many were taken over."""
        names = os.listdir(self.directory)
        sidecars = []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".tmp"):
                unlink_quietly(path)  # a sidecar write a crash interrupted: the old one stands
            elif name.endswith(".json"):
                doc = _load_sidecar(path)
                if doc is None:
                    log.error("staging: unreadable sidecar %s kept as it is", path)
                    continue
                sidecars.append((int(doc.get("updated_ns") or 0), name[:-5], doc))
        with self._lock:
            live = {e.id for e in self._entries.values()}
            live_urls = set(self._entries)
        taken: list[_Entry] = []
        kept_ids = set(live)
        for _, ident, doc in sorted(sidecars, key=lambda s: s[0], reverse=True):
            if ident in live:
                continue
            if doc["url"] in live_urls:  # opened before recovery: keep both for the next one
                log.error("staging: %s was opened before its staged copy was recovered",
                          safe_url(doc["url"]))
                kept_ids.add(ident)
                continue
            entry = self._take_over(fs, ident, doc)
            if entry is not None:
                taken.append(entry)
                kept_ids.add(ident)
        for name in names:  # data without a sidecar: a copy that was never handed out
            if name.endswith(".data") and name[:-5] not in kept_ids:
                if not os.path.exists(os.path.join(self.directory, name[:-5] + ".json")):
                    unlink_quietly(os.path.join(self.directory, name))
        self._sync_dir()
        for entry in taken:
            if wait:
                with entry.lock:
                    try:
                        self._upload(entry)
                    except OSError:
                        continue
                    self._settle(entry)
            else:
                with self._lock:
                    self._schedule(entry, 0.0)
        return len(taken)

    def _take_over(self, fs: fsspec.AbstractFileSystem, ident: str, doc: dict[str, Any]) -> _Entry | None:
        url = doc["url"]
        entry = _Entry(self, fs, url, ident)
        with self._lock:
            duplicate = url in self._entries
        try:
            fd = os.open(entry.data, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = -1
        if duplicate or fd < 0:  # an older sidecar of a URL (a newer one was taken), or no data
            if fd >= 0:
                os.close(fd)
            unlink_quietly(entry.sidecar)
            unlink_quietly(entry.data)
            return None
        entry.fd = fd
        entry.refcount = 0
        entry.may_leave_parts = True  # the crash may have cut an upload short
        entry.state = doc.get("state", PENDING)
        entry.attempts = int(doc.get("attempts") or 0)
        entry.last_error = doc.get("last_error")
        entry.generation = int(doc.get("generation") or 0)
        clean = doc.get("clean")
        st = os.fstat(fd)
        if clean is not None and tuple(clean) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            os.close(fd)  # unchanged since it matched the object: nothing to upload
            unlink_quietly(entry.sidecar)
            unlink_quietly(entry.data)
            return None
        with self._lock:
            entry.uploaded = -1  # dirty: upload what the copy holds
            self._entries[url] = entry
        entry.ready.set()
        return entry

    def pending(self) -> list[dict[str, Any]]:
        """Uploads still owed (failed, or waiting for the background), for ``status``."""
        out = []
        with self._lock:
            for entry in self._entries.values():
                if entry.dropped or entry.fd < 0:
                    continue
                if entry.state == PENDING or (entry.refcount == 0 and entry.next_attempt is not None):
                    out.append({"url": safe_url(entry.url), "size": os.fstat(entry.fd).st_size,
                                "attempts": entry.attempts, "last_error": entry.last_error,
                                "state": entry.state, "open": entry.refcount > 0})
        return sorted(out, key=lambda d: d["url"])

    def close_all(self) -> int:
        """At shutdown: stop the retry thread, close every open staged file, make a last
        upload attempt of every changed copy; what fails stays on disk for the next
        `recover`. Returns how many uploads are still owed."""
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._lock:
            entries = list(self._entries.values())
        left = 0
        for entry in entries:
            entry.ready.wait()
            if entry.failed:
                continue
            for handle in list(entry.handles):
                try:
                    handle.close(upload=False)
                except OSError:
                    pass
            with entry.lock:
                try:
                    self._upload(entry)
                except OSError:
                    pass
                self._settle(entry)
                if not entry.dropped:
                    left += 1
                    with self._lock:
                        if entry.fd >= 0:
                            os.close(entry.fd)
                            entry.fd = -1
        with self._lock:
            self._entries.clear()
        os.close(self._dir_fd)
        os.close(self._lock_fd)  # releases the flock
        return left

    def __enter__(self) -> StagingArea:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()

    # ------------------------------------------------------------ disk and network

    def _write_sidecar(self, entry: _Entry) -> None:
        """Replace ``entry``'s sidecar atomically (unless it already says this). Holds
        ``entry.lock``."""
        with self._lock:
            if entry.dropped:
                return
            clean = entry.clean_sig
            said = (entry.url, entry.state, clean, entry.attempts, entry.last_error)
            doc = {"format": FORMAT, "url": entry.url, "state": entry.state,
                   "size": entry.sig[0] if entry.sig else 0, "generation": entry.generation,
                   "clean": list(clean) if clean else None, "attempts": entry.attempts,
                   "last_error": entry.last_error, "updated_ns": time.time_ns()}
        if said == entry.written:
            return
        temp = entry.sidecar + ".tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(doc).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, entry.sidecar)
        self._sync_dir()
        entry.written = said

    def _sync_dir(self) -> None:
        try:
            os.fsync(self._dir_fd)
        except OSError as e:
            log.warning("staging: fsync of %s failed: %s", self.directory, e)

    def _limit(self, size: int) -> float:
        return self.timeout + size / self.min_rate

    def _put_options(self, fs: fsspec.AbstractFileSystem, url: str) -> dict[str, Any]:
        """s3fs: our part size and concurrency, and a content type from the object's name
        (the staged file's own name says nothing)."""
        if "s3" not in protocols(fs):
            return {}
        options: dict[str, Any] = {"chunksize": self.part_size, "max_concurrency": self.upload_concurrency}
        kind = mimetypes.guess_type(posixpath.basename(url))[0]
        if kind:
            options["ContentType"] = kind
        return options

    def _abort_leftover_parts(self, entry: _Entry) -> None:
        """Abort the incomplete multipart uploads of the entry's key (S3 keeps, and bills,
        the parts of an upload that was cancelled by our time limit or cut by a crash; s3fs
        aborts only those that fail with an exception). Any started before this call is
        taken as one of ours: another machine uploading the same key at this moment would
        have its upload fail and retried."""
        if "s3" not in protocols(entry.fs):
            entry.may_leave_parts = False
            return
        bucket, key, _ = entry.fs.split_path(entry.url)
        listed = self._transfer(entry.fs, "call_s3", "list_multipart_uploads", Bucket=bucket, Prefix=key, size=0)
        for upload in listed.get("Uploads", []):
            if upload.get("Key") == key:
                self._transfer(entry.fs, "call_s3", "abort_multipart_upload", Bucket=bucket, Key=key,
                               UploadId=upload["UploadId"], size=0)
                log.info("aborted an incomplete upload of %s left by an earlier attempt", safe_url(entry.url))
        entry.may_leave_parts = False

    def _transfer(self, fs: fsspec.AbstractFileSystem, method: str, *args: Any, size: int, **kwargs: Any) -> Any:
        """``fs.<method>(*args)`` bounded in time. Async filesystems run the coroutine on
        their loop under ``wait_for``: on timeout it is cancelled and has finished before
        this returns (a late PUT of old bytes cannot land after a newer one). Client read
        timeouts alone do not bound it: a stalled server keeps a PUT waiting for its
        "100 Continue" past them."""
        limit = self._limit(size)
        if isinstance(fs, AsyncFileSystem) and not fs.asynchronous and fs.loop is not None:
            coro = getattr(fs, "_" + method)(*args, **kwargs)
            future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, limit), fs.loop)
            try:
                return future.result(limit + 60)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise TimeoutError(f"no answer within {limit:.0f} s") from None
        return getattr(fs, method)(*args, **kwargs)


# ------------------------------------------------------------------------------ the layer



class StagedIO(io.FileIO):
    """A Python file over a staged file's descriptor: ``flush()`` uploads (as fsync) and
    ``close()`` uploads and releases; both raise EIO if the upload fails."""

    def __init__(self, staged: StagedFile, mode: str) -> None:
        super().__init__(staged.fd, mode, closefd=False)
        self.staged = staged
        self._closing = False

    def write(self, data: Any) -> int:  # type: ignore[override]
        n = super().write(data)
        self.staged.mark_dirty()
        return n or 0

    def truncate(self, size: int | None = None) -> int:
        n = super().truncate(size)
        self.staged.mark_dirty()
        return n

    def flush(self) -> None:
        super().flush()
        if not self._closing and not self.closed and self.staged.writable:
            self.staged.flush()

    def close(self) -> None:
        if self.closed:
            return
        self._closing = True
        try:
            super().close()
        finally:
            self.staged.close()


class StagedLayer(Layer):
    """A remote overlay whose files are written through a `StagingArea`.

    Writes go to a staged copy served from a local descriptor (`open_file`,
    `open_staged`) and reach the object store on flush/fsync/close; while a copy is staged,
    its bytes and size are the file's (`stat`, reads, listings). Everything else is the
    inner layer's.
    """

    is_local = False
    #: `open_file` serves any file opened for writing from a local descriptor.
    serves_descriptors = True

    def __init__(self, inner: Layer, area: StagingArea) -> None:
        super().__init__(inner.fs, inner.root)
        self.inner = inner
        self.area = area

    # ------------------------------------------------------------ opening

    def open_staged(self, path: str, flags: int) -> StagedFile:
        """``path`` opened for the mount: read and write ``.fd``, ``.flush()`` on fsync and
        FUSE flush, ``.close()`` on release."""
        url = self.url(path)
        if flags & os.O_CREAT and flags & os.O_EXCL and self.area.staged_stat(url) is not None:
            raise FileExistsError(errno.EEXIST, "exists", path)

        def existing() -> int | None:
            if flags & os.O_CREAT and flags & os.O_TRUNC:
                return None  # empty either way: no need to ask
            st = self.inner.stat(path)
            if st is None:
                if not flags & os.O_CREAT:
                    raise FileNotFoundError(errno.ENOENT, "no such file", path)
                return None
            if st.is_dir:
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise FileExistsError(errno.EEXIST, "exists", path)
            return st.size

        return self.area.open(self.fs, url, flags, existing)

    def open_file(self, path: str, flags: int) -> OpenFile | None:
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            return self.open_staged(path, flags)
        staged = self.area.lookup(self.url(path))
        return staged if staged is not None else self.inner.open_file(path, flags)

    def open(self, path: str, mode: str) -> IO[bytes]:
        how = mode.replace("b", "").replace("t", "")
        if how == "r":
            staged = self.area.lookup(self.url(path))
            return self.inner.open(path, mode) if staged is None else StagedIO(staged, "rb")
        staged = self.open_staged(path, MODE_FLAGS[how])
        try:
            return StagedIO(staged, {"x": "w", "x+": "w+"}.get(how, how) + "b")
        except BaseException:
            staged.close(upload=False)
            raise

    def create(self, path: str, mode: int = 0o666, flags: int | None = None) -> int | None:
        """A new empty staged file; its upload is left to the background (the caller opens
        and writes it next; that open's close uploads it, so no empty PUT first)."""
        if not path or self.stat(path) is not None:
            raise FileExistsError(errno.EEXIST, "exists", path)
        parent = posixpath.dirname(path)
        if parent:  # POSIX: the parent must be a directory already
            st = self.stat(parent)
            if st is None or not st.is_dir:
                raise OSError(errno.ENOENT if st is None else errno.ENOTDIR, "no parent directory", path)
        self.open_staged(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC).close(upload=False)
        return None

    def touch(self, path: str) -> None:
        """As the inner layer's (markers: one PUT now), unless the file is staged."""
        if self.area.staged_stat(self.url(path)) is None:
            self.inner.touch(path)

    # ------------------------------------------------------------ reading

    def stat(self, path: str) -> Stat | None:
        url = self.url(path)
        st = self.area.staged_stat(url)
        if st is not None:
            return _staged_stat(st)
        found = self.inner.stat(path)
        if found is None and self._staged_below(path):
            return _STAGED_DIR  # a directory only staged files make (not uploaded yet)
        return found

    def listdir(self, path: str) -> dict[str, int] | None:
        entries = self.scan(path)
        return None if entries is None else {name: S.S_IFMT(st.mode) for name, st in entries.items()}

    def scan(self, path: str) -> dict[str, Stat] | None:
        """The inner layer's entries of directory ``path`` with their attributes, staged
        copies' in place of their objects' (and those not uploaded yet added)."""
        scan = getattr(self.inner, "scan", None)
        if scan is not None:
            entries = scan(path)
        else:
            names = self.inner.listdir(path)
            entries = None if names is None else {
                name: self.inner.stat(posixpath.join(path, name) if path else name) for name in names}
            entries = None if entries is None else {k: v for k, v in entries.items() if v is not None}
        below = self._staged_below(path)
        if not below:
            return entries
        entries = dict(entries or {})
        base = self.url(path).rstrip("/") + "/"
        for url in below:
            first, _, rest = url[len(base):].partition("/")
            st = None if rest else self.area.staged_stat(url)
            if st is not None:
                entries[first] = _staged_stat(st)
            elif first not in entries:
                entries[first] = _STAGED_DIR
        return entries

    def _staged_below(self, path: str) -> list[str]:
        base = self.url(path).rstrip("/")
        return [u for u in self.area.staged_urls(base) if u != base]

    @property
    def object_store(self) -> bool:
        return bool(getattr(self.inner, "object_store", False))

    def __getattr__(self, name: str) -> Any:
        """Anything else the inner layer offers (called only for names not found here)."""
        if name in ("inner", "area") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------ changing

    def truncate(self, path: str, length: int) -> None:
        with self.open_staged(path, os.O_RDWR | (os.O_TRUNC if length == 0 else 0)) as staged:
            if length:
                staged.truncate(length)

    def remove(self, path: str) -> None:
        dropped = self.area.drop(self.url(path))
        try:
            self.inner.remove(path)
        except FileNotFoundError:
            if not dropped:
                raise

    def rename(self, src: str, dst: str) -> None:
        self.area.rename(self.url(src), self.url(dst), lambda: self._move(src, dst))

    def _move(self, src: str, dst: str) -> None:
        self.inner.rename(src, dst)

    def rmdir(self, path: str) -> None:
        if self._staged_below(path):
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        self.inner.rmdir(path)

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self.inner.mkdir(path, mode)

    # ------------------------------------------------------------ the inner layer's

    def open_fd(self, path: str, flags: int, mode: int = 0) -> int | None:
        return None

    def temp_path(self, path: str) -> str:
        return self.inner.temp_path(path)

    def clear_work_area(self) -> int:
        return self.inner.clear_work_area()

    def remove_leftovers(self) -> int:
        return self.inner.remove_leftovers()

    def chmod(self, path: str, mode: int) -> None:
        self.inner.chmod(path, mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.inner.chown(path, uid, gid)

    def utime(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self.inner.utime(path, atime_ns, mtime_ns)

    def symlink(self, target: str, path: str) -> None:
        self.inner.symlink(target, path)

    def readlink(self, path: str) -> str:
        return self.inner.readlink(path)

    def link(self, src: str, dst: str) -> None:
        self.inner.link(src, dst)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        self.inner.mknod(path, mode, device)

    def statfs(self) -> dict[str, int]:
        return self.inner.statfs()


# ------------------------------------------------------------------------------ helpers

_LOADED_NS = time.time_ns()
#: Directories only staged files make: a fixed time, so repeated stats agree.
_STAGED_DIR = Stat(mode=S.S_IFDIR | 0o755, size=0, mtime_ns=_LOADED_NS, atime_ns=_LOADED_NS,
                   ctime_ns=_LOADED_NS, nlink=2)


def _staged_stat(st: os.stat_result) -> Stat:
    """A staged copy's attributes as an object's (a regular file, 0644)."""
    return Stat(mode=S.S_IFREG | 0o644, size=st.st_size, mtime_ns=st.st_mtime_ns,
                atime_ns=st.st_atime_ns, ctime_ns=st.st_ctime_ns)



def _make_private_dir(directory: str) -> None:
    """Create ``directory`` (0700); an existing one must be ours, and is made 0700."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if not S.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise PermissionError(errno.EACCES, "staging directory not owned by this user", directory)
    if S.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def _reopen(fd: int, flags: int) -> int:
    """A new open file description of ``fd``'s file (its own offset and flags), even if the
    file was unlinked meanwhile."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _load_sidecar(path: str) -> dict[str, Any] | None:
    doc = read_json_object(path)
    if doc is None or doc.get("format") != FORMAT or not isinstance(doc.get("url"), str):
        return None
    return doc


def _check_url(url: str) -> None:
    """Credentials belong in the filesystem's options, never in a URL staged on disk."""
    if "://" in url and "@" in urlsplit(url).netloc:
        raise ValueError("a staged URL must not carry user info (credentials go in the filesystem options)")


_SECRET_NAME = re.compile(r"secret|password|passwd|token|key|credential|auth|signature", re.I)
_SECRET_TEXT = [
    (re.compile(r"(://)[^/@\s]+@"), r"\1***@"),
    (re.compile(r"((?:Credential|Signature|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)=)[^&,\s]+", re.I),
     r"\1***"),
]


def _secrets(fs: fsspec.AbstractFileSystem) -> Iterable[str]:
    """Strings that must never appear in a message: secret-looking storage options and
    AWS credentials from the environment."""

    def walk(value: Any, name: str = "") -> Iterable[str]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from walk(v, name)
        elif isinstance(value, str) and len(value) >= 4 and _SECRET_NAME.search(name):
            yield value

    yield from walk(getattr(fs, "storage_options", {}) or {})
    for name, value in os.environ.items():
        if name.startswith(("AWS_", "GOOGLE_", "AZURE_")) and _SECRET_NAME.search(name) and len(value) >= 4:
            yield value


def _describe(error: BaseException, fs: fsspec.AbstractFileSystem, limit: float) -> str:
    """A one-line account of ``error`` without credentials."""
    if isinstance(error, (TimeoutError, asyncio.TimeoutError)) and not str(error):
        text = f"no answer within {limit:.0f} s"
    else:
        text = f"{type(error).__name__}: {error}".strip()
    for secret in sorted(set(_secrets(fs)), key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
