"""The copick config file, which is also the mount's input (see the README).

Pydantic models of what is on disk, and the checks that must pass before anything is
mounted. Every failure is a `ConfigError` whose message is one line naming the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

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
    overlay_root: str
    static_root: str | None = None
    overlay_fs_args: dict[str, Any] = Field(default_factory=dict)
    static_fs_args: dict[str, Any] = Field(default_factory=dict)
    copickfs: MountOptions = Field(default_factory=MountOptions)


def parse_config(data: Any, source: str = "config") -> CopickConfig:
    """Validate a decoded config; `ConfigError` names the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    kind = data.get("config_type", "filesystem")
    if kind != "filesystem":
        raise ConfigError(f"{source}: config_type {kind!r} is not supported (copickfs needs 'filesystem')")
    try:
        return CopickConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_first_error(e)}") from None


def load_config(path: str | os.PathLike[str]) -> CopickConfig:
    """Read and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: config path is a directory, not a file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    return parse_config(data, str(path))


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "config"
    if first["type"] == "missing":
        return f"{field}: required field is missing"
    return f"{field}: {first['msg']}"


def local_root(url: str) -> str | None:
    """The absolute local path of a root URL, or None for remote storage."""
    for prefix in ("file://", "local://"):
        if url.startswith(prefix):
            url = url[len(prefix):]
            break
    else:
        if "://" in url:
            return None
    return os.path.realpath(os.path.expanduser(url))


def check_roots(config: CopickConfig) -> None:
    """The roots must exist and must not contain each other (nothing static may be written)."""
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


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root
