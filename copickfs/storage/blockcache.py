"""A bounded local cache of remote objects' bytes, kept in blocks, reused by the next mount.

Why: a remote static root is immutable, so whatever was fetched once can be served again
from a local file, by descriptor like a local layer (pread, splice), by this mount and the
next. Large objects are fetched in blocks with parallel ranged GETs and sequential
read-ahead; small ones (zarr chunks, JSON) whole, with one GET. A sequential reader's
read-ahead window doubles with each read that continues the last (as the kernel's does),
and contiguous missing blocks of an aligned group of ``blocks_per_get`` go out as one
ranged GET: each request's latency (and a server's per-request cost) is paid per 32 MiB of
read-ahead, not per 4, while the block a reader waits for is fetched on its own.

The cache directory (0700, the daemon's own)::

    lock                     flock: shared by every BlockCache using the directory;
                             exclusive only while one starts or stops alone
    boot                     boot id of a session that may have left unsynced data
                             (absent: everything reached the disk)
    entries/ab/<key>.data    the object's bytes: a sparse file of the object's full size
    entries/ab/<key>.meta    JSON sidecar: format, size, block size, the bitmap of blocks
                             present (hex), the URL without credentials; replaced by
                             rename, written only after the blocks' bytes; its mtime is
                             the entry's last access (for the next mount's LRU order)

``<key>`` hashes (protocol + endpoint, URL, version, size): no file name or content holds
a credential; URLs lose their user info (and http query strings) before they are written.

Locking: whoever uses an entry holds a shared flock on its ``.data`` file. Eviction takes
an exclusive flock without waiting, so it skips entries in use by any process, and
unlinks the sidecar before the data (a sidecar never outlives its data). Opening
re-checks that the locked file still has a name. Eviction only unlinks: descriptors
already handed out keep reading the evicted bytes.

Lock order in a process: an entry's lock, then the cache's lock; never the other way.

Caveats:

- The size bound counts what this process knows: entries on disk when it started, plus
  the blocks it fetches or finds in sidecars. Two mounts sharing a directory may
  together exceed it until one restarts.
- Open entries (in any process) are never evicted: when every entry is open, or one open
  object is larger than the bound, the cache exceeds the bound until they close.
- Blocks are not fsynced. The last user to close syncs the filesystem and removes
  ``boot``; a directory whose ``boot`` names an earlier boot was left by a machine crash
  and is emptied at start, as its sidecars may claim bytes that never reached the disk.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import fsspec

from .files import read_json_object, safe_url, unlink_quietly

MiB = 1 << 20
FORMAT = 1
_O_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW
_log = logging.getLogger(__name__)


# ---------------------------------------------------------------- names and keys

def default_cache_dir() -> str:
    """Where a mount keeps its cache unless told: the user's cache directory (XDG), or
    /var/cache for root, whose daemon serves everyone."""
    if os.geteuid() == 0:
        return "/var/cache/copickfs"
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # XDG: a relative value is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "copickfs")


def _namespace(fs: fsspec.AbstractFileSystem) -> str:
    """Which storage a URL lives in: the same bucket name on two endpoints is two objects."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    options = getattr(fs, "storage_options", None) or {}
    endpoint = (options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
                or getattr(fs, "endpoint_url", None) or "")
    return f"{protocol}|{safe_url(str(endpoint))}"


def entry_key(fs: fsspec.AbstractFileSystem, url: str, version: str, size: int) -> str:
    """The cache's name for one version of one object (a hash: no credential survives it)."""
    text = json.dumps([_namespace(fs), url, version, size])
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"  # no crash detection where the kernel does not tell


# ---------------------------------------------------------------- small file helpers

def _replace_file(path: str, text: str) -> None:
    """Write-then-rename, so a crash leaves the old file or the new one, never half of one."""
    temp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_FLAGS, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        unlink_quietly(temp)
        raise


def _subdirs(path: str) -> list[str]:
    return [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]


