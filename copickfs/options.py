"""Mount options: the config's "copickfs" section, overridden by ``-o key=value``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class MountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entry_timeout: float = Field(1.0, ge=0, description="seconds the kernel caches a name lookup")
    attr_timeout: float = Field(1.0, ge=0, description="seconds the kernel caches attributes")
    negative_timeout: float = Field(0.0, ge=0, description="seconds the kernel caches a miss")
    static_timeout: float = Field(1.0, ge=0, description="seconds the kernel caches names, attributes and "
                                  "listings that only the static layer holds (0: no listing cache)")
    max_inodes: int = Field(100_000, ge=1000, description="inodes the daemon keeps before asking the kernel "
                            "to drop the least recently used (bounds its memory)")
    static_page_cache: bool = Field(True, description="keep static files in the page cache across opens")
    writeback_cache: bool = Field(False, description="let the kernel gather writes in the page cache: "
                                  "faster writes; other machines see them after close or fsync, and "
                                  "closing a file unlinked while open fails with EIO")
    read_ahead_kb: int = Field(1024, ge=0, description="kernel read-ahead of the mount (0 keeps the default)")
    allow_other: bool = Field(False, description="let other users use the mount")
    ro: bool = Field(False, description="mount read-only")
    threads: bool = Field(True, description="serve requests on several threads")
    debug: bool = Field(False, description="log every FUSE request")
    log: str | None = Field(None, description="file the daemon logs to")
    precomputed: bool = Field(True, description="serve every chunk of a precomputed pyramid under all four names")
    precomputed_layout: Literal["stored", "flat", "nested"] = Field(
        "stored", description="what listings inside precomputed pyramids show: one name per chunk")


class OptionError(ValueError):
    """A bad ``-o`` option; the message is one line naming it."""


def parse_option_string(text: str) -> dict[str, Any]:
    """``"a=1,b"`` -> ``{"a": "1", "b": True}``; ``nofoo`` and ``foo=false`` switch a flag off."""
    result: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep and key.startswith("no") and key[2:] in MountOptions.model_fields:
            result[key[2:]] = False
        else:
            result[key] = value if sep else True
    return result


def merge_options(base: MountOptions, overrides: dict[str, Any]) -> MountOptions:
    """Apply command-line overrides; `OptionError` names an unknown or bad option."""
    for key in overrides:
        if key not in MountOptions.model_fields:
            known = ", ".join(sorted(MountOptions.model_fields))
            raise OptionError(f"-o {key}: unknown mount option (known: {known})")
    try:
        return MountOptions.model_validate({**base.model_dump(), **overrides})
    except ValidationError as e:
        first = e.errors()[0]
        raise OptionError(f"-o {first['loc'][0]}: {first['msg']}") from None
