"""The copick config file, which is also the mount's input (see the README).

Pydantic models of what is on disk, and the checks that must pass before anything is
mounted. Every failure is a `ConfigError` whose message is one line naming the field.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import fsspec
import fsspec.implementations.local
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .options import MountOptions


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the culprit."""


_Channel = Annotated[int, Field(ge=0, le=255)]


class PickableObject(BaseModel):
    """An object type that can be picked or segmented (copick's PickableObject)."""

    model_config = ConfigDict(extra="allow")

    name: str
    is_particle: bool
    label: int | None = Field(default=None, ge=1)
    color: tuple[_Channel, _Channel, _Channel, _Channel] | None = None  # RGBA
    emdb_id: str | None = None
    pdb_id: str | None = None
    identifier: str | None = None
    map_threshold: float | None = None
    radius: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CopickConfig(BaseModel):
    """A copick project config of ``config_type`` "filesystem", plus copickfs's own section."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    config_type: Literal["filesystem"] = "filesystem"
    name: str | None = None
    description: str | None = None
    version: str | None = None
    pickable_objects: list[PickableObject] = Field(default_factory=list)
    user_id: str | None = None
    session_id: str | None = None
    overlay_root: str = Field(min_length=1)
    static_root: str | None = Field(default=None, min_length=1)  # null (or absent) for none
    overlay_fs_args: dict[str, Any] = Field(default_factory=dict)
    static_fs_args: dict[str, Any] = Field(default_factory=dict)
    copickfs: MountOptions = Field(default_factory=MountOptions)


MAX_CONFIG_BYTES = 16 * 2**20  # read no more (a config naming /dev/zero must not eat the memory)
MAX_DEPTH = 100  # nesting of JSON arrays and objects; a copick config needs a handful
MAX_NUMBER_DIGITS = 100  # longer integer literals are refused before Python converts them


def parse_config(data: Any, source: str = "config") -> CopickConfig:
    """Validate a decoded config; `ConfigError` names the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    _check_tree(data, source)
    kind = data.get("config_type", "filesystem")
    if kind != "filesystem":
        raise ConfigError(f"{source}: config_type {kind!r} is not supported (copickfs needs 'filesystem')")
    try:
        return CopickConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_first_error(e)}") from None


def _check_tree(data: Any, source: str) -> None:
    """No nesting deeper than MAX_DEPTH; every string valid Unicode without NUL (they become paths)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            top = where.split(".", 1)[0] or "config"
            raise ConfigError(f"{source}: {top}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"{where}.{key}" if where else key, source)
                stack.append((item, f"{where}.{key}" if where else str(key), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}.{index}", depth + 1) for index, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, where, source)


def _check_text(text: str, where: str, source: str) -> None:
    if "\0" in text:
        raise ConfigError(f"{source}: {where}: contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"{source}: {where}: contains a lone surrogate {text[e.start]!a} "
                          "(not valid Unicode)") from None


def load_config(path: str | os.PathLike[str]) -> CopickConfig:
    """Read and validate a config file (UTF-8 JSON, no duplicate keys)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: config path is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config is larger than {MAX_CONFIG_BYTES // 2**20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: config is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})"
                          ) from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_int)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except _JSONRefused as e:
        raise ConfigError(f"{path}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: config: nested deeper than {MAX_DEPTH} levels") from None
    return parse_config(data, str(path))


class _JSONRefused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JSONRefused(f"{key}: duplicate key (which one counts would be a guess)")
        result[key] = value
    return result


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _JSONRefused(f"invalid JSON: a number with {len(literal)} digits is too long")
    return int(literal)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "missing":
        return f"{field}: required field is missing"
    return f"{field}: {first['msg']}"


_LOCAL_PREFIXES = ("file://", "local://")


def _split_local(url: str) -> tuple[str, str] | None:
    """(prefix, path) of a local root URL, or None for other storage."""
    for prefix in _LOCAL_PREFIXES:
        if url.startswith(prefix):
            return prefix, url[len(prefix):]
    return None if "://" in url or "::" in url else ("", url)


def local_root(url: str) -> str | None:
    """The absolute local path of a root URL, or None for remote storage."""
    parts = _split_local(url)
    if parts is None:
        return None
    return os.path.realpath(os.path.expanduser(parts[1]))


