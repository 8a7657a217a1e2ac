"""The static data set every system reads: generated once under the work dir, then reused.

Layout of ``static/`` (the read-only lower layer of every union):

    big.bin                                   random bytes (no sparse or compressible shortcut)
    tree/dNNNN/fileNNNNN.json                 many small files for find / ls -lR / du
    ExperimentRuns/TS_NNN/VoxelSpacing10.000/ one directory per run; TS_000 holds the tomogram
        wbp.zarr                              OME-Zarr, written as copick writes tomograms
    Pyramids/wbp/                             precomputed pyramid, stored nested + gzip
        info, <key>/<x0-x1>/<y0-y1>/<z0-z1>.gz

``manifest.json`` is written last (its presence means "complete") and holds the digests
the workloads check what they read against.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MiB = 1 << 20
TOMO_RELPATH = "ExperimentRuns/TS_000/VoxelSpacing10.000/wbp.zarr"
PYRAMID_RELPATH = "Pyramids/wbp"
PYRAMID_KEY = "10_10_10"
RUNS = 10  # ExperimentRuns/TS_000 .. TS_009: the picks are spread over them


@dataclass(frozen=True)
class Sizes:
    """Every size the data set and the workloads depend on (the data dir is keyed by them)."""

    big_mib: int = 1024
    files: int = 50_000
    files_per_dir: int = 1000
    small_size: int = 512
    creates: int = 10_000
    create_size: int = 4096
    random_reads: int = 10_000
    tomo_side: int = 512
    picks: int = 1000
    points_per_pick: int = 100
    pyramid_side: int = 512
    pyramid_chunk: int = 64

    def key(self) -> str:
        """Names the data dir: only the sizes that shape the static tree count."""
        shaping = {k: v for k, v in asdict(self).items()
                   if k in ("big_mib", "files", "files_per_dir", "small_size", "tomo_side",
                            "pyramid_side", "pyramid_chunk")}
        return hashlib.sha1(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:10]


FULL = Sizes()
QUICK = Sizes(big_mib=256, files=20_000, creates=2000, random_reads=2000, tomo_side=256, picks=500,
              pyramid_side=256)


@dataclass(frozen=True)
class Manifest:
    """Digests of what the workloads read, to check every system returns the stored bytes."""

    big_sha256: str
    tomo_sha256: str             # of level 0's array bytes (C order)
    pyramid_sha256: str          # of the decompressed chunks, in `pyramid_chunks` order
    pyramid_chunks: list[list[int]]  # (x0, x1, y0, y1, z0, z1) of every chunk


def log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def ensure(data: Path, sizes: Sizes) -> Manifest:
    """The data set under ``data``: reused when complete, else (re)generated from scratch."""
    manifest_file = data / "manifest.json"
    if manifest_file.exists():
        log(f"data set: reusing {data}")
        return Manifest(**json.loads(manifest_file.read_text()))
    log(f"data set: generating in {data} (once; later runs reuse it) ...")
    if data.exists():
        shutil.rmtree(data)
    static = data / "static"
    static.mkdir(parents=True)
    big_sha = _big_file(static / "big.bin", sizes.big_mib)
    _tree(static / "tree", sizes)
    for run in range(RUNS):
        (static / f"ExperimentRuns/TS_{run:03d}/VoxelSpacing10.000").mkdir(parents=True)
    tomo_sha = _tomogram(static / TOMO_RELPATH, sizes.tomo_side)
    pyr_sha, chunks = _pyramid(static / PYRAMID_RELPATH, sizes.pyramid_side, sizes.pyramid_chunk)
    subprocess.run(["sync"], check=False)
    manifest = Manifest(big_sha, tomo_sha, pyr_sha, chunks)
    manifest_file.write_text(json.dumps(asdict(manifest)))
    log(f"data set: {sizes.big_mib} MiB file, {sizes.files:,} small files, "
        f"{sizes.tomo_side}^3 tomogram, {len(chunks)} pyramid chunks")
    return manifest


def _big_file(path: Path, size_mib: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size_mib):
            block = os.urandom(MiB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def _tree(tree: Path, sizes: Sizes) -> None:
    payload = (b"copick" * (sizes.small_size // 6 + 1))[: sizes.small_size]
    made = 0
    for d in range(-(-sizes.files // sizes.files_per_dir)):
        sub = tree / f"d{d:04d}"
        sub.mkdir(parents=True)
        for i in range(min(sizes.files_per_dir, sizes.files - made)):
            (sub / f"file{i:05d}.json").write_bytes(payload)
            made += 1


def tomogram_volume(side: int, seed: int = 0) -> np.ndarray:
    """A smooth density plus noise: compresses about as poorly as a real reconstruction."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(0, 12, side, dtype=np.float32)
    volume = rng.normal(0, 0.3, (side, side, side)).astype(np.float32)
    volume += np.sin(axis)[:, None, None] * np.cos(axis)[None, :, None]
    volume += np.sin(axis)[None, None, :]
    return volume


