"""What a running mount reports about itself (``copickfs status MOUNTPOINT``).

The daemon answers through a control file, ``MOUNTPOINT/.wh..wh.status``: names starting
with ``.wh.`` are reserved by the union (never listed, never created), so the name cannot
hide a user's file, and any tool reads it (`cat`). It is never listed; each open takes a
fresh JSON snapshot. It belongs to the daemon's user with mode 0400, so only that user
(and root) may read it: on an ``allow_other`` mount other users see nothing of the
config, the layers or the pending uploads.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from typing import Any

from .. import __version__
from ..config import CopickConfig, redacted

#: The reserved name of the control file, at the root of the mount.
STATUS_NAME = ".wh..wh.status"
#: Its inode number: out of the range `InodeTable` hands out.
STATUS_INO = (1 << 63) - 1

#: Keys of ``*_fs_args`` whose values are secrets (compared in lower case, as substrings).
_SECRET_KEYS = ("secret", "token", "password", "passwd", "key", "credential", "signature", "session")


def masked(value: Any, key: str = "") -> Any:
    """``value`` with every secret-looking entry replaced by ``"***"``, recursively."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, key) for v in value]
    if key and any(word in key.lower() for word in _SECRET_KEYS) and value not in (None, "", False):
        return "***"
    return value


def config_summary(config: CopickConfig) -> dict[str, Any]:
    """The config as the status shows it: roots without credentials, fs args masked."""
    return {"name": config.name, "overlay_root": redacted(config.overlay_root),
            "static_root": redacted(config.static_root) if config.static_root else None,
            "overlay_fs_args": masked(config.overlay_fs_args), "static_fs_args": masked(config.static_fs_args),
            "user_id": config.user_id, "session_id": config.session_id}


