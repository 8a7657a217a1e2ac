"""The union table on object stores: test_union.py's rows re-run with S3 (moto's real S3
server, through s3fs) and memory:// as layers.

Backends (overlay / static): s3 / local, local / s3, s3 / s3 (one bucket: static under
``static/``, the overlay under a sibling prefix ``static-<id>/``), memory / local, and
s3-fresh / local (the s3 overlay through `FreshLayer` with a long ttl: the raw side's writes,
another machine's, drop its listings as if the ttl had passed).

The static tree (one per module, per kind; checked unchanged after every test, on S3 as
every key with its ETag):

    file.txt            b"static file\\n"
    link -> file.txt    (local only: object stores keep no symlinks)
    empty/              (a marker object ``empty/`` on S3)
    dir/a.txt           b"a" * 100            (``dir/`` has a marker on S3, ``dir/sub/`` none)
    dir/exec.sh
    dir/sub/deep.bin    300 000 random bytes
    long/<252 bytes>, long/<255 bytes>   names whose whiteouts need the long encoding
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import posixpath
import stat as S
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest

from conftest import build_static
from copickfs.storage.fresh import FreshLayer
from copickfs.union import FsspecLayer, LocalLayer, UnionFileSystem
from copickfs.union.layers import open_layer
from treehash import tree_digest

WH = ".wh."
OPQ = ".wh..wh..opq"
NAME252 = "m" * 248 + ".bin"  # 252 bytes: ".wh." + name would be 256
NAME255 = "n" * 251 + ".bin"
DEEP = os.urandom(300_000)
STATIC_FILES = {
    "file.txt": b"static file\n",
    "dir/a.txt": b"a" * 100,
    "dir/exec.sh": b"#!/bin/sh\necho hi\n",
    "dir/sub/deep.bin": DEEP,
    f"long/{NAME252}": b"252",
    f"long/{NAME255}": b"255",
}


def long_whiteout(name: str) -> str:
    return ".wh..wh.long." + hashlib.sha256(name.encode()).hexdigest()


def errno_of(excinfo: pytest.ExceptionInfo[BaseException]) -> int | None:
    return getattr(excinfo.value, "errno", None)


# ============================================================================ raw access to a layer


class Side:
    """One layer's storage seen directly (as another machine or tool would), not through the
    union: ``write``/``mkdir`` plant entries, ``names`` lists a directory with its markers,
    ``snapshot`` is everything (static must never change)."""

    kind: str
    url: str
    options: dict[str, Any] | None = None
    object_store = False

    def write(self, rel: str, data: bytes = b"") -> None:
        raise NotImplementedError

    def mkdir(self, rel: str) -> None:
        raise NotImplementedError

    def isfile(self, rel: str) -> bool:
        raise NotImplementedError

    def isdir(self, rel: str) -> bool:
        raise NotImplementedError

    def names(self, rel: str = "") -> set[str]:
        raise NotImplementedError

    def snapshot(self) -> Any:
        raise NotImplementedError


@dataclass
class LocalSide(Side):
    root: Path
    kind: str = "local"

    @property
    def url(self) -> str:  # type: ignore[override]
        return str(self.root)

    def write(self, rel: str, data: bytes = b"") -> None:
        (self.root / rel).write_bytes(data)

    def mkdir(self, rel: str) -> None:
        (self.root / rel).mkdir()

    def isfile(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def isdir(self, rel: str) -> bool:
        return (self.root / rel).is_dir() and not (self.root / rel).is_symlink()

    def names(self, rel: str = "") -> set[str]:
        return set(os.listdir(self.root / rel)) if self.isdir(rel) or not rel else set()

    def snapshot(self) -> Any:
        return tree_digest(str(self.root))


@dataclass
class S3Side(Side):
    fs: Any
    bucket: str
    prefix: str
    options: dict[str, Any] | None = None
    kind: str = "s3"
    object_store = True
    #: Called after each raw write (s3-fresh: the union's listings are dropped, as after the ttl).
    after_write: Any = None

    def _written(self) -> None:
        if self.after_write is not None:
            self.after_write()

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if rel else self.prefix

    def write(self, rel: str, data: bytes = b"") -> None:
        self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key(rel), Body=data)
        self._written()

    def mkdir(self, rel: str) -> None:
        self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key(rel) + "/", Body=b"")
        self._written()

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.fs.call_s3("head_object", Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return None

    def isfile(self, rel: str) -> bool:
        return self.head(self.key(rel)) is not None

    def has_marker(self, rel: str) -> bool:
        return self.head(self.key(rel) + "/") is not None

    def isdir(self, rel: str) -> bool:
        return bool(self.keys(rel))

    def keys(self, rel: str = "") -> dict[str, str]:
        """Every key below ``rel`` (recursive) with its ETag."""
        out: dict[str, str] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.key(rel) + "/"}
        while True:
            page = self.fs.call_s3("list_objects_v2", **kwargs)
            out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def names(self, rel: str = "") -> set[str]:
        prefix = self.key(rel) + "/"
        page = self.fs.call_s3("list_objects_v2", Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        names = {o["Key"][len(prefix):] for o in page.get("Contents", [])}
        names |= {p["Prefix"][len(prefix):-1] for p in page.get("CommonPrefixes", [])}
        return names - {""}

    def snapshot(self) -> Any:
        return self.keys()


@dataclass
class MemorySide(Side):
    fs: Any
    root: str
    kind: str = "memory"

    @property
    def url(self) -> str:  # type: ignore[override]
        return f"memory://{self.root}"

    def write(self, rel: str, data: bytes = b"") -> None:
        self.fs.pipe_file(f"{self.root}/{rel}", data)

    def mkdir(self, rel: str) -> None:
        self.fs.mkdir(f"{self.root}/{rel}", create_parents=False)

    def isfile(self, rel: str) -> bool:
        return self.fs.isfile(f"{self.root}/{rel}")

    def isdir(self, rel: str) -> bool:
        return self.fs.isdir(f"{self.root}/{rel}")

    def names(self, rel: str = "") -> set[str]:
        path = f"{self.root}/{rel}" if rel else self.root
        if not self.fs.isdir(path):
            return set()
        return {posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False)}

    def snapshot(self) -> Any:
        return {p: self.fs.cat(p) for p in self.fs.find(self.root)}


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def static_bucket(s3) -> Iterator[tuple[str, Any]]:
    """One bucket holding the static tree under ``static/`` (markers for ``dir/``, ``empty/``)."""
    fs = s3.filesystem(use_listings_cache=False)
    bucket = s3.new_bucket()
    fs.pipe({f"{bucket}/static/{rel}": data for rel, data in STATIC_FILES.items()})
    for marker in ("dir/", "empty/"):
        fs.call_s3("put_object", Bucket=bucket, Key=f"static/{marker}", Body=b"")
    yield bucket, fs


@pytest.fixture(scope="module")
def static_local(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("static")
    build_static(root)
    (root / "long").mkdir()
    for rel, data in STATIC_FILES.items():
        if rel.startswith("long/") or rel == "dir/sub/deep.bin":
            (root / rel).write_bytes(data)
    return root


@dataclass
class Env:
    fs: UnionFileSystem
    overlay: Side
    static: Side

    @property
    def remote_overlay(self) -> bool:
        return self.overlay.kind != "local"

    def fresh(self) -> UnionFileSystem:
        """Another union over the same roots (another process, another machine)."""
        return UnionFileSystem(self.overlay.url, self.static.url, overlay_options=self.overlay.options,
                               static_options=self.static.options)


BACKENDS = ["s3/local", "local/s3", "s3/s3", "memory/local", "s3-fresh/local"]


@pytest.fixture(params=BACKENDS)
def env(request, s3, tmp_path, static_bucket, static_local) -> Iterator[Env]:
    overlay_kind, static_kind = request.param.split("/")
    bucket, raw = static_bucket
    test_id = uuid.uuid4().hex[:8]
    if static_kind == "s3":
        static: Side = S3Side(raw, bucket, "static", s3.options())
    else:
        static = LocalSide(static_local)
    if overlay_kind in ("s3", "s3-fresh"):
        # a sibling prefix sharing static's leading characters: prefixes must be exact
        overlay: Side = S3Side(raw, bucket, f"static-{test_id}", s3.options())
    elif overlay_kind == "memory":
        mem = fsspec.filesystem("memory")
        mem.mkdir(f"/copickfs-{test_id}")
        overlay = MemorySide(mem, f"/copickfs-{test_id}")
    else:
        (tmp_path / "overlay").mkdir()
        overlay = LocalSide(tmp_path / "overlay")
    before = static.snapshot()
    if overlay_kind == "s3-fresh":
        fresh = FreshLayer(open_layer(overlay.url, overlay.options), ttl=60)
        overlay.after_write = fresh.invalidate  # type: ignore[attr-defined]
        union = UnionFileSystem(fresh, static.url, static_options=static.options)
    else:
        union = UnionFileSystem(overlay.url, static.url, overlay_options=overlay.options,
                                static_options=static.options)
    e = Env(union, overlay, static)
    try:
        yield e
    finally:
        if overlay_kind == "memory":
            overlay.fs.rm(overlay.root, recursive=True)  # type: ignore[attr-defined]
    assert static.snapshot() == before, "the static tree changed"


def static_has_link(env: Env) -> bool:
    return env.static.kind == "local"


def root_names(env: Env) -> list[str]:
    return sorted(["dir", "empty", "file.txt", "long"] + (["link"] if static_has_link(env) else []))


# ============================================================================ lookup


def test_layers_are_what_the_urls_say(env: Env) -> None:
    for side, layer in ((env.overlay, env.fs.overlay), (env.static, env.fs.static)):
        if isinstance(layer, FreshLayer):
            layer = layer.inner
        assert isinstance(layer, LocalLayer if side.kind == "local" else FsspecLayer)
        if side.kind == "s3":
            assert layer.object_store
            assert not layer.fs.dircache.use_listings_cache  # nothing stale from other machines


def test_lookup_overlay_wins_then_static(env: Env) -> None:
    fs = env.fs
    assert fs.layer_of("file.txt") == "static"
    assert fs.layer_of("dir/sub/deep.bin") == "static"
    assert fs.layer_of("dir/sub") == "static" and fs.info("dir/sub")["type"] == "directory"
    assert fs.layer_of("nothing") is None and fs.layer_of("dir/nothing") is None
    env.overlay.write("file.txt", b"mine")
    assert fs.layer_of("file.txt") == "overlay"
    assert fs.cat("file.txt") == b"mine"
    assert fs.info("file.txt")["size"] == 4


def test_lookup_whiteout_and_opaque_objects(env: Env) -> None:
    fs = env.fs
    env.overlay.write(WH + "file.txt")
    env.overlay.mkdir("dir")
    env.overlay.write("dir/" + WH + "sub")
    assert not fs.exists("file.txt")
    with pytest.raises(FileNotFoundError):
        fs.info("file.txt")
    assert not fs.exists("dir/sub") and not fs.exists("dir/sub/deep.bin")
    with pytest.raises(FileNotFoundError):
        fs.cat("dir/sub/deep.bin")
    assert fs.exists("dir/a.txt")
    assert fs.ls("dir", detail=False) == ["dir/a.txt", "dir/exec.sh"]
    # an opaque marker hides everything static below its directory
    env.overlay.write("dir/" + OPQ)
    env.overlay.write("dir/mine.txt", b"m")
    assert not fs.exists("dir/a.txt")
    assert fs.ls("dir", detail=False) == ["dir/mine.txt"]
    for name in (WH + "file.txt", "dir/" + OPQ, "dir/" + WH + "sub", WH + "nothing"):
        assert not fs.exists(name)


def test_overlay_file_over_static_dir_hides_the_dir(env: Env) -> None:
    env.overlay.write("dir", b"now a file")
    assert env.fs.info("dir")["type"] == "file"
    assert not env.fs.exists("dir/a.txt")


# ============================================================================ readdir


def test_readdir_merges_names_once_and_overlay_type_wins(env: Env) -> None:
    fs = env.fs
    env.overlay.mkdir("dir")
    env.overlay.write("dir/a.txt", b"overlay a")
    env.overlay.mkdir("dir/mine")
    env.overlay.write("empty", b"file over a static dir")
    env.overlay.write(WH + "file.txt")
    env.overlay.write("dir/.wh..wh.tmp.abc")
    root = fs.listdir_types("")
    assert sorted(root) == sorted(set(root_names(env)) - {"file.txt"})
    assert S.S_ISREG(root["empty"]) and S.S_ISDIR(root["dir"])
    assert fs.ls("dir", detail=False) == ["dir/a.txt", "dir/exec.sh", "dir/mine", "dir/sub"]
    assert fs.names("dir") == {"a.txt": "overlay", "exec.sh": "static", "mine": "overlay", "sub": "static"}
    details = {d["name"]: d for d in fs.ls("dir", detail=True)}
    assert details["dir/a.txt"]["size"] == len(b"overlay a")
    assert details["dir/mine"]["type"] == "directory"
    assert details["dir/sub"]["layer"] == "static" and details["dir/sub"]["type"] == "directory"
    assert details["dir/exec.sh"]["size"] == 18


def test_readdir_never_shows_markers(env: Env) -> None:
    fs = env.fs
    fs.rm("dir/a.txt")
    fs.rmdir("empty")
    fs.mkdir("empty")  # opaque
    listed = fs.ls("", detail=False) + fs.ls("dir", detail=False) + fs.ls("empty", detail=False)
    assert not [n for n in listed if posixpath.basename(n).startswith(WH)]
    assert fs.ls("empty", detail=False) == []
    assert WH + "a.txt" in env.overlay.names("dir")  # ...while the markers are plain objects
    assert OPQ in env.overlay.names("empty")


def test_ls_of_missing_and_of_file(env: Env) -> None:
    with pytest.raises(FileNotFoundError):
        env.fs.ls("nothing")
    assert env.fs.ls("file.txt", detail=False) == ["file.txt"]
    with pytest.raises(NotADirectoryError):
        env.fs.listdir_types("file.txt")
    assert env.fs.ls("", detail=False) == root_names(env)


def test_changes_by_other_writers_are_seen_at_once(env: Env) -> None:
    """No listing cache in the layers: the overlay is shared with other machines."""
    fs = env.fs
    fs.pipe("dir/new.txt", b"1")
    assert "dir/new.txt" in fs.ls("dir", detail=False)
    env.overlay.write("dir/other.txt", b"from elsewhere")
    env.overlay.write("dir/" + WH + "a.txt")
    assert fs.ls("dir", detail=False) == ["dir/exec.sh", "dir/new.txt", "dir/other.txt", "dir/sub"]
    assert fs.cat("dir/other.txt") == b"from elsewhere"
    env.overlay.write("dir/new.txt", b"22")
    assert fs.info("dir/new.txt")["size"] == 2 and fs.cat("dir/new.txt") == b"22"


# ============================================================================ read


def test_read_from_winning_layer(env: Env) -> None:
    fs = env.fs
    assert fs.cat("file.txt") == b"static file\n"
    assert fs.cat("dir/sub/deep.bin") == DEEP
    assert fs.cat("dir/sub/deep.bin", start=1000, end=1010) == DEEP[1000:1010]
    env.overlay.mkdir("dir")
    env.overlay.write("dir/a.txt", b"overlay")
    assert fs.cat("dir/a.txt") == b"overlay"
    with pytest.raises(IsADirectoryError):
        fs.open("dir", "rb")
    with pytest.raises(FileNotFoundError):
        fs.open("nothing", "rb")
    assert env.overlay.names() == {"dir"}  # reading copied nothing up


# ============================================================================ create, mkdir


def test_create_makes_missing_overlay_parents(env: Env) -> None:
    fs = env.fs
    fs.create("dir/sub/new.txt")
    assert env.overlay.isfile("dir/sub/new.txt")
    assert fs.layer_of("dir/sub/new.txt") == "overlay"
    assert sorted(fs.names("dir/sub")) == ["deep.bin", "new.txt"]
    with pytest.raises(FileExistsError):
        fs.create("dir/sub/new.txt")
    with pytest.raises(FileExistsError):
        fs.create("file.txt")
    with pytest.raises(FileNotFoundError):
        fs.create("nowhere/x")
    with pytest.raises(NotADirectoryError):
        fs.create("file.txt/x")


def test_mkdir_persists_while_empty(env: Env) -> None:
    fs = env.fs
    fs.mkdir("dir/sub/newdir", create_parents=False)
    fs.mkdir("top", create_parents=False)
    assert fs.info("dir/sub/newdir")["type"] == "directory"
    assert fs.ls("dir/sub/newdir") == [] and fs.ls("top") == []
    if env.overlay.kind == "s3":
        assert env.overlay.has_marker("dir/sub/newdir") and env.overlay.has_marker("top")  # "DIR/" objects
        assert set(env.overlay.keys("top")) == {f"{env.overlay.prefix}/top/"}  # the marker only
    assert OPQ not in env.overlay.names("dir/sub/newdir")
    # another union over the same roots sees the empty directories
    again = env.fresh()
    assert again.info("top")["type"] == "directory" and again.ls("dir/sub/newdir") == []
    assert "top" in again.ls("", detail=False)
    with pytest.raises(FileExistsError):
        fs.mkdir("dir", create_parents=False)
    with pytest.raises(FileNotFoundError):
        fs.mkdir("x/y", create_parents=False)
    # a directory emptied of its files stays, as POSIX directories do
    fs.pipe("top/f", b"1")
    fs.rm("top/f")
    assert fs.info("top")["type"] == "directory" and fs.ls("top") == []


# ============================================================================ copy-up


def test_append_copies_up_whole_file(env: Env) -> None:
    fs = env.fs
    with fs.open("dir/sub/deep.bin", "ab") as f:
        f.write(b"TAIL")
    assert fs.layer_of("dir/sub/deep.bin") == "overlay"
    assert fs.cat("dir/sub/deep.bin") == DEEP + b"TAIL"
    assert env.overlay.isfile("dir/sub/deep.bin")
    assert not [n for n in env.overlay.names("dir/sub") if n.startswith(WH)]  # no temporaries left


def test_truncate_and_write_copy_up(env: Env) -> None:
    fs = env.fs
    fs.truncate("file.txt", 6)
    assert fs.cat("file.txt") == b"static" and fs.layer_of("file.txt") == "overlay"
    fs.truncate("file.txt", 8)
    assert fs.cat("file.txt") == b"static\0\0"
    fs.truncate("dir/a.txt", 0)
    assert fs.cat("dir/a.txt") == b""
    with fs.open("dir/exec.sh", "wb") as f:  # O_TRUNC: no data copied
        f.write(b"new")
    assert fs.cat("dir/exec.sh") == b"new"
    with pytest.raises(IsADirectoryError):
        fs.truncate("dir", 0)
    with pytest.raises(FileNotFoundError):
        fs.truncate("nothing", 0)
    for mode in ("wb", "ab"):
        with pytest.raises(IsADirectoryError):
            fs.open("dir/sub", mode)
    assert sorted(fs.names("dir")) == ["a.txt", "exec.sh", "sub"]


def test_update_in_place_needs_a_local_overlay(env: Env) -> None:
    fs = env.fs
    if not env.overlay.object_store:
        with fs.open("dir/a.txt", "r+b") as f:
            f.write(b"BB")
        assert fs.cat("dir/a.txt") == b"BB" + b"a" * 98
        return
    with pytest.raises(OSError) as e:
        fs.open("dir/a.txt", "r+b")
    assert errno_of(e) == errno.ENOTSUP
    assert fs.cat("dir/a.txt") == b"a" * 100  # whatever was copied up shows the same bytes


# ============================================================================ unlink


def test_unlink_static_file_writes_whiteout_object(env: Env) -> None:
    fs = env.fs
    fs.unlink("dir/a.txt")
    assert not fs.exists("dir/a.txt") and "a.txt" not in fs.names("dir")
    assert env.overlay.isfile("dir/" + WH + "a.txt")
    assert env.fresh().ls("dir", detail=False) == ["dir/exec.sh", "dir/sub"]
    with pytest.raises(FileNotFoundError):
        fs.unlink("dir/a.txt")
    with pytest.raises(IsADirectoryError):
        fs.unlink("dir")
    fs.pipe("dir/a.txt", b"again")  # creating the name drops the whiteout
    assert fs.cat("dir/a.txt") == b"again" and not env.overlay.isfile("dir/" + WH + "a.txt")


def test_unlink_overlay_only_file_leaves_no_whiteout(env: Env) -> None:
    env.fs.pipe("dir/new.txt", b"x")
    env.fs.unlink("dir/new.txt")
    assert not env.fs.exists("dir/new.txt")
    assert env.overlay.names("dir") == set()
    assert env.overlay.isdir("dir")  # the copied-up parent stays


def test_unlink_file_in_both_layers(env: Env) -> None:
    env.fs.pipe("file.txt", b"copy")
    env.fs.unlink("file.txt")
    assert not env.overlay.isfile("file.txt") and env.overlay.isfile(WH + "file.txt")
    assert not env.fs.exists("file.txt")
    if static_has_link(env):
        env.fs.unlink("link")
        assert not env.fs.exists("link") and env.overlay.isfile(WH + "link")


# ============================================================================ rmdir


def test_rmdir_needs_merged_empty_dir_then_whites_out(env: Env) -> None:
    fs = env.fs
    with pytest.raises(OSError) as e:
        fs.rmdir("dir/sub")
    assert errno_of(e) == errno.ENOTEMPTY
    fs.unlink("dir/sub/deep.bin")
    fs.rmdir("dir/sub")
    assert not fs.exists("dir/sub")
    assert env.overlay.isfile("dir/" + WH + "sub")
    assert "sub" not in env.overlay.names("dir") and not env.overlay.isdir("dir/sub")
    fs.rmdir("empty")
    assert not fs.exists("empty") and env.overlay.isfile(WH + "empty")
    with pytest.raises(NotADirectoryError):
        fs.rmdir("file.txt")
    with pytest.raises(FileNotFoundError):
        fs.rmdir("nothing")


def test_rmdir_overlay_only_dir_leaves_nothing(env: Env) -> None:
    fs = env.fs
    fs.mkdir("mine")
    fs.pipe("mine/f", b"1")
    with pytest.raises(OSError) as e:
        fs.rmdir("mine")
    assert errno_of(e) == errno.ENOTEMPTY
    fs.unlink("mine/f")
    fs.rmdir("mine")
    assert env.overlay.names() == set()
    assert not fs.exists("mine")


def test_mkdir_over_whiteout_is_opaque(env: Env) -> None:
    fs = env.fs
    fs.pipe("dir/sub/mine.txt", b"m")
    fs.rm("dir/sub", recursive=True)  # the overlay's file removed, static's whited out
    assert not env.overlay.isfile("dir/sub/mine.txt") and not env.overlay.isdir("dir/sub")
    assert not fs.exists("dir/sub") and env.overlay.isfile("dir/" + WH + "sub")
    fs.mkdir("dir/sub", create_parents=False)
    assert env.overlay.isfile("dir/sub/" + OPQ) and not env.overlay.isfile("dir/" + WH + "sub")
    assert fs.ls("dir/sub") == [] and not fs.exists("dir/sub/deep.bin")
    fs.pipe("dir/sub/deep.bin", b"fresh")
    assert fs.ls("dir/sub", detail=False) == ["dir/sub/deep.bin"] and fs.cat("dir/sub/deep.bin") == b"fresh"
    fs.unlink("dir/sub/deep.bin")
    fs.rmdir("dir/sub")
    assert not fs.exists("dir/sub") and env.overlay.isfile("dir/" + WH + "sub")
    assert env.fresh().ls("dir", detail=False) == ["dir/a.txt", "dir/exec.sh"]


# ============================================================================ rename


def test_rename_static_file_copies_up_and_whites_out(env: Env) -> None:
    fs = env.fs
    fs.posix_rename("file.txt", "dir/moved.txt")
    assert not fs.exists("file.txt") and fs.cat("dir/moved.txt") == b"static file\n"
    assert env.overlay.isfile(WH + "file.txt") and env.overlay.isfile("dir/moved.txt")
    assert not env.overlay.isfile("file.txt")
    assert not [n for n in env.overlay.names("dir") if n.startswith(WH)]


def test_rename_overlay_file_replaces_target(env: Env) -> None:
    fs = env.fs
    fs.pipe("new.txt", b"n")
    fs.posix_rename("new.txt", "renamed.txt")
    assert fs.cat("renamed.txt") == b"n" and env.overlay.names() == {"renamed.txt"}
    fs.posix_rename("renamed.txt", "dir/a.txt")  # the target lives in static
    assert fs.cat("dir/a.txt") == b"n" and not fs.exists("renamed.txt")
    fs.pipe("other.txt", b"second")
    fs.posix_rename("other.txt", "dir/a.txt")  # the target lives in the overlay now
    assert fs.cat("dir/a.txt") == b"second"
    assert sorted(fs.names("dir")) == ["a.txt", "exec.sh", "sub"]
    fs.pipe("third.txt", b"3")
    with pytest.raises(FileExistsError):
        fs.posix_rename("third.txt", "file.txt", replace=False)
    with pytest.raises(IsADirectoryError):
        fs.posix_rename("third.txt", "dir")
    assert fs.cat("file.txt") == b"static file\n" and fs.cat("third.txt") == b"3"


def test_rename_static_dir_is_exdev_and_mv_copies(env: Env) -> None:
    fs = env.fs
    for src in ("dir", "dir/sub", "empty"):
        with pytest.raises(OSError) as e:
            fs.posix_rename(src, "elsewhere")
        assert errno_of(e) == errno.EXDEV, src
    fs.mv("empty", "empty2")  # copy and delete, as mv(1) after EXDEV
    assert not fs.exists("empty") and env.overlay.isfile(WH + "empty")
    assert fs.layer_of("empty2") == "overlay" and fs.ls("empty2") == []


def test_rename_overlay_only_dir_copies_the_prefix(env: Env) -> None:
    fs = env.fs
    fs.makedirs("mine/inner")
    fs.makedirs("mine/empty")
    fs.pipe("mine/inner/f", b"1")
    fs.pipe("mine/g", b"2")
    fs.posix_rename("mine", "dir/yours")
    assert not fs.exists("mine") and env.overlay.names() == {"dir"}
    assert fs.cat("dir/yours/inner/f") == b"1" and fs.cat("dir/yours/g") == b"2"
    assert fs.ls("dir/yours/empty") == []  # its marker travelled
    assert fs.ls("dir/yours", detail=False) == ["dir/yours/empty", "dir/yours/g", "dir/yours/inner"]
    assert OPQ not in env.overlay.names("dir/yours") and not env.overlay.isfile(WH + "mine")
    if env.overlay.kind == "s3":
        assert not env.overlay.keys("mine")  # nothing left under the old prefix
    with pytest.raises(NotADirectoryError):
        fs.posix_rename("dir/yours", "file.txt")


def test_rename_overlay_dir_onto_static_name_becomes_opaque(env: Env) -> None:
    fs = env.fs
    fs.mkdir("mine")
    fs.pipe("mine/f", b"1")
    fs.posix_rename("mine", "empty")  # static's empty dir is replaced
    assert env.overlay.isfile("empty/" + OPQ)
    assert fs.ls("empty", detail=False) == ["empty/f"]
    assert env.fresh().ls("empty", detail=False) == ["empty/f"]


# ============================================================================ what objects cannot hold


def test_links_special_files_and_attributes(env: Env) -> None:
    fs = env.fs
    with pytest.raises(OSError) as e:
        fs.link("dir", "dirlink")
    assert errno_of(e) == errno.EPERM
    if not env.remote_overlay:
        fs.link("file.txt", "hard")  # a native hard link, after copy-up from any static
        assert fs.cat("hard") == b"static file\n"
        fs.symlink("file.txt", "sym")
        assert fs.readlink("sym") == "file.txt"
        fs.chmod("dir/a.txt", 0o600)
        assert fs.info("dir/a.txt")["mode"] & 0o777 == 0o600
        return
    expected = [
        (lambda: fs.link("file.txt", "hard"), errno.EPERM),
        (lambda: fs.mknod("fifo", S.S_IFIFO | 0o644), errno.EPERM),
        (lambda: fs.symlink("file.txt", "sym"), errno.ENOTSUP),
        (lambda: fs.chmod("dir/a.txt", 0o600), errno.ENOTSUP),
        (lambda: fs.utime("dir/a.txt", 0, 0), errno.ENOTSUP),
    ]
    for call, code in expected:
        with pytest.raises(OSError) as e:
            call()
        assert errno_of(e) == code
    for name in ("hard", "fifo", "sym"):
        assert not fs.exists(name) and not env.overlay.isfile(name)
    assert fs.cat("dir/a.txt") == b"a" * 100  # chmod copied up the same bytes
    if static_has_link(env):  # a static symlink cannot be copied up into an object store
        with pytest.raises(OSError) as e:
            fs.posix_rename("link", "link2")
        assert errno_of(e) == errno.ENOTSUP
        assert fs.readlink("link") == "file.txt" and not fs.exists("link2")


@pytest.mark.parametrize("name", [".wh.x", ".wh..wh..opq", ".wh.file.txt"])
def test_reserved_names_are_eperm(env: Env, name: str) -> None:
    fs = env.fs
    for make in (lambda p: fs.create(p), lambda p: fs.mkdir(p, create_parents=False),
                 lambda p: fs.posix_rename("file.txt", p)):
        for path in (name, f"dir/{name}"):
            with pytest.raises(OSError) as e:
                make(path)
            assert errno_of(e) == errno.EPERM, path
    assert fs.exists("file.txt") and env.overlay.names() == set()


def test_long_names_and_their_whiteouts(env: Env) -> None:
    fs = env.fs
    assert sorted(fs.names("long")) == sorted([NAME252, NAME255])
    for name in (NAME252, NAME255):
        fs.unlink(f"long/{name}")
        assert env.overlay.isfile(f"long/{long_whiteout(name)}")
        assert not fs.exists(f"long/{name}")
    assert fs.ls("long") == [] and len(env.overlay.names("long")) == 2
    fs.rmdir("long")
    assert env.overlay.isfile(WH + "long")
    fs.mkdir("long")
    fs.pipe(f"long/{NAME255}", b"new")
    fs.posix_rename(f"long/{NAME255}", f"long/{NAME252}")
    assert fs.ls("long", detail=False) == [f"long/{NAME252}"]
    assert fs.cat(f"long/{NAME252}") == b"new"
    assert env.fresh().ls("long", detail=False) == [f"long/{NAME252}"]


# ============================================================================ fsspec use


def test_fsspec_find_du_and_copy(env: Env) -> None:
    fs = env.fs
    assert sorted(fs.find("dir")) == ["dir/a.txt", "dir/exec.sh", "dir/sub/deep.bin"]
    assert fs.du("dir", total=True) == 100 + 18 + 300_000
    fs.copy("dir/a.txt", "copy.txt")
    assert fs.cat("copy.txt") == b"a" * 100 and fs.layer_of("copy.txt") == "overlay"


# ============================================================================ the layer's own errors


def test_object_store_layer_errors(s3) -> None:
    """Each failure an OSError with errno set, naming the layer-relative path, no secrets."""
    bucket = s3.new_bucket()
    fs = s3.filesystem(use_listings_cache=False)
    layer = FsspecLayer(fs, f"{bucket}/root")
    layer.mkdir("d")
    layer.touch("d/f")
    cases = [
        (lambda: layer.mkdir("d"), errno.EEXIST, "d"),
        (lambda: layer.mkdir("d/f"), errno.EEXIST, "d/f"),
        (lambda: layer.mkdir("x/y"), errno.ENOENT, "x/y"),
        (lambda: layer.mkdir("d/f/z"), errno.ENOTDIR, "d/f/z"),
        (lambda: layer.create("d/f"), errno.EEXIST, "d/f"),
        (lambda: layer.create("x/y"), errno.ENOENT, "x/y"),
        (lambda: layer.rmdir("d"), errno.ENOTEMPTY, "d"),
        (lambda: layer.rmdir("d/f"), errno.ENOTDIR, "d/f"),
        (lambda: layer.rmdir("nothing"), errno.ENOENT, "nothing"),
        (lambda: layer.remove("d"), errno.EISDIR, "d"),
        (lambda: layer.remove("nothing"), errno.ENOENT, "nothing"),
        (lambda: layer.rename("nothing", "x"), errno.ENOENT, "nothing"),
        (lambda: layer.rename("d/f", "d"), errno.EISDIR, "d"),
        (lambda: layer.rename("d", "d/f"), errno.EINVAL, "d/f"),
        (lambda: layer.truncate("d", 0), errno.EISDIR, "d"),
        (lambda: layer.open("nothing", "rb"), errno.ENOENT, "nothing"),
        (lambda: layer.open("d/f", "r+b"), errno.ENOTSUP, "d/f"),
        (lambda: layer.chmod("d/f", 0o600), errno.ENOTSUP, "d/f"),
        (lambda: layer.symlink("t", "s"), errno.ENOTSUP, "s"),
        (lambda: layer.link("d/f", "h"), errno.EPERM, "h"),
        (lambda: layer.mknod("p", S.S_IFIFO), errno.EPERM, "p"),
    ]
    for call, code, name in cases:
        with pytest.raises(OSError) as e:
            call()
        assert (e.value.errno, e.value.filename) == (code, name), (code, name, e.value)
    layer.remove("d/f")
    layer.rmdir("d")
    assert fs.find(f"{bucket}/root") == []
    # a layer at the bucket's root: the same conventions, without a prefix
    top = FsspecLayer(fs, bucket)
    top.mkdir("d2")
    top.touch("d2/f")
    assert top.listdir("") == {"d2": S.S_IFDIR} and top.listdir("d2") == {"f": S.S_IFREG}
    top.rename("d2", "d3")
    assert top.listdir("") == {"d3": S.S_IFDIR} and top.listdir("d3") == {"f": S.S_IFREG}
    assert top.stat("d2") is None and top.stat("d3/f").size == 0
    keys = fs.call_s3("list_objects_v2", Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in keys) == ["d3/", "d3/f"]
    # a bucket that does not exist; messages without credentials
    gone = FsspecLayer(fs, "no-such-bucket-copickfs/root")
    with pytest.raises(OSError) as e:
        gone.listdir("d")
    assert e.value.errno == errno.ENOENT and e.value.filename == "d"
    for secret in (s3.options()["key"], s3.options()["secret"]):
        assert secret not in str(e.value) and secret not in repr(e.value)


# ============================================================================ request counts


def counting_fs(s3: Any) -> Any:
    """An s3fs filesystem that notes every S3 request it makes (s3fs's own request method)."""
    import s3fs

    class Counting(s3fs.S3FileSystem):
        requests: list[tuple[str, str | None, str]] = []

        async def _call_s3(self, method, *args, **kwargs):  # noqa: ANN001, ANN202
            where = kwargs.get("Prefix", kwargs.get("Key", ""))
            self.requests.append((method, kwargs.get("Delimiter"), where))
            return await super()._call_s3(method, *args, **kwargs)

    fs = Counting(skip_instance_cache=True, use_listings_cache=False, **s3.options())
    fs.requests = []
    return fs


def put_empty_objects(endpoint: str, bucket: str, keys: list[str]) -> None:
    """Many empty objects, fast: plain PUTs on one kept-alive connection (moto accepts
    unsigned requests; s3fs's per-request signing would double the time)."""
    url = urllib.parse.urlsplit(endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        for key in keys:
            conn.request("PUT", f"/{bucket}/{urllib.parse.quote(key)}", body=b"")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (key, response.status)
    finally:
        conn.close()


def test_listing_costs_do_not_grow_with_the_bucket(s3) -> None:
    """Listing a directory of 3 entries costs the same with 2,000 more keys in the bucket
    (1,000 elsewhere, 1,000 below a subdirectory of the listed one): delimiter listings of
    the directories asked about, a few HEADs, never a walk of the bucket."""
    raw = s3.filesystem(use_listings_cache=False)
    bucket = s3.new_bucket()
    raw.pipe({f"{bucket}/static/runs/r1/{n}": b"x" for n in ("a.json", "b.json")})
    raw.pipe({f"{bucket}/static/runs/r1/sub/first": b"x", f"{bucket}/overlay/runs/r1/mine.json": b"m"})
    fs = counting_fs(s3)
    union = UnionFileSystem(FsspecLayer(fs, f"{bucket}/overlay"), FsspecLayer(fs, f"{bucket}/static"))

    def cost() -> list[tuple[str, str | None, str]]:
        fs.requests.clear()
        assert union.ls("runs/r1", detail=False) == [
            "runs/r1/a.json", "runs/r1/b.json", "runs/r1/mine.json", "runs/r1/sub"]
        assert sorted(union.listdir_types("runs/r1")) == ["a.json", "b.json", "mine.json", "sub"]
        assert union.info("runs/r1/sub")["type"] == "directory"
        assert union.info("runs/r1/a.json")["size"] == 1
        return list(fs.requests)

    small = cost()
    put_empty_objects(s3.endpoint, bucket, [f"static/other/{i:04d}" for i in range(1000)]
                      + [f"static/runs/r1/sub/{i:04d}" for i in range(1000)])
    assert len(raw.find(f"{bucket}/static")) == 2003
    big = cost()
    assert [r[0] for r in big] == [r[0] for r in small]  # the same requests, key for key
    assert len(big) <= 60, big
    listings = [r for r in big if r[0] == "list_objects_v2"]
    assert listings and all(r[1] == "/" for r in listings)  # delimiter listings only
    assert {r[0] for r in big} <= {"head_object", "list_objects_v2"}