def _allocated(path: str) -> int:
    try:
        return os.stat(path, follow_symlinks=False).st_blocks * 512
    except FileNotFoundError:
        return 0


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _open_locked(path: str) -> int:
    """``path`` (created if missing) under a shared flock, re-opened if an evictor unlinked
    it while we waited for the lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink > 0:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _syncfs(fd: int) -> None:
    """Flush the cache's filesystem (syncfs(2)), or everything where that is missing."""
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0:
            return
    except (OSError, AttributeError):
        pass
    os.sync()


def _span_mask(first: int, last: int) -> int:
    return ((1 << (last - first + 1)) - 1) << first


def _present_bytes(bits: int, size: int, block: int) -> int:
    """Bytes held by the blocks set in ``bits`` (the last block may be short)."""
    if not bits:
        return 0
    nblocks = -(-size // block)
    count = bits.bit_count() * block
    if bits >> (nblocks - 1) & 1:
        count -= nblocks * block - size
    return count


# ---------------------------------------------------------------- one entry

class _Entry:
    """One cached object as this process holds it: its locked data file and block bitmap.

    ``bits`` (bit i: block i present) and ``inflight`` (block -> fetch under way) are
    guarded by ``lock``; ``refs`` (open files and running fetches) by the cache's lock.
    """

    def __init__(self, key: str, paths: tuple[str, str], fs: fsspec.AbstractFileSystem, url: str,
                 size: int, block_size: int, fd: int, bits: int) -> None:
        self.key = key
        self.data_path, self.meta_path = paths
        self.fs = fs
        self.source = url  # as given: what we GET
        self.url = safe_url(url)  # what we say and write down
        self.size = size
        self.block_size = block_size
        self.nblocks = -(-size // block_size)
        self.fd = fd
        self.bits = bits
        self.lock = threading.Lock()
        self.inflight: dict[int, Future[None]] = {}
        self.refs = 0

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Byte range [start, end) of blocks first..last."""
        return first * self.block_size, min(self.size, (last + 1) * self.block_size)

    def present_bytes(self) -> int:
        return _present_bytes(self.bits, self.size, self.block_size)

    def has(self, first: int, last: int) -> bool:
        mask = _span_mask(first, last)
        return self.bits & mask == mask

    def missing(self, first: int, last: int) -> list[int]:
        with self.lock:
            return [b for b in range(first, last + 1) if not self.bits >> b & 1]

    def disk_bits(self) -> int:
        return bits_of(read_json_object(self.meta_path), self.size, self.block_size)[0]

    def sidecar(self) -> str:
        return json.dumps({"format": FORMAT, "url": self.url, "size": self.size,
                           "block_size": self.block_size, "blocks": format(self.bits, "x")})

    def close(self) -> None:
        """Record the last access (the sidecar's mtime) and drop the lock with the descriptor."""
        try:
            os.utime(self.meta_path)
        except OSError:
            pass
        os.close(self.fd)


def bits_of(meta: dict[str, Any] | None, size: int, default_block: int) -> tuple[int, int]:
    """(bitmap, block size) a sidecar records for an object of ``size``; (0, default) when it
    records nothing usable. An entry keeps the block size it was made with."""
    if not meta or meta.get("format") != FORMAT or meta.get("size") != size:
        return 0, default_block
    block = meta.get("block_size")
    if not isinstance(block, int) or block <= 0:
        return 0, default_block
    try:
        bits = int(meta.get("blocks", "0"), 16)
    except (TypeError, ValueError):
        return 0, default_block
    return bits & ((1 << -(-size // block)) - 1), block


# ---------------------------------------------------------------- open files

class CachedFile:
    """One open of a cached object: a read-only descriptor of its local copy, filled on
    demand by `ensure`. Shaped as the union's `OpenFile` (fd, ensure, sync, flush, close)."""

    def __init__(self, cache: BlockCache, entry: _Entry, fd: int) -> None:
        self.fd = fd
        self.size = entry.size
        self.url = entry.url
        self._cache = cache
        self._entry = entry
        self._last: int | None = None  # last block ensured, to spot sequential readers
        self.window = cache.readahead_blocks  # read-ahead in blocks; grows while reads are sequential
        self._lock = threading.Lock()
        self._closed = False

    def ensure(self, offset: int, length: int) -> None:
        """Block until [offset, offset+length) (clipped to the size) is readable from `fd`;
        OSError(EIO) when a fetch fails (nothing of it is marked present)."""
        self._cache._ensure(self, offset, length)

    def present(self, offset: int, length: int) -> bool:
        """Whether [offset, offset+length) is already local (no fetch needed)."""
        first, last = self._cache._blocks(self._entry, offset, length)
        with self._entry.lock:
            return first > last or self._entry.has(first, last)

    def _advance(self, first: int, last: int) -> int:
        """Note a read of blocks first..last; the read-ahead it earns in blocks: 0 unless it
        continues the previous read, then a window doubling up to the cache's maximum."""
        cache = self._cache
        with self._lock:
            previous, self._last = self._last, last
            if previous is None or not previous <= first <= previous + 1 or last <= previous:
                if previous is None or first != previous:  # not a re-read of the same block
                    self.window = cache.readahead_blocks
                return 0
            window = self.window
            self.window = min(max(window * 2, 1), cache.max_readahead_blocks)
            return window

    def sync(self, data_only: bool = False) -> None:
        """Nothing was written through this file."""

    def flush(self) -> None:
        """Nothing to upload."""

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.close(self.fd)
        self._cache._release(self._entry)

    def __enter__(self) -> CachedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- the cache

class BlockCache:
    """Remote objects' bytes in a local directory, bounded by ``max_bytes`` with
    least-recently-used eviction of whole entries (see the module's notes)."""

    def __init__(self, directory: str, max_bytes: int, block_size: int = 4 * MiB,
                 whole_file_below: int = 4 * MiB, workers: int = 8, readahead_blocks: int = 4,
                 max_readahead_blocks: int = 32, blocks_per_get: int = 8) -> None:
        if max_bytes < 0 or block_size <= 0 or workers <= 0 or readahead_blocks < 0 or blocks_per_get <= 0:
            raise ValueError("cache sizes and counts must be positive (max_bytes, readahead_blocks: >= 0)")
        self.directory = os.path.abspath(directory)
        self.max_bytes = max_bytes
        self.block_size = block_size
        self.whole_file_below = whole_file_below
        self.readahead_blocks = readahead_blocks
        self.max_readahead_blocks = max(max_readahead_blocks, readahead_blocks)
        self.blocks_per_get = blocks_per_get
        self._entries = os.path.join(self.directory, "entries")
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key -> bytes present; LRU first
        self._open: dict[str, _Entry] = {}
        self._used = 0
        self._counters = {"hits": 0, "misses": 0, "gets": 0, "fetched_bytes": 0, "evictions": 0}
        os.makedirs(self._entries, mode=0o700, exist_ok=True)
        self._dir_fd = self._lock_directory()
        self._scan()
        with self._lock:
            self._make_room(0)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="copickfs-cache")
        self._closed = False

    # ------------------------------------------------------------ public

    def open(self, fs: fsspec.AbstractFileSystem, url: str, size: int, version: str) -> CachedFile:
        """The cached copy of ``url`` (``size`` bytes; ``version`` names its content, e.g. an ETag)."""
        entry = self._acquire(fs, url, size, version)
        try:
            fd = os.open(entry.data_path, os.O_RDONLY | _O_FLAGS)  # our shared lock keeps the name
        except BaseException:
            self._release(entry)
            raise
        return CachedFile(self, entry, fd)

    def stats(self) -> dict[str, Any]:
        """Use and counters, for `copickfs status`: ``hits``/``misses`` count blocks asked for by
        `CachedFile.ensure`, ``gets``/``fetched_bytes`` what went over the network."""
        with self._lock:
            return {"directory": self.directory, "max_bytes": self.max_bytes, "bytes_used": self._used,
                    "entries": len(self._index), "open_entries": len(self._open), **self._counters}

    def close(self) -> None:
        """Stop fetching; the last user of the directory syncs it (see ``boot``)."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another user remains: it syncs when it stops
        else:
            _syncfs(self._dir_fd)
            unlink_quietly(os.path.join(self.directory, "boot"))
        os.close(self._dir_fd)

    def __enter__(self) -> BlockCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the directory

    def _paths(self, key: str) -> tuple[str, str]:
        base = os.path.join(self._entries, key[:2], key)
        return base + ".data", base + ".meta"

    def _lock_directory(self) -> int:
        """Share the directory with other mounts; alone, first recover and tidy it."""
        fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | _O_FLAGS, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        try:
            if alone:
                self._recover()
            fcntl.flock(fd, fcntl.LOCK_SH)
            _replace_file(os.path.join(self.directory, "boot"), _boot_id())  # unsynced from now on
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _recover(self) -> None:
        """Alone in the directory: empty it after a machine crash, else drop leftovers."""
        try:
            with open(os.path.join(self.directory, "boot")) as f:
                recorded = f.read().strip()
        except FileNotFoundError:
            recorded = None
        if recorded is not None and recorded != _boot_id():
            _log.warning("cache %s was not synced before a reboot: emptying it", self.directory)
            shutil.rmtree(self._entries)
            os.makedirs(self._entries, mode=0o700)
            return
        for sub in _subdirs(self._entries):
            names = set(os.listdir(sub))
            for name in names:
                stem, _, kind = name.rpartition(".")
                twin = {"data": stem + ".meta", "meta": stem + ".data"}.get(kind)
                if twin is None or twin not in names:  # temp files, halves of entries
                    unlink_quietly(os.path.join(sub, name))

    def _scan(self) -> None:
        """Index the entries on disk, least recently used first."""
        found = []
        for sub in _subdirs(self._entries):
            for item in os.scandir(sub):
                if not item.name.endswith(".meta"):
                    continue
                try:
                    mtime = item.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
                meta = read_json_object(item.path)
                size = meta.get("size") if meta else None
                if meta and meta.get("format") == FORMAT and isinstance(size, int):
                    bits, block = bits_of(meta, size, self.block_size)
                    nbytes = _present_bytes(bits, size, block)
                else:  # damaged, or another release's: count its disk use and evict it first
                    nbytes, mtime = _allocated(item.path[:-5] + ".data"), 0
                found.append((mtime, item.name[:-5], nbytes))
        for _, key, nbytes in sorted(found):
            self._index[key] = nbytes
            self._used += nbytes

    # ------------------------------------------------------------ entries

    def _acquire(self, fs: fsspec.AbstractFileSystem, url: str, size: int, version: str) -> _Entry:
        key = entry_key(fs, url, version, size)
        with self._lock:
            if self._closed:
                raise OSError(errno.EIO, "the cache is closed", safe_url(url))
            entry = self._open.get(key)
            if entry is None:
                entry = self._load_entry(key, fs, url, size)
                self._open[key] = entry
                self._adjust(key, entry.present_bytes() - self._index.get(key, 0))
            entry.refs += 1
            self._index.move_to_end(key)
        return entry

    def _load_entry(self, key: str, fs: fsspec.AbstractFileSystem, url: str, size: int) -> _Entry:
        paths = self._paths(key)
        os.makedirs(os.path.dirname(paths[0]), mode=0o700, exist_ok=True)
        fd = _open_locked(paths[0])
        try:
            if os.fstat(fd).st_size != size:  # a new data file: no sidecar may speak for it
                unlink_quietly(paths[1])
                os.ftruncate(fd, size)
                bits, block = 0, self.block_size
            else:
                bits, block = bits_of(read_json_object(paths[1]), size, self.block_size)
        except BaseException:
            os.close(fd)
            raise
        return _Entry(key, paths, fs, url, size, block, fd, bits)

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.refs -= 1
            if entry.refs:
                return
            del self._open[entry.key]
        entry.close()

    # ------------------------------------------------------------ accounting and eviction

    def _adjust(self, key: str, delta: int) -> None:
        """Add ``delta`` bytes to an entry's use (caller holds the cache's lock)."""
        self._index[key] = self._index.get(key, 0) + delta
        self._used += delta

    def _reserve(self, entry: _Entry, nbytes: int) -> None:
        """Make room for, and count, bytes about to be written."""
        with self._lock:
            self._make_room(nbytes)
            self._adjust(entry.key, nbytes)

    def _make_room(self, need: int) -> None:
        """Evict least recently used entries not open anywhere until ``need`` more bytes fit."""
        while self._used + need > self.max_bytes:
            victims, freed = [], 0
            for key, nbytes in self._index.items():
                if self._used + need - freed <= self.max_bytes:
                    break
                if key not in self._open:
                    victims.append(key)
                    freed += nbytes
            evicted = 0
            for key in victims:
                if self._evict(key):
                    self._used -= self._index.pop(key)
                    self._counters["evictions"] += 1
                    evicted += 1
                else:  # in use by another process: recently used indeed
                    self._index.move_to_end(key)
            if not evicted:
                return  # everything is open: overshoot until something closes

    def _evict(self, key: str) -> bool:
        """Remove an entry nobody holds (sidecar first); False if some process holds it."""
        data, meta = self._paths(key)
        try:
            fd = os.open(data, os.O_RDONLY | _O_FLAGS)
        except FileNotFoundError:
            unlink_quietly(meta)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            unlink_quietly(meta)
            unlink_quietly(data)
            return True
        finally:
            os.close(fd)

    # ------------------------------------------------------------ reading

    def _blocks(self, entry: _Entry, offset: int, length: int) -> tuple[int, int]:
        """Blocks first..last covering the range (first > last: nothing to read)."""
        end = min(entry.size, offset + length)
        if length <= 0 or offset >= end:
            return 0, -1
        if entry.size < self.whole_file_below:
            return 0, entry.nblocks - 1
        return offset // entry.block_size, (end - 1) // entry.block_size

    def _ensure(self, file: CachedFile, offset: int, length: int) -> None:
        entry = file._entry
        first, last = self._blocks(entry, offset, length)
        if first > last:
            return
        readahead = file._advance(first, last)
        missing = entry.missing(first, last)
        with self._lock:
            self._counters["hits"] += last - first + 1 - len(missing)
            self._counters["misses"] += len(missing)
            if entry.key in self._index:
                self._index.move_to_end(entry.key)
        futures: list[Future[None]] = []
        if missing:
            self._merge_disk(entry)  # another mount may have fetched them
            if entry.size < self.whole_file_below:
                futures = [f for f in (self._fetch(entry, 0, entry.nblocks - 1),) if f is not None]
            else:
                futures = self._fetch_runs(entry, first, last)
        if readahead and entry.size >= self.whole_file_below:
            # to the end of an aligned group of `blocks_per_get`: runs then never leave a
            # fragment of a group behind for a GET of its own
            end = -(-(last + 1 + readahead) // self.blocks_per_get) * self.blocks_per_get
            self._fetch_runs(entry, last + 1, min(entry.nblocks, end) - 1)
        _wait_all(futures)

    def _fetch_runs(self, entry: _Entry, first: int, last: int) -> list[Future[None]]:
        """Fetches covering blocks first..last: those under way are joined; the missing rest
        starts as runs of up to ``blocks_per_get`` contiguous blocks, one ranged GET each."""
        joined: dict[int, Future[None]] = {}
        runs: list[tuple[int, int, Future[None]]] = []
        with entry.lock:
            for block in range(first, last + 1):
                running = entry.inflight.get(block)
                if running is not None:
                    joined[id(running)] = running
                elif not entry.has(block, block):
                    if runs and runs[-1][1] == block - 1 and block % self.blocks_per_get:
                        runs[-1] = (runs[-1][0], block, runs[-1][2])
                    else:
                        runs.append((block, block, Future()))
                    entry.inflight[block] = runs[-1][2]
        for start, end, future in runs:
            self._start(entry, start, end, future)
        return [*joined.values(), *(future for _, _, future in runs)]

    def _merge_disk(self, entry: _Entry) -> None:
        with entry.lock:
            before = entry.present_bytes()
            entry.bits |= entry.disk_bits()
            gained = entry.present_bytes() - before
        if gained:
            with self._lock:
                self._adjust(entry.key, gained)

    def _fetch(self, entry: _Entry, first: int, last: int) -> Future[None] | None:
        """The fetch of blocks first..last: one already under way, a new one, or None if present."""
        with entry.lock:
            running = entry.inflight.get(first)
            if running is not None or entry.has(first, last):
                return running
            future: Future[None] = Future()
            for block in range(first, last + 1):
                entry.inflight[block] = future
        self._start(entry, first, last, future)
        return future

    def _start(self, entry: _Entry, first: int, last: int, future: Future[None]) -> None:
        """Run the fetch of blocks first..last (registered in flight under ``future``)."""
        with self._lock:
            entry.refs += 1  # the entry stays open while its fetch runs
        try:
            task = self._pool.submit(self._run, entry, first, last, future)
        except RuntimeError:  # shut down
            self._finish(entry, first, last, future, OSError(errno.EIO, "the cache is closed", entry.url))
            return
        task.add_done_callback(lambda t: t.cancelled() and self._finish(
            entry, first, last, future, OSError(errno.EIO, "the cache is closed", entry.url)))

    def _run(self, entry: _Entry, first: int, last: int, future: Future[None]) -> None:
        try:
            self._load(entry, first, last)
        except BaseException as e:  # handed to every waiter
            self._finish(entry, first, last, future, e)
        else:
            self._finish(entry, first, last, future, None)

    def _finish(self, entry: _Entry, first: int, last: int, future: Future[None],
                error: BaseException | None) -> None:
        with entry.lock:
            for block in range(first, last + 1):
                if entry.inflight.get(block) is future:
                    del entry.inflight[block]
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
        self._release(entry)

    def _load(self, entry: _Entry, first: int, last: int) -> None:
        """GET blocks first..last, write them, then mark them present."""
        start, end = entry.span(first, last)
        data = self._get(entry, start, end)
        self._reserve(entry, len(data))
        try:
            _pwrite_all(entry.fd, data, start)
        except OSError as e:
            with self._lock:
                self._adjust(entry.key, -len(data))
            raise OSError(errno.EIO, f"cannot write the local cache ({e.strerror})", entry.url) from e
        with entry.lock:
            before = entry.present_bytes()
            entry.bits |= _span_mask(first, last) | entry.disk_bits()
            gained = entry.present_bytes() - before
            self._write_sidecar(entry)
        with self._lock:
            self._adjust(entry.key, gained - len(data))

    def _get(self, entry: _Entry, start: int, end: int) -> bytes:
        whole = start == 0 and end == entry.size and entry.size < self.whole_file_below
        try:
            if whole:
                data = entry.fs.cat_file(entry.source)
            else:
                data = entry.fs.cat_file(entry.source, start=start, end=end)
        except Exception as e:
            reason = f"cannot fetch bytes {start}-{end} ({type(e).__name__})"
            raise OSError(errno.EIO, reason, entry.url) from e
        if len(data) != end - start:
            raise OSError(errno.EIO, f"object changed: {len(data)} bytes for {start}-{end}", entry.url)
        with self._lock:
            self._counters["gets"] += 1
            self._counters["fetched_bytes"] += len(data)
        return data

    def _write_sidecar(self, entry: _Entry) -> None:
        """Persist the bitmap (caller holds the entry's lock); on failure the blocks stay
        usable by this process and the next write tries again."""
        try:
            _replace_file(entry.meta_path, entry.sidecar())
        except OSError as e:
            _log.warning("cannot record cached blocks of %s: %s", entry.url, e.strerror)


def _wait_all(futures: list[Future[None]]) -> None:
    """Wait for every fetch; raise a fresh EIO (each waiter its own) for the first failure."""
    wait(futures)
    for future in futures:
        error = future.exception()
        if error is None:
            continue
        if isinstance(error, OSError) and error.errno == errno.EIO:
            raise OSError(errno.EIO, error.strerror, error.filename) from error
        raise OSError(errno.EIO, f"fetch failed ({type(error).__name__})") from error