def union_config(label: str, dirs: dict[str, str], base: str | None = None) -> CopickConfig:
    """The config of an overlayfs-style mount (``-o lowerdir=DIR,upperdir=DIR[,workdir=DIR]``):
    upperdir is the overlay root, lowerdir the static root. ``workdir`` is accepted for
    overlayfs's fstab lines and not needed: copy-ups are made in the upper directory's own
    ``.wh..wh.work`` (the same filesystem, so they are renamed into place atomically)."""
    if "upperdir" not in dirs:
        raise ConfigError("-o upperdir: missing (give lowerdir=DIR,upperdir=DIR; copickfs writes into upperdir)")
    lower = dirs.get("lowerdir")
    if lower is not None and ":" in lower:
        raise ConfigError(f"-o lowerdir={lower}: several lower directories are not supported "
                          "(copickfs stacks one upper directory on one lower directory)")
    for key in ("upperdir", "lowerdir", "workdir"):
        if key in dirs and not os.path.isdir(absolute_path(dirs[key], base)):
            raise ConfigError(f"-o {key}: {dirs[key]} is not an existing directory")
    return CopickConfig(name=label, overlay_root=absolute_path(dirs["upperdir"], base),
                        static_root=absolute_path(lower, base) if lower else None)


def absolute_path(path: str, base: str | None = None) -> str:
    """``path`` taken from ``base`` (default: the working directory) if it is relative."""
    if os.path.isabs(path):
        return path
    if base is None:
        try:
            base = os.getcwd()
        except OSError:
            raise ConfigError(f"{path}: a relative path, but the working directory is gone") from None
    return os.path.join(base, path)


def with_absolute_roots(config: CopickConfig, base: str | None = None) -> CopickConfig:
    """The config with relative local roots taken from ``base`` (default: the working directory).

    A daemon or a later ``chdir`` then finds the same directories the caller meant.
    """
    update: dict[str, str] = {}
    for field in ("overlay_root", "static_root"):
        url = getattr(config, field)
        parts = _split_local(url) if url else None
        if parts is None:
            continue
        prefix, path = parts
        if not path:
            raise ConfigError(f"{field}: {url!r} names no directory")
        absolute = absolute_path(os.path.expanduser(path), base)
        if absolute != path:
            update[field] = prefix + absolute
    return config.model_copy(update=update) if update else config


def check_roots(config: CopickConfig) -> None:
    """The roots must exist and must not contain each other (nothing static may be written)."""
    for field in ("overlay_root", "static_root"):
        url = getattr(config, field)
        if url is not None:
            _check_protocol(field, url)
            _check_fs_args(field, url, getattr(config, field.replace("_root", "_fs_args")))
    overlay = local_root(config.overlay_root)
    static = local_root(config.static_root) if config.static_root else None
    if config.static_root and static is not None and not os.path.isdir(static):
        raise ConfigError(f"static_root: {config.static_root} is not an existing directory")
    if overlay is not None and not os.path.isdir(overlay):
        raise ConfigError(f"overlay_root: {config.overlay_root} is not an existing directory")
    if overlay is None or static is None:
        return
    if overlay == static:
        raise ConfigError("overlay_root: must not be the same directory as static_root")
    if _inside(overlay, static):
        raise ConfigError(f"overlay_root: {config.overlay_root} lies inside static_root {config.static_root}")
    if _inside(static, overlay):
        raise ConfigError(f"static_root: {config.static_root} lies inside overlay_root {config.overlay_root}")


def _check_protocol(field: str, url: str) -> None:
    """Remote roots: the fsspec implementation must exist and be installed (nothing is contacted)."""
    if _split_local(url) is not None:
        return
    for part in url.split("::"):
        protocol, _ = fsspec.core.split_protocol(part)
        if protocol is None:
            continue
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{field}: {url}: storage {protocol!r} is not available ({reason})") from None


def _check_fs_args(field: str, url: str, fs_args: dict[str, Any]) -> None:
    """A local root stays local with its fs args (they reach fsspec, which could switch storage)."""
    if _split_local(url) is None or not fs_args:
        return
    args = field.replace("_root", "_fs_args")
    try:
        fs, _ = fsspec.core.url_to_fs(url, **fs_args)
    except Exception as e:  # fsspec raises what the storage's constructor raises
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{args}: not usable for {field} {url}: {reason}") from None
    if not isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        raise ConfigError(f"{args}: would make the local {field} {url} a {type(fs).__name__}")


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


def redacted(url: str) -> str:
    """``url`` without the ``user:password@`` part a URL may carry: for /proc/mounts, logs
    and messages (credentials given in ``*_fs_args`` are never printed at all)."""
    return _USERINFO.sub(r"\1", url)