def _tomogram(path: Path, side: int) -> str:
    """Written by copickfs's own OME-Zarr writer: the chunking and codecs copick uses."""
    from zarr.storage import LocalStore

    from copickfs.copick.omezarr import write_multiscale

    volume = tomogram_volume(side)
    write_multiscale(LocalStore(str(path)), volume, 10.0)
    return hashlib.sha256(volume.tobytes()).hexdigest()


def pyramid_chunks(side: int, chunk: int) -> list[list[int]]:
    return [[x, x + chunk, y, y + chunk, z, z + chunk]
            for x in range(0, side, chunk) for y in range(0, side, chunk) for z in range(0, side, chunk)]


def flat_name(c: list[int]) -> str:
    """What neuroglancer asks for (the name only copickfs serves for a nested .gz store)."""
    return f"{PYRAMID_KEY}/{c[0]}-{c[1]}_{c[2]}-{c[3]}_{c[4]}-{c[5]}"


def nested_gz_name(c: list[int]) -> str:
    """How the chunk is stored."""
    return f"{PYRAMID_KEY}/{c[0]}-{c[1]}/{c[2]}-{c[3]}/{c[4]}-{c[5]}.gz"


def _pyramid(root: Path, side: int, chunk: int) -> tuple[str, list[list[int]]]:
    """One raw uint8 scale, each chunk gzip'ed under its nested name (neuroglancer-scripts' layout)."""
    info: dict[str, Any] = {
        "type": "image", "data_type": "uint8", "num_channels": 1,
        "scales": [{"key": PYRAMID_KEY, "size": [side] * 3, "chunk_sizes": [[chunk] * 3], "encoding": "raw",
                    "resolution": [10, 10, 10], "voxel_offset": [0, 0, 0]}]}
    root.mkdir(parents=True)
    (root / "info").write_text(json.dumps(info))
    rng = np.random.default_rng(1)
    digest = hashlib.sha256()
    chunks = pyramid_chunks(side, chunk)
    for c in chunks:
        # Few distinct values: gzip shrinks it as it does a real 8-bit image, about 2x.
        data = rng.integers(0, 16, chunk ** 3, dtype=np.uint8).tobytes()
        digest.update(data)
        path = root / nested_gz_name(c)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, compresslevel=6))
    return digest.hexdigest(), chunks


def picks_json(points: int, seed: int = 0) -> str:
    """One picks file's text, in copick's own layout (`CopickPicksFile.to_json`)."""
    from copickfs.copick.models import CopickLocation, CopickPicksFile, CopickPoint

    rng = np.random.default_rng(seed)
    pts = [CopickPoint(location=CopickLocation(x=float(x), y=float(y), z=float(z)))
           for x, y, z in rng.uniform(0, 5000, (points, 3))]
    return CopickPicksFile(pickable_object_name="ribosome", user_id="bench", session_id="0",
                           run_name="TS_000", voxel_spacing=10.0, points=pts).to_json()
