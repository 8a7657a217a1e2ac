#!/usr/bin/env python3
"""Benchmark reads of a static S3 root: copickfs vs s3fs (Python) vs s3fs-fuse.

Everything runs against a moto S3 server this script starts on a free port of 127.0.0.1
(tests/s3server.py). Workloads (MiB/s, median of ``--runs``):

  seq first        sequential read (4 MiB blocks) of one ``--size-mib`` object, empty caches
  seq again        the same read after dropping the page cache (copickfs: its block cache
                   answers; s3fs-fuse use_cache: its file cache; the others go to S3 again)
  zarr all cold    a --zarr-side^3 (default 256^3) float32 zarr array (64^3 chunks) read whole,
                   fresh cache dir + dropped page cache
  zarr all warm    the same read again right away
  zarr region ...  a random 64^3 region, not chunk-aligned (touches 8 chunks); MiB/s of the
                   1 MiB returned

Systems:

  copickfs            ``copickfs mount -f`` with static_root s3://BUCKET/static, an empty local
                      overlay and a fresh cache_dir per cold measurement
  s3fs (Python)       s3fs.S3FileSystem used directly (open + read 4 MiB, zarr FsspecStore);
                      a fresh instance per cold measurement, the same one again for "again/warm"
  s3fs-fuse           the Debian ``s3fs`` binary, no cache
  s3fs-fuse use_cache the same with ``-o use_cache=DIR`` (a fresh DIR per cold measurement)

Mounted systems are read by the same client (dd for the file, zarr.open on the path for the
array). moto is a single Python process: first reads of every system are bounded by it, not
by the filesystem. Run as root (dropping the page cache needs it):

    python benchmarks/bench_s3.py --quick        # 64 MiB object, 1 run, a few minutes
    python benchmarks/bench_s3.py                # 256 MiB object, 3 runs

Everything mounted is unmounted in ``finally`` blocks; only processes this script started
are ever signalled (by PID).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mounting import force_unmount, mounted  # noqa: E402
from s3server import KEY, SECRET, S3Server, start_server, stop_server  # noqa: E402

from copickfs.mount.mountinfo import is_mounted  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB
SHAPE, CHUNKS = (256, 256, 256), (64, 64, 64)
REGION = 64

SYSTEMS = ["copickfs", "s3fs (Python)", "s3fs-fuse", "s3fs-fuse use_cache"]
WORKLOADS = ["seq first", "seq again", "zarr all cold", "zarr all warm",
             "zarr region cold", "zarr region warm"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dd(path: Path) -> None:
    subprocess.run(["dd", f"if={path}", "of=/dev/null", f"bs={CHUNK}"], check=True, capture_output=True)


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- data

def make_data(server: S3Server, bucket: str, size_mib: int, seed: int,
              shape: tuple[int, int, int] = SHAPE) -> tuple[str, object]:
    import numpy as np
    import zarr
    from zarr.storage import FsspecStore

    fs = server.filesystem()
    fs.call_s3("create_bucket", Bucket=bucket)
    rng = np.random.default_rng(seed)
    log(f"uploading a {size_mib} MiB object ...")
    h = hashlib.sha256()
    with fs.open(f"{bucket}/static/big.bin", "wb", block_size=64 * MiB) as f:
        for _ in range(0, size_mib, 16):
            block = rng.bytes(16 * MiB)
            h.update(block)
            f.write(block)
    log("uploading the zarr array ...")
    z, y, x = np.meshgrid(*(np.linspace(0, 8, n, dtype=np.float32) for n in shape), indexing="ij")
    volume = (np.sin(z) * np.cos(y) + np.sin(x) + rng.normal(0, 0.1, shape)).astype(np.float32)
    store = FsspecStore.from_url(f"s3://{bucket}/static/vol.zarr", storage_options=server.options(asynchronous=True))
    arr = zarr.create_array(store=store, shape=shape, chunks=CHUNKS, dtype="float32")
    arr[:] = volume
    return h.hexdigest(), volume


# --------------------------------------------------------------------------- systems

@contextmanager
def copickfs_mount(server: S3Server, bucket: str, work: Path, tag: str) -> Iterator[Path]:
    base = work / tag
    shutil.rmtree(base, ignore_errors=True)
    for d in ("overlay", "mnt", "cache"):
        (base / d).mkdir(parents=True)
    config = base / "config.json"
    config.write_text(json.dumps({
        "config_type": "filesystem", "name": "bench", "overlay_root": str(base / "overlay"),
        "static_root": f"s3://{bucket}/static", "static_fs_args": server.options(),
        "copickfs": {"cache_dir": str(base / "cache"), "cache_size": "8G"}}))
    with mounted(config, base / "mnt"):
        yield base / "mnt"


@contextmanager
def s3fs_fuse_mount(server: S3Server, bucket: str, work: Path, tag: str, use_cache: bool) -> Iterator[Path]:
    base = work / tag
    shutil.rmtree(base, ignore_errors=True)
    (base / "mnt").mkdir(parents=True)
    passwd = base / "passwd"
    passwd.write_text(f"{KEY}:{SECRET}\n")
    passwd.chmod(0o600)
    opts = f"url={server.endpoint},use_path_request_style,passwd_file={passwd}"
    if use_cache:
        (base / "cache").mkdir()
        opts += f",use_cache={base / 'cache'}"
    mnt = base / "mnt"
    proc = subprocess.Popen(["s3fs", f"{bucket}:/static", str(mnt), "-f", "-o", opts],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(str(mnt)):
            if proc.poll() is not None:
                raise RuntimeError(f"s3fs-fuse failed ({proc.returncode}): {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise RuntimeError("s3fs-fuse did not come up")
            time.sleep(0.02)
        yield mnt
    finally:
        force_unmount(mnt)
        if is_mounted(str(mnt)):
            subprocess.run(["fusermount", "-uz", str(mnt)], capture_output=True)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def region_slices(rng, shape: tuple[int, int, int] = SHAPE) -> tuple[slice, ...]:
    # Strictly inside chunk boundaries on every axis: starts not a multiple of 64.
    starts = [int(rng.integers(1, shape[i] - REGION)) for i in range(3)]
    starts = [s + 1 if s % CHUNKS[0] == 0 else s for s in starts]
    return tuple(slice(s, s + REGION) for s in starts)


class Bench:
    def __init__(self, args: argparse.Namespace, server: S3Server, bucket: str, work: Path,
                 digest: str, volume) -> None:
        self.args, self.server, self.bucket, self.work = args, server, bucket, work
        self.digest, self.volume = digest, volume
        self.size = args.size_mib * MiB
        self.shape: tuple[int, int, int] = (getattr(args, "zarr_side", SHAPE[0]),) * 3
        self.times: dict[tuple[str, str], list[float]] = {}
        self.problems: list[str] = []
        self.verified: set[str] = set()

    def record(self, workload: str, system: str, seconds: float) -> None:
        self.times.setdefault((workload, system), []).append(seconds)
        log(f"  {system:20} {workload:18} {seconds:8.3f} s")

    def mount(self, system: str, tag: str):
        if system == "copickfs":
            return copickfs_mount(self.server, self.bucket, self.work, tag)
        return s3fs_fuse_mount(self.server, self.bucket, self.work, tag, system.endswith("use_cache"))

    # -- sequential file
    def seq(self, system: str, run: int) -> None:
        if system == "s3fs (Python)":
            path = f"{self.bucket}/static/big.bin"

            def read(fs) -> None:
                with fs.open(path, "rb", block_size=CHUNK, cache_type="none") as f:
                    while f.read(CHUNK):
                        pass

            fs = self.server.filesystem()
            drop_caches()
            self.record("seq first", system, timed(lambda: read(fs)))
            drop_caches()
            self.record("seq again", system, timed(lambda: read(fs)))
            if system not in self.verified:
                self.check(system, "big.bin", hashlib.sha256(fs.cat_file(path)).hexdigest())
            return
        with self.mount(system, f"seq-{run}-{system.replace(' ', '_')}") as mnt:
            drop_caches()
            self.record("seq first", system, timed(lambda: dd(mnt / "big.bin")))
            drop_caches()
            self.record("seq again", system, timed(lambda: dd(mnt / "big.bin")))
            if system not in self.verified:
                self.check(system, "big.bin", sha_file(mnt / "big.bin"))

    def check(self, system: str, what: str, digest: str) -> None:
        if digest != self.digest:
            self.problems.append(f"{system}: WRONG BYTES in {what} (sha256 {digest[:16]} != {self.digest[:16]})")
            log(f"  !! {self.problems[-1]}")
        else:
            log(f"  {system}: sha256 of {what} ok")
            self.verified.add(system)

    # -- zarr
    def open_zarr(self, system: str, mnt: Path | None):
        import zarr
        from zarr.storage import FsspecStore

        if mnt is None:
            store = FsspecStore.from_url(f"s3://{self.bucket}/static/vol.zarr", read_only=True,
                                         storage_options=self.server.options(asynchronous=True,
                                                                             skip_instance_cache=True))
            return zarr.open_array(store=store, mode="r")
        return zarr.open_array(str(mnt / "vol.zarr"), mode="r")

    def zarr_case(self, system: str, run: int, name: str, sel: tuple[slice, ...]) -> None:
        import numpy as np

        def one(mnt: Path | None) -> None:
            drop_caches()
            out: dict[str, object] = {}
            # cold includes opening the array (metadata read), as a user's first access would
            self.record(f"zarr {name} cold", system,
                        timed(lambda: out.update(a=self.open_zarr(system, mnt)[sel])))
            arr = self.open_zarr(system, mnt)
            self.record(f"zarr {name} warm", system, timed(lambda: out.update(b=arr[sel])))
            if not (np.array_equal(out["a"], self.volume[sel]) and np.array_equal(out["b"], self.volume[sel])):
                self.problems.append(f"{system}: WRONG VALUES in zarr {name} (run {run})")
                log(f"  !! {self.problems[-1]}")

        if system == "s3fs (Python)":
            one(None)
        else:
            with self.mount(system, f"zarr-{name}-{run}-{system.replace(' ', '_')}") as mnt:
                one(mnt)

    def run(self) -> None:
        import numpy as np

        rng = np.random.default_rng(self.args.seed)
        for run in range(self.args.runs):
            # Systems rotated within each run so machine noise hits all alike.
            order = SYSTEMS[run % len(SYSTEMS):] + SYSTEMS[:run % len(SYSTEMS)]
            sel = region_slices(rng, self.shape)
            log(f"run {run + 1}/{self.args.runs}: region {[(s.start, s.stop) for s in sel]}")
            for system in order:
                try:
                    self.seq(system, run)
                    self.zarr_case(system, run, "all", (slice(None),) * 3)
                    self.zarr_case(system, run, "region", sel)
                except Exception as exc:  # report, keep going with the other systems
                    self.problems.append(f"{system}: {type(exc).__name__}: {exc}")
                    log(f"  !! {self.problems[-1]}")

    def mib(self, workload: str) -> float:
        if workload.startswith("seq"):
            return self.args.size_mib
        if "region" in workload:
            return REGION ** 3 * 4 / MiB
        return self.shape[0] * self.shape[1] * self.shape[2] * 4 / MiB

    def table(self) -> list[str]:
        peers = SYSTEMS[1:]
        head = ["workload", *SYSTEMS, *(f"copickfs / {p}" for p in peers)]
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for w in WORKLOADS:
            med = {s: statistics.median(self.times[(w, s)]) if (w, s) in self.times else None for s in SYSTEMS}
            cells = [f"{self.mib(w) / t:,.0f} MiB/s" if t else "-" for t in med.values()]
            ratios = []
            for p in peers:
                c, t = med["copickfs"], med[p]
                ratios.append(f"{t / c:.2f}x" if c and t else "-")
            label = f"{w} ({self.mib(w):g} MiB)"
            lines.append("| " + " | ".join([label, *cells, *ratios]) + " |")
        return lines


def machine_lines(args: argparse.Namespace, work: Path) -> list[str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    ram = next((f"{int(ln.split()[1]) / 1024 / 1024:.1f} GiB" for ln in open("/proc/meminfo")
                if ln.startswith("MemTotal")), "?")
    libfuse = "?"
    lib = ctypes.util.find_library("fuse3")
    if lib:
        try:
            v = ctypes.CDLL(lib).fuse_version()
            libfuse = f"{v // 100}.{v % 100}"
        except (OSError, AttributeError):
            pass
    r = subprocess.run(["s3fs", "--version"], capture_output=True, text=True)
    s3v = (r.stdout.split("V", 1)[-1].split()[0] if "V" in r.stdout else "?")
    import moto
    import s3fs
    import zarr

    try:
        from copickfs import __version__ as cv
    except ImportError:
        cv = "?"
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(work)], capture_output=True, text=True)
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return [
        f"machine: {cpu}, {os.cpu_count()} cores, {ram} RAM, kernel {platform.release()}, libfuse {libfuse}, "
        f"s3fs-fuse {s3v}, Python {platform.python_version()}",
        f"copickfs {cv}, s3fs {s3fs.__version__}, zarr {zarr.__version__}, moto {moto.__version__} "
        f"(server mode, 127.0.0.1), workdir on {fstype.stdout.strip() or '?'}, load average at start {load}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=256, help="size of the sequential object (default 256)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="64 MiB object, 1 run (unless given)")
    parser.add_argument("--zarr-side", type=int, default=SHAPE[0],
                        help=f"side of the zarr array, a multiple of {CHUNKS[0]} (default {SHAPE[0]})")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: a new temp dir)")
    args = parser.parse_args()
    if args.quick:
        if "--size-mib" not in sys.argv:
            args.size_mib = 64
        if "--runs" not in sys.argv:
            args.runs = 1
    if args.zarr_side % CHUNKS[0] or args.zarr_side < 2 * CHUNKS[0]:
        parser.error(f"--zarr-side must be a multiple of {CHUNKS[0]}, at least {2 * CHUNKS[0]}")
    if args.size_mib % 16:
        parser.error("--size-mib must be a multiple of 16")
    if os.geteuid() != 0:
        parser.error("run as root (dropping the page cache needs it)")
    if shutil.which("s3fs") is None:
        parser.error("s3fs-fuse is not installed (apt-get install -y s3fs)")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="copickfs-bench-s3-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_lines(args, work)
    server = start_server()
    bench = None

    def on_term(signum, frame):  # turn SIGTERM into the same cleanup as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        digest, volume = make_data(server, "bench", args.size_mib, args.seed, (args.zarr_side,) * 3)
        bench = Bench(args, server, "bench", work, digest, volume)
        bench.run()
    finally:
        stop_server(server)
        for mnt in work.glob("*/mnt"):  # belt and braces: nothing left mounted
            force_unmount(mnt)
        if args.workdir is None and not any(is_mounted(str(m)) for m in work.glob("*/mnt")):
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"S3 reads, moto server on 127.0.0.1: {args.size_mib} MiB object, zarr {(args.zarr_side,) * 3} float32 "
          f"chunks {CHUNKS}, median of {args.runs} run(s); ratio = copickfs / peer throughput (>1: copickfs faster)")
    print()
    print("\n".join(bench.table()))
    print()
    print("\n".join(machine))
    print("note: moto is a single Python process on the same 2 cores; first/cold reads of every "
          "system are bounded by it (and by the CPU it takes from the client), not by the filesystem.")
    if bench.problems:
        print("problems:")
        for p in bench.problems:
            print(f"  - {p}")
    else:
        print("bytes verified (sha256 of the object, values of every zarr read) on every system: ok")


if __name__ == "__main__":
    main()
