"""Mount options: the config's "copickfs" section, overridden by ``-o key=value``.

The config section is JSON, so its values must have their JSON types (a number, ``true`` or
``false``, a string); ``-o`` values are text and are read here, each kind by its own rule.
Every failure is an `OptionError` whose message is one line naming the option.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_TIMEOUT = 31_536_000  # one year, in seconds: longer is never meant and overflows nothing
MAX_READ_AHEAD_KB = 1_048_576  # 1 GiB

_TIMEOUT = f"; 0 to {MAX_TIMEOUT} (one year)"


class MountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    entry_timeout: float = Field(1.0, ge=0, le=MAX_TIMEOUT, allow_inf_nan=False,
                                 description="seconds the kernel caches a name lookup" + _TIMEOUT)
    attr_timeout: float = Field(1.0, ge=0, le=MAX_TIMEOUT, allow_inf_nan=False,
                                description="seconds the kernel caches attributes" + _TIMEOUT)
    negative_timeout: float = Field(0.0, ge=0, le=MAX_TIMEOUT, allow_inf_nan=False,
                                    description="seconds the kernel caches a miss" + _TIMEOUT)
    static_timeout: float = Field(86400.0, ge=0, le=MAX_TIMEOUT, allow_inf_nan=False,
                                  description="seconds the kernel caches names, attributes and listings "
                                  "that only the static layer holds (0: listings are not cached)" + _TIMEOUT)
    max_inodes: int = Field(100_000, ge=1000, le=100_000_000,
                            description="inodes the daemon keeps before it asks the kernel to drop the "
                            "least recently used (bounds its memory)")
    static_page_cache: bool = Field(True, description="keep static files in the page cache across opens")
    writeback_cache: bool = Field(True, description="let the kernel gather writes in the page cache: "
                                  "faster writes; other machines see them after close or fsync (off by "
                                  "default for an object-store overlay, which other machines share)")
    read_ahead_kb: int = Field(1024, ge=0, le=MAX_READ_AHEAD_KB,
                               description="kernel read-ahead of the mount in KiB (0 keeps the kernel's "
                               f"default; at most {MAX_READ_AHEAD_KB}, 1 GiB)")
    allow_other: bool = Field(False, description="let other users use the mount")
    ro: bool = Field(False, description="mount read-only")
    threads: bool = Field(True, description="serve requests on several threads")
    debug: bool = Field(False, description="log every FUSE request")
    log: str | None = Field(None, min_length=1, description="file the daemon logs to (appended to; a "
                            "relative path is taken from the working directory of `copickfs mount`)")
    cache_dir: str | None = Field(None, min_length=1, description="where a remote static root's data is "
                                  "cached (default: ~/.cache/copickfs, /var/cache/copickfs as root); reused "
                                  "by the next mount")
    cache_size: str = Field("10G", pattern=r"^\d{1,15}[KMGT]?$", description="bound of that cache: bytes, or "
                            "with a K, M, G or T suffix (powers of 1024)")
    staging_dir: str | None = Field(None, min_length=1, description="where writes to a remote overlay are "
                                    "staged until uploaded (default: ~/.local/state/copickfs/staging, "
                                    "/var/lib/copickfs/staging as root); pending uploads are resumed from it")
    upload_timeout: float = Field(60.0, ge=1, le=3600, allow_inf_nan=False,
                                  description="seconds a request to a remote overlay may wait for an answer, "
                                  "and an upload to (or download from) it may take plus one per MiB, before "
                                  "it fails with EIO (a failed upload is kept and retried in the background); "
                                  "1 to 3600")
    metrics_file: str | None = Field(None, min_length=1, description="write the status counters in Prometheus "
                                     "text format to this file (for node_exporter's textfile collector)")
    metrics_interval: float = Field(15.0, ge=1, le=3600, allow_inf_nan=False,
                                    description="seconds between two writes of metrics_file; 1 to 3600")
    precomputed: bool = Field(True, description="serve every chunk of a precomputed pyramid under all four names")
    precomputed_layout: Literal["stored", "flat", "nested"] = Field(
        "stored", description="what listings inside precomputed pyramids show: one name per chunk")
    mrc: bool = Field(True, description="beside every OME-Zarr volume of the copick project, show a read-only "
                      "MRC file made from its chunks (wbp.zarr -> wbp.mrc)")
    mrc_levels: str = Field("0", pattern=r"^\d{1,2}([:,]\d{1,2}){0,15}$",
                            description="which levels of each volume get an MRC file, separated by ':' "
                            "(',' in the config file): level 0 is <name>.mrc, level k <name>.bin<2^k>.mrc")
    mrc_cache_size: str = Field("1G", pattern=r"^\d{1,15}[KMGT]?$",
                                description="bound of the decoded chunks the MRC files share in the "
                                "daemon's memory (bytes, or with K, M, G or T)")

    @field_validator("log", "metrics_file")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("a path cannot contain a NUL character")
        return value


def levels_of(text: str) -> tuple[int, ...]:
    """``"0:1"`` (or ``"0,1"``) -> ``(0, 1)`` (the ``mrc_levels`` spelling)."""
    return tuple(sorted({int(part) for part in re.split(r"[:,]", text)}))


def size_bytes(text: str) -> int:
    """``"10G"`` -> 10 * 1024**3 (the ``cache_size`` spelling)."""
    factor = 1024 ** ("KMGT".index(text[-1]) + 1) if text[-1] in "KMGT" else 1
    return int(text.rstrip("KMGT")) * factor


class OptionError(ValueError):
    """A bad ``-o`` option; the message is one line naming it."""


_FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d{1,30}")
_VALUE_HINT = {float: "SECONDS", int: "N", str: "VALUE"}


def _kind(name: str) -> type:
    annotation = MountOptions.model_fields[name].annotation
    if annotation in (bool, float, int):
        return annotation  # type: ignore[return-value]
    return str  # str | None and the Literal choices are text


#: Options mount(8), fstab and systemd pass that are not copickfs's: accepted and ignored
#: (the kernel applies nosuid/nodev to FUSE mounts on its own).
MOUNT8_OPTIONS = frozenset({
    "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail", "_netdev",
    "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "atime", "noatime", "relatime",
    "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
    "sync", "async", "dirsync", "mand", "nomand", "silent", "loud", "iversion", "noiversion",
})
MOUNT8_PREFIXES = ("x-", "comment=", "helper=")
#: overlayfs's options: a union of plain directories without a config file.
UNION_DIRS = ("lowerdir", "upperdir", "workdir")


def split_mount_options(option_strings: tuple[str, ...] | list[str]) -> tuple[list[str], dict[str, str]]:
    """``-o`` strings as given to ``copickfs mount`` or by mount(8): copickfs's own options
    (for `parse_option_string`), and the overlayfs-style directories; mount(8)'s generic
    options are dropped."""
    ours: list[str] = []
    dirs: dict[str, str] = {}
    for text in option_strings:
        kept = []
        for raw in text.split(","):
            item = raw.strip()
            key, sep, value = item.partition("=")
            if item in MOUNT8_OPTIONS or item.startswith(MOUNT8_PREFIXES):
                continue
            if key in UNION_DIRS:
                if not sep or not value:
                    raise OptionError(f"-o {key}: needs a directory ({key}=DIR)")
                if key in dirs and dirs[key] != value:
                    raise OptionError(f"-o {key}: given twice ({dirs[key]!r} and {value!r})")
                dirs[key] = value
                continue
            kept.append(raw)
        if kept:
            ours.append(",".join(kept))
    return ours, dirs


def parse_option_string(text: str) -> dict[str, Any]:
    """``"a=1,b"`` -> ``{"a": 1.0, "b": True}``, each value converted to its option's type.

    Flags take no value (on), ``noFLAG`` (off) or one of true/false, yes/no, on/off, 1/0.
    Other options need ``=VALUE``. Empty items (``a,,b``) and empty values are errors.
    """
    result: dict[str, Any] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise OptionError(f"-o {text!r}: empty option (write OPT[=VAL] items separated by single commas)")
        key, sep, value = item.partition("=")
        if key not in MountOptions.model_fields:
            if not sep and key.startswith("no") and key[2:] in MountOptions.model_fields \
                    and _kind(key[2:]) is bool:
                result[key[2:]] = False
                continue
            known = ", ".join(sorted(MountOptions.model_fields))
            raise OptionError(f"-o {key}: unknown mount option (known: {known})")
        result[key] = _convert(key, value if sep else None)
    return result


def _convert(key: str, value: str | None) -> Any:
    kind = _kind(key)
    if kind is bool:
        if value is None:
            return True
        if value.lower() in _FLAG_WORDS:
            return _FLAG_WORDS[value.lower()]
        raise OptionError(f"-o {key}: a flag takes no value or one of true/false, yes/no, on/off, 1/0; "
                          f"got {value!r}")
    if value is None:
        raise OptionError(f"-o {key}: needs a value ({key}={_VALUE_HINT[kind]})")
    if value == "":
        raise OptionError(f"-o {key}: empty value")
    if kind is float:
        if not _DECIMAL.fullmatch(value):
            raise OptionError(f"-o {key}: {value!r} is not a decimal number of seconds")
        return float(value)
    if kind is int:
        if not _INTEGER.fullmatch(value):
            raise OptionError(f"-o {key}: {value!r} is not a whole number")
        return int(value)
    return value


def merge_options(base: MountOptions, overrides: dict[str, Any]) -> MountOptions:
    """Apply command-line overrides; `OptionError` names an unknown or bad option."""
    for key in overrides:
        if key not in MountOptions.model_fields:
            known = ", ".join(sorted(MountOptions.model_fields))
            raise OptionError(f"-o {key}: unknown mount option (known: {known})")
    try:
        # only what was given: ``model_fields_set`` then tells a default from a choice (the
        # daemon turns writeback off for an object-store overlay unless it was chosen)
        return MountOptions.model_validate({**base.model_dump(exclude_unset=True), **overrides})
    except ValidationError as e:
        first = e.errors()[0]
        raise OptionError(f"-o {first['loc'][0]}: {first['msg']}") from None


def check_output_files(options: MountOptions) -> None:
    """The log file must be creatable or appendable, and the metrics file replaceable;
    checked before mounting, nothing created."""
    if options.log is not None:
        _check_output_file("log", options.log)
    if options.metrics_file is not None:
        _check_output_file("metrics_file", options.metrics_file, replaced=True)


def _check_output_file(field: str, path: str, replaced: bool = False) -> None:
    directory = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise OptionError(f"{field}: {path} is a directory, not a file")
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.lexists(directory) else "does not exist"
        raise OptionError(f"{field}: {path}: the directory {directory} {what}")
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise OptionError(f"{field}: {path}: {e.strerror}") from None
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) and not replaced):  # a FIFO would block the start
            raise OptionError(f"{field}: {path} is not a regular file")
        if not replaced and not os.access(path, os.W_OK):
            raise OptionError(f"{field}: {path} is not writable")
    if (replaced or not os.path.lexists(path)) and not os.access(directory, os.W_OK | os.X_OK):
        raise OptionError(f"{field}: {path}: cannot create a file in {directory}")
