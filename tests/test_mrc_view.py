"""Virtual MRC files beside copick's OME-Zarr volumes, through real mounts.

Volumes of odd sizes (never a multiple of their chunks) are written with zarr into static
or through the mount; the `.mrc` files are read with mrcfile (strict validation, header,
voxel size, data), with a C program doing preads at odd offsets, and with mmap.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr
from mounting import mounted, write_config
from treehash import tree_digest
from zarr.storage import LocalStore

from copickfs.mrc import MrcView
from copickfs.mrc.header import HEADER_BYTES
from copickfs.union import UnionFileSystem

mrcfile = pytest.importorskip("mrcfile", reason="mrcfile (the test extra) is needed to read MRC files")

TESTS = Path(__file__).parent
VS = "ExperimentRuns/TS_001/VoxelSpacing10.000"
SEG = "ExperimentRuns/TS_001/Segmentations"
SHAPE = (13, 37, 29)           # z, y, x: no side a multiple of CHUNKS
CHUNKS = (5, 16, 12)
NO_CACHE = "entry_timeout=0,attr_timeout=0"
#: What the MRC file holds for each zarr dtype (uint8 is widened, as mrcfile writes it).
FILE_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint16, "int16": np.int16}
MODES = {"float32": 2, "int8": 0, "uint8": 6, "int16": 1}


def volume(dtype: str, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        return rng.standard_normal(shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def write_volume(path: Path, data: np.ndarray, voxel: float = 10.0, chunks: tuple[int, ...] = CHUNKS,
                 levels: int = 2, zarr_format: int = 2, translation: list[float] | None = None) -> list[np.ndarray]:
    """An OME-Zarr multiscale group as copick writes it (levels by 2x striding here); returns the levels."""
    group = zarr.open_group(LocalStore(str(path)), mode="w", zarr_format=zarr_format)
    out, datasets = [], []
    for index in range(levels):
        step = 2 ** index
        level = np.ascontiguousarray(data[(..., slice(None, None, step), slice(None, None, step),
                                           slice(None, None, step))])
        extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2 else {}
        array = group.create_array(str(index), shape=level.shape, dtype=level.dtype,
                                   chunks=(*(1,) * (level.ndim - 3), *chunks), fill_value=0, **extra)
        array[...] = level
        scale = [*(1.0,) * (level.ndim - 3), *[voxel * step] * 3]
        transforms: list[dict] = [{"type": "scale", "scale": scale}]
        if translation is not None:
            transforms.append({"type": "translation", "translation": [*(0.0,) * (level.ndim - 3), *translation]})
        datasets.append({"path": str(index), "coordinateTransformations": transforms})
        out.append(level)
    axes = [{"name": "c", "type": "channel"}] * (data.ndim - 3) + [
        {"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    multiscales = [{"version": "0.4", "name": "", "axes": axes, "datasets": datasets}]
    if zarr_format == 2:
        group.attrs["multiscales"] = multiscales
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
    return out


def file_bytes(level: np.ndarray, dtype: str) -> bytes:
    """The data block an MRC file of ``level`` must hold: C order, little-endian."""
    return level.astype(np.dtype(FILE_DTYPES[dtype]).newbyteorder("<")).tobytes()


@dataclass
class Project:
    static: Path
    overlay: Path
    mnt: Path
    config: Path


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """Empty roots; the test fills static, then the static tree must stay unchanged."""
    static, overlay, mnt = tmp_path / "static", tmp_path / "overlay", tmp_path / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir()
    p = Project(static, overlay, mnt, write_config(tmp_path / "config.json", overlay, static))
    yield p
    digest = getattr(p, "digest", None)
    if digest is not None:
        assert tree_digest(str(static)) == digest, "the static tree changed"


def seal(p: Project) -> None:
    p.digest = tree_digest(str(p.static))  # type: ignore[attr-defined]


def strictly_valid(path: Path) -> bool:
    with open(os.devnull, "w") as sink:
        return mrcfile.validate(str(path), print_file=sink)


# ------------------------------------------------------------------ reading

@pytest.mark.parametrize("dtype", sorted(FILE_DTYPES))
def test_mrcfile_reads_each_level_exactly(project: Project, dtype: str) -> None:
    data = volume(dtype)
    levels = write_volume(project.static / VS / "wbp.zarr", data)
    seal(project)
    with mounted(project.config, project.mnt, "mrc_levels=0:1"):
        vs = project.mnt / VS
        assert sorted(os.listdir(vs)) == ["wbp.bin2.mrc", "wbp.mrc", "wbp.zarr"]
        for name, level, voxel in (("wbp.mrc", levels[0], 10.0), ("wbp.bin2.mrc", levels[1], 20.0)):
            path = vs / name
            assert strictly_valid(path), name
            st = os.stat(path)
            assert st.st_size == HEADER_BYTES + level.size * np.dtype(FILE_DTYPES[dtype]).itemsize
            assert st.st_mode & 0o777 == 0o444
            with mrcfile.open(path, permissive=False) as m:
                h = m.header
                assert (int(h.nx), int(h.ny), int(h.nz)) == level.shape[::-1]
                assert (int(h.mx), int(h.my), int(h.mz)) == level.shape[::-1]
                assert int(h.mode) == MODES[dtype]
                assert h.map.tobytes() == b"MAP "
                assert tuple(m.voxel_size.item()) == pytest.approx((voxel, voxel, voxel))
                assert float(h.cella.x) == pytest.approx(level.shape[2] * voxel)
                assert float(h.dmax) < float(h.dmin) and float(h.rms) < 0  # "not computed"
                assert m.data.dtype == np.dtype(FILE_DTYPES[dtype])
                assert np.array_equal(m.data, level.astype(FILE_DTYPES[dtype]))
            assert path.read_bytes()[HEADER_BYTES:] == file_bytes(level, dtype)
        assert not (project.overlay / VS).exists()  # reading wrote nothing


def test_random_reads_from_c_at_odd_offsets(project: Project, tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed, so the C program cannot be built")
    binary = tmp_path / "preads"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary), str(TESTS / "c" / "preads.c")],
                   check=True)
    data = volume("float32", seed=3)
    level = write_volume(project.static / VS / "wbp.zarr", data, levels=1)[0]
    seal(project)
    with mounted(project.config, project.mnt):
        path = project.mnt / VS / "wbp.mrc"
        header = path.read_bytes()[:HEADER_BYTES]
        expected = header + file_bytes(level, "float32")
        rng = np.random.default_rng(7)
        ranges = [(0, 7), (1021, 9), (HEADER_BYTES + 3, 4 * CHUNKS[2] + 5), (len(expected) - 5, 50)]
        row = SHAPE[2] * 4
        for _ in range(60):  # odd offsets and lengths, many across chunk and row boundaries
            offset = int(rng.integers(0, len(expected))) | 1
            ranges.append((offset, int(rng.integers(1, 3 * row * SHAPE[1])) | 1))
        proc = subprocess.run([str(binary), str(path)], input="".join(f"{o} {n}\n" for o, n in ranges).encode(),
                              capture_output=True, check=True)
        assert proc.stdout == b"".join(expected[o:o + n] for o, n in ranges)


def test_mmap_and_mrcfile_mmap(project: Project) -> None:
    data = volume("int16", seed=4)
    level = write_volume(project.static / VS / "wbp.zarr", data, levels=1)[0]
    seal(project)
    with mounted(project.config, project.mnt):
        path = project.mnt / VS / "wbp.mrc"
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
            assert len(mapped) == os.stat(path).st_size
            assert mapped[HEADER_BYTES:] == file_bytes(level, "int16")
            assert mapped[208:212] == b"MAP "
        with mrcfile.mmap(path, mode="r") as m:
            assert np.array_equal(m.data[3:9, 10:30, 5:17], level[3:9, 10:30, 5:17])


def test_features_are_a_volume_stack_and_v3_stores_work(project: Project) -> None:
    features = volume("float32", shape=(3, 9, 21, 14), seed=5)
    write_volume(project.static / VS / "wbp_cellcanvas01_features.zarr", features, levels=1)
    seg = volume("uint8", seed=6)
    write_volume(project.static / SEG / "10.000_me_1_membrane.zarr", seg, levels=1, zarr_format=3,
                 translation=[30.0, 20.0, 10.0])
    seal(project)
    with mounted(project.config, project.mnt):
        stack = project.mnt / VS / "wbp_cellcanvas01_features.mrc"
        assert strictly_valid(stack)
        with mrcfile.open(stack) as m:
            assert m.is_volume_stack() and int(m.header.ispg) == 401
            assert np.array_equal(m.data, features)
        path = project.mnt / SEG / "10.000_me_1_membrane.mrc"
        assert strictly_valid(path)
        with mrcfile.open(path) as m:
            assert np.array_equal(m.data, seg.astype(np.uint16))
            origin = m.header.origin
            assert (float(origin.x), float(origin.y), float(origin.z)) == (10.0, 20.0, 30.0)


# ------------------------------------------------------------------ names and changes

def test_real_files_win_and_the_view_can_be_turned_off(project: Project) -> None:
    write_volume(project.static / VS / "wbp.zarr", volume("float32"), levels=1)
    write_volume(project.static / VS / "denoised.zarr", volume("float32", seed=1), levels=1)
    (project.static / VS / "denoised.mrc").write_bytes(b"a real file")
    (project.static / VS / "notes.zarr").mkdir()  # no multiscale group: no MRC file
    (project.static / "elsewhere").mkdir()       # not a place copick keeps volumes
    write_volume(project.static / "elsewhere" / "x.zarr", volume("float32"), levels=1)
    seal(project)
    with mounted(project.config, project.mnt):
        vs = project.mnt / VS
        assert sorted(os.listdir(vs)) == ["denoised.mrc", "denoised.zarr", "notes.zarr", "wbp.mrc", "wbp.zarr"]
        assert (vs / "denoised.mrc").read_bytes() == b"a real file"
        assert not (vs / "notes.mrc").exists() and not (vs / "wbp.bin2.mrc").exists()
        assert sorted(os.listdir(project.mnt / "elsewhere")) == ["x.zarr"]
    with mounted(project.config, project.mnt, "nomrc"):
        assert sorted(os.listdir(project.mnt / VS)) == ["denoised.mrc", "denoised.zarr", "notes.zarr", "wbp.zarr"]
        assert not (project.mnt / VS / "wbp.mrc").exists()


def test_the_file_is_read_only(project: Project) -> None:
    write_volume(project.static / VS / "wbp.zarr", volume("float32"), levels=1)
    seal(project)
    with mounted(project.config, project.mnt):
        path = project.mnt / VS / "wbp.mrc"
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
            with pytest.raises(PermissionError):
                os.close(os.open(path, flags))
        with pytest.raises(OSError) as e:
            os.unlink(path)
        assert e.value.errno == errno.EPERM
        with pytest.raises(OSError) as e:
            os.rename(path, project.mnt / VS / "other.mrc")
        assert e.value.errno == errno.EPERM
        assert os.stat(path).st_size > HEADER_BYTES
        mine = project.mnt / VS / "mine.tmp"
        mine.write_bytes(b"mine")
        os.rename(mine, path)  # a real file onto its name: it wins
        assert path.read_bytes() == b"mine"
    assert (project.overlay / VS / "wbp.mrc").read_bytes() == b"mine"


def test_volumes_written_and_removed_through_the_mount(project: Project) -> None:
    write_volume(project.static / VS / "wbp.zarr", volume("float32"), levels=1)
    seal(project)
    with mounted(project.config, project.mnt, NO_CACHE):
        vs = project.mnt / VS
        first = volume("int16", seed=11)
        write_volume(vs / "new.zarr", first, levels=1)  # through the mount: into the overlay
        assert "new.mrc" in os.listdir(vs)
        with mrcfile.open(vs / "new.mrc") as m:
            assert np.array_equal(m.data, first)
        second = first.copy()
        second[4:9, 3:20, 2:25] = -7  # rewrite some chunks through zarr, same shape
        zarr.open_array(LocalStore(str(vs / "new.zarr" / "0")), mode="r+")[...] = second
        with mrcfile.open(vs / "new.mrc") as m:  # seen by the next open
            assert np.array_equal(m.data, second)
        shutil.rmtree(vs / "new.zarr")
        assert "new.mrc" not in os.listdir(vs)
        assert not (vs / "new.mrc").exists()
        shutil.rmtree(vs / "wbp.zarr")  # a static volume: whited out, and its MRC file goes too
        assert os.listdir(vs) == []
        assert not (vs / "wbp.mrc").exists()


# ------------------------------------------------------------------ the chunk cache (library)

def test_a_whole_read_decodes_each_chunk_once_and_concurrent_readers_share(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    data = volume("float32", shape=(11, 40, 50), seed=9)
    level = write_volume(static / VS / "wbp.zarr", data, chunks=(4, 16, 16), levels=1)[0]
    overlay.mkdir()
    view = MrcView(UnionFileSystem(str(overlay), str(static)), levels=(0,), cache_bytes=64 << 20)
    stored = 3 * 3 * 4
    path = f"{VS}/wbp.mrc"
    with view.open(path) as f:
        got = b""
        while chunk := f.read(4096 + 7):  # small reads at odd boundaries, in order
            got += chunk
    assert got[HEADER_BYTES:] == file_bytes(level, "float32")
    assert view.chunks.decoded == stored
    fresh = MrcView(UnionFileSystem(str(overlay), str(static)), levels=(0,))
    barrier = threading.Barrier(8)
    results: list[bytes] = []

    def read() -> None:
        barrier.wait()
        with fresh.open(path) as f:
            results.append(f.read())

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r == got for r in results)
    assert fresh.chunks.decoded == stored  # eight readers at once, each chunk decoded once
    view.close()
    fresh.close()


def test_s3_static_root(s3, tmp_path: Path) -> None:  # noqa: ANN001 (the session's S3 server)
    local = tmp_path / "local"
    data = volume("int16", seed=12)
    level = write_volume(local / VS / "wbp.zarr", data, levels=1)[0]
    bucket = s3.new_bucket()
    fs = s3.filesystem()
    fs.put(str(local) + "/", f"{bucket}/static", recursive=True)
    overlay, mnt = tmp_path / "overlay", tmp_path / "mnt"
    overlay.mkdir()
    mnt.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "overlay_root": str(overlay), "static_root": f"s3://{bucket}/static",
        "static_fs_args": s3.options(), "copickfs": {"cache_dir": str(tmp_path / "cache")}}))
    with mounted(config, mnt):
        path = mnt / VS / "wbp.mrc"
        assert strictly_valid(path)
        with mrcfile.open(path) as m:
            assert np.array_equal(m.data, level)
