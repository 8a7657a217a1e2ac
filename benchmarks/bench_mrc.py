#!/usr/bin/env python3
"""Benchmark the virtual MRC files: a tomogram read through ``wbp.mrc`` vs zarr vs a real .mrc.

One float32 tomogram (``--size``^3, default 512^3 = 512 MiB; Gaussian noise, which
compresses about as badly as a real tomogram) is written as copick writes it (OME-Zarr,
256^3 chunks, Blosc/zstd) into a static root, and as a real MRC file (mrcfile) on the
same disk. Workloads (median of ``--runs``; MiB/s of the data returned):

  whole, cold        the whole volume: the virtual file read with 1 MiB reads on a fresh
                     mount (daemon cache empty), zarr's ``array[...]`` on the store, the real
                     file read with 1 MiB reads; the page cache dropped before each
  whole, again       the same on the same mount: the virtual file with the page cache
                     dropped (the daemon's decoded chunks answer), zarr decoding again
  64^3 region, cold  a random 64^3 subvolume (not chunk-aligned) with mrcfile.mmap on the
                     virtual and the real file, zarr's slicing on the store; fresh mount,
                     page cache dropped

Run as root (dropping the page cache needs it):

    python benchmarks/bench_mrc.py --quick     # 256^3, 1 run
    python benchmarks/bench_mrc.py             # 512^3, 3 runs

The mount is made with tests/mounting.py's ``mounted`` and always unmounted; only
processes this script started are signalled.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import mrcfile  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402
from mounting import mounted, write_config  # noqa: E402
from zarr.storage import LocalStore  # noqa: E402

from copickfs.copick.omezarr import write_multiscale  # noqa: E402

MiB = 1 << 20
VS = "ExperimentRuns/TS_001/VoxelSpacing10.000"
REGION = 64
SYSTEMS = ["virtual .mrc", "zarr", "real .mrc"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_all(path: Path, block: int = MiB) -> int:
    buf = bytearray(block)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
    return total


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def build(work: Path, size: int) -> tuple[Path, Path, Path, Path]:
    static, overlay, mnt = work / "static", work / "overlay", work / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir(parents=True, exist_ok=True)
    store = static / VS / "wbp.zarr"
    real = work / "real.mrc"
    if not store.exists() or not real.exists():
        log(f"writing a {size}^3 float32 tomogram ...")
        data = np.random.default_rng(0).standard_normal((size, size, size), dtype=np.float32)
        write_multiscale(LocalStore(str(store)), data, 10.0, levels=1)
        with mrcfile.new(str(real), overwrite=True) as m:
            m.set_data(data)
            m.voxel_size = 10.0
    config = write_config(work / "config.json", overlay, static)
    return config, mnt, store, real


def region_of(size: int, seed: int) -> tuple[slice, slice, slice]:
    rng = np.random.default_rng(seed)
    start = [int(rng.integers(1, size - REGION - 1)) for _ in range(3)]
    return tuple(slice(s, s + REGION) for s in start)  # type: ignore[return-value]


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    work = args.workdir
    config, mnt, store, real = build(work, args.size)
    nbytes = args.size ** 3 * 4
    region_bytes = REGION ** 3 * 4
    results: dict[str, dict[str, list[float]]] = {w: {s: [] for s in SYSTEMS} for w in
                                                   ("whole, cold", "whole, again", "64^3 region, cold")}
    if not drop_caches():
        log("cannot drop the page cache (run as root): 'cold' numbers are warm")
    for run in range(args.runs):
        log(f"run {run + 1}/{args.runs}")
        with mounted(config, mnt):
            virtual = mnt / VS / "wbp.mrc"
            assert os.stat(virtual).st_size == 1024 + nbytes
            drop_caches()
            results["whole, cold"]["virtual .mrc"].append(nbytes / MiB / timed(lambda: read_all(virtual)))
            drop_caches()
            results["whole, again"]["virtual .mrc"].append(nbytes / MiB / timed(lambda: read_all(virtual)))
        drop_caches()
        array = zarr.open_array(LocalStore(str(store / "0"), read_only=True), mode="r")
        results["whole, cold"]["zarr"].append(nbytes / MiB / timed(lambda: array[...]))
        results["whole, again"]["zarr"].append(nbytes / MiB / timed(lambda: array[...]))
        drop_caches()
        results["whole, cold"]["real .mrc"].append(nbytes / MiB / timed(lambda: read_all(real)))
        results["whole, again"]["real .mrc"].append(nbytes / MiB / timed(lambda: read_all(real)))
        region = region_of(args.size, run)

        def mmap_region(path: Path) -> None:
            with mrcfile.mmap(str(path), mode="r") as m:
                np.array(m.data[region])

        with mounted(config, mnt):
            drop_caches()
            results["64^3 region, cold"]["virtual .mrc"].append(
                region_bytes / MiB / timed(lambda: mmap_region(mnt / VS / "wbp.mrc")))
        drop_caches()
        array = zarr.open_array(LocalStore(str(store / "0"), read_only=True), mode="r")
        results["64^3 region, cold"]["zarr"].append(region_bytes / MiB / timed(lambda: array[region]))
        drop_caches()
        results["64^3 region, cold"]["real .mrc"].append(region_bytes / MiB / timed(lambda: mmap_region(real)))
    return results


def table(results: dict[str, dict[str, list[float]]]) -> str:
    lines = ["| workload | virtual .mrc | zarr | real .mrc | virtual / zarr | virtual / real |",
             "| --- | --- | --- | --- | --- | --- |"]
    for workload, by_system in results.items():
        med = {s: statistics.median(v) for s, v in by_system.items()}
        lines.append(f"| {workload} | {med['virtual .mrc']:,.0f} MiB/s | {med['zarr']:,.0f} MiB/s | "
                     f"{med['real .mrc']:,.0f} MiB/s | {med['virtual .mrc'] / med['zarr']:.2f}x | "
                     f"{med['virtual .mrc'] / med['real .mrc']:.2f}x |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs per workload (median reported)")
    p.add_argument("--size", type=int, default=512, help="side of the cubic float32 tomogram, in voxels")
    p.add_argument("--quick", action="store_true", help="256^3 and one run")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the data and mount point go (default: a temporary directory, removed after)")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.runs = 256, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    keep = args.workdir is not None
    if not keep:
        args.workdir = Path(tempfile.mkdtemp(prefix="copickfs-bench-mrc-", dir="/var/tmp"))
    try:
        results = measure(args)
    finally:
        if not keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    print(f"{args.size}^3 float32 (256^3 chunks, Blosc/zstd), median of {args.runs} run(s); "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for workload, by_system in results.items():
        for system, values in by_system.items():
            print(f"  {workload} / {system}: " + ", ".join(f"{v:,.0f}" for v in values) + " MiB/s")
    print()
    print(table(results))


if __name__ == "__main__":
    main()
