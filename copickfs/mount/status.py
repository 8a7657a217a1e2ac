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