class Counters:
    """Requests and failures by kind (``errors`` keyed "op:ERRNO"), safe across the
    session's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def request(self, op: str) -> None:
        with self._lock:
            self.operations[op] = self.operations.get(op, 0) + 1

    def failure(self, op: str, code: int) -> None:
        key = f"{op}:{errno.errorcode.get(code, str(code))}"
        with self._lock:
            self.errors[key] = self.errors.get(key, 0) + 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"operations": dict(sorted(self.operations.items())), "errors": dict(sorted(self.errors.items()))}


class StatusReport:
    """Collects the status of one mount; `render` is called at each open of the control file."""

    def __init__(self, mountpoint: str, config: CopickConfig | None, options: Any,
                 describe_layers: Any = None) -> None:
        self.mountpoint = mountpoint
        self.config = config
        self.options = options
        self.describe_layers = describe_layers  # () -> dict, the storage's own account
        self.counters = Counters()
        self.started = time.time()
        self.open_files: Any = lambda: {"files": 0, "directories": 0}
        self.inodes: Any = lambda: 0

    def data(self) -> dict[str, Any]:
        options = self.options.model_dump() if hasattr(self.options, "model_dump") else {}
        return {
            "version": __version__, "pid": os.getpid(), "mountpoint": self.mountpoint,
            "started": self.started, "uptime_seconds": round(time.time() - self.started, 3),
            "config": config_summary(self.config) if self.config is not None else None,
            "options": masked(options),
            "layers": self.describe_layers() if self.describe_layers is not None else None,
            "open_files": self.open_files(), "inodes": self.inodes(),
            **self.counters.snapshot(),
        }

    def render(self) -> bytes:
        return json.dumps(self.data(), indent=1, default=str).encode() + b"\n"


def format_text(report: dict[str, Any]) -> str:
    """The human form of a status report (``copickfs status`` without ``--json``)."""
    opened = report.get("open_files") or {}
    lines = [f"copickfs {report.get('version')} (pid {report.get('pid')}) at {report.get('mountpoint')}",
             f"  up {_duration(report.get('uptime_seconds', 0))}; {opened.get('files', 0)} open file(s), "
             f"{opened.get('directories', 0)} open director(ies), {report.get('inodes', 0)} inode(s) known"]
    config = report.get("config") or {}
    layers = report.get("layers") or {}
    for name in ("overlay", "static"):
        layer = layers.get(name)
        if layer is None:
            lines.append(f"  {name}: none")
            continue
        lines.append(f"  {name}: {layer['url']}")
        cache = layer.get("cache")
        if cache:
            lines.append(f"    cache {cache['directory']}: {_size(cache['bytes_used'])} of {_size(cache['max_bytes'])}, "
                         f"{cache['hits']} hit(s), {cache['misses']} miss(es), {cache['gets']} GET(s), "
                         f"{cache['evictions']} eviction(s)")
        staging = layer.get("staging")
        if staging is not None:
            pending = staging["pending_uploads"]
            lines.append(f"    staging {staging['directory']}: {len(pending)} pending upload(s)")
            for item in pending:
                error = f" - {item['last_error']}" if item.get("last_error") else ""
                lines.append(f"      {item['url']} ({_size(item['size'])}, {item['attempts']} attempt(s)){error}")
    if config.get("name"):
        lines.insert(1, f"  project: {config['name']}")
    ops = report.get("operations") or {}
    if ops:
        lines.append("  requests: " + ", ".join(f"{k} {v}" for k, v in ops.items()))
    errors = report.get("errors") or {}
    lines.append("  errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "none"))
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


# ---------------------------------------------------------------- Prometheus

def prometheus_text(report: dict[str, Any]) -> str:
    """The report's counters in Prometheus's text exposition format (for node_exporter's
    textfile collector: ``-o metrics_file=/var/lib/node_exporter/textfile/copickfs.prom``)."""
    mount = {"mountpoint": str(report.get("mountpoint", ""))}
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP copickfs_{name} {help_text}")
        out.append(f"# TYPE copickfs_{name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in {**mount, **labels}.items())
            out.append(f"copickfs_{name}{{{text}}} {value:g}")

    metric("uptime_seconds", "gauge", "Seconds since the mount started.", [({}, report.get("uptime_seconds", 0))])
    metric("requests_total", "counter", "FUSE requests by operation.",
           [({"op": op}, n) for op, n in (report.get("operations") or {}).items()])
    errors = []
    for key, n in (report.get("errors") or {}).items():
        op, _, code = key.partition(":")
        errors.append(({"op": op, "errno": code}, n))
    metric("errors_total", "counter", "Failed FUSE requests by operation and errno.", errors)
    opened = report.get("open_files") or {}
    metric("open_handles", "gauge", "Open files and directories.",
           [({"kind": kind}, n) for kind, n in opened.items()])
    metric("inodes", "gauge", "Inodes the daemon keeps.", [({}, report.get("inodes", 0))])
    caches, pending = [], []
    for layer, info in (report.get("layers") or {}).items():
        if not info:
            continue
        if info.get("cache"):
            caches.append((layer, info["cache"]))
        if info.get("staging") is not None:
            pending.append(({"layer": layer}, len(info["staging"]["pending_uploads"])))
    for name, key, kind, help_text in (
            ("cache_bytes", "bytes_used", "gauge", "Bytes in the block cache of a remote static layer."),
            ("cache_max_bytes", "max_bytes", "gauge", "Bound of that cache."),
            ("cache_hits_total", "hits", "counter", "Blocks read from the cache."),
            ("cache_misses_total", "misses", "counter", "Blocks that had to be fetched."),
            ("cache_gets_total", "gets", "counter", "GET requests of the cache."),
            ("cache_fetched_bytes_total", "fetched_bytes", "counter", "Bytes the cache fetched."),
            ("cache_evictions_total", "evictions", "counter", "Entries the cache evicted.")):
        if caches:
            metric(name, kind, help_text, [({"layer": layer}, cache[key]) for layer, cache in caches])
    if pending:
        metric("pending_uploads", "gauge", "Uploads to a remote overlay still owed.", pending)
    return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsFile:
    """Writes `prometheus_text` to ``path`` every ``interval`` seconds and at the end,
    replacing it atomically (a collector never reads half a file)."""

    def __init__(self, report: StatusReport, path: str, interval: float) -> None:
        self.report, self.path, self.interval = report, path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="copickfs-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.write()

    def write(self) -> None:
        temp = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            with open(fd, "w") as f:  # 0644 whatever the daemon's umask (0: modes are the callers')
                f.write(prometheus_text(self.report.data()))
            os.replace(temp, self.path)
        except OSError as e:
            import logging

            logging.getLogger("copickfs.mount").warning("cannot write metrics to %s: %s", self.path, e.strerror)

    def _run(self) -> None:
        while True:
            self.write()
            if self._stop.wait(self.interval):
                return
