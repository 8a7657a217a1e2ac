"""The local workloads, run the same way on every system, and the checks of what they read.

Where a workload is an external process (dd, find, ls, du, the small Python loops below),
it is the same process for every system, so the figures compare filesystems, not clients.
The copick-shaped reads (zarr, pyramid chunks) run in this process, again identically.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dataset import PYRAMID_RELPATH, RUNS, TOMO_RELPATH, Manifest, Sizes, flat_name, nested_gz_name
from .systems import System

MiB = 1 << 20

# Small loops run by `python -I -S` (no site, no imports beyond the standard library): the
# same client for every system, and nothing of this script's state in the way.
RANDOM_READS = r"""
import os, random, sys
path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
blocks = os.fstat(fd).st_size // 4096
rng = random.Random(seed)
for _ in range(count):
    if len(os.pread(fd, 4096, rng.randrange(blocks) * 4096)) != 4096:
        sys.exit("short read")
os.close(fd)
"""
CREATES = r"""
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.mkdir(root)
data = b"x" * size
for i in range(count):
    fd = os.open(f"{root}/f{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
"""
DELETES = r"""
import os, sys
root = sys.argv[1]
for name in os.listdir(root):
    os.unlink(f"{root}/{name}")
os.rmdir(root)
"""
PICKS = r"""
import os, sys
root, count, runs, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), open(sys.argv[4]).read()
for i in range(count):
    picks = f"{root}/ExperimentRuns/TS_{i % runs:03d}/Picks"
    if i < runs:
        os.mkdir(picks)
    with open(f"{picks}/bench_{i:05d}_ribosome.json", "w") as f:
        f.write(payload)
"""


@dataclass(frozen=True)
class Workload:
    """One row of the table. ``amount`` turns seconds into the figure for rate units."""

    key: str
    label: str
    unit: str  # "MiB/s", "ops/s" (higher is better), "s", "ms" (lower is better)
    amount: float = 1.0
    note: str = ""

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")

    def figure(self, seconds: float) -> float:
        if self.unit.endswith("/s"):
            return self.amount / seconds
        return seconds * 1000 if self.unit == "ms" else seconds


def local_workloads(s: Sizes) -> list[Workload]:
    big = f"{s.big_mib / 1024:g} GiB" if s.big_mib >= 1024 else f"{s.big_mib} MiB"
    tomo_mib = s.tomo_side ** 3 * 4 / MiB
    pyr_mib = s.pyramid_side ** 3 / MiB
    n_chunks = (s.pyramid_side // s.pyramid_chunk) ** 3
    walks = []
    for tool in ("find", "ls -lR", "du"):
        walks.append(Workload(f"{tool} first", f"`{tool}`, {s.files:,} static files, first", "s",
                              note="dentries dropped, the disk's own caches warm"))
        walks.append(Workload(f"{tool} again", f"`{tool}`, the same again", "s"))
    return [
        Workload("read cold", f"sequential read {big} static file, cold cache", "MiB/s", s.big_mib),
        Workload("read warm", "the same, warm page cache", "MiB/s", s.big_mib),
        Workload("random 4k", f"{s.random_reads:,} random 4 KiB reads, cold cache", "ops/s", s.random_reads),
        Workload("write", f"sequential write {big} into the overlay + fsync", "MiB/s", s.big_mib),
        *walks,
        Workload("creates", f"create {s.creates:,} files of {s.create_size // 1024} KiB", "s"),
        Workload("deletes", f"delete those {s.creates:,} files", "s"),
        Workload("picks", f"write {s.picks:,} copick picks files ({s.points_per_pick} points)", "s"),
        Workload("tomo cold", f"zarr: whole {s.tomo_side}³ float32 OME-Zarr tomogram, cold", "MiB/s",
                 tomo_mib),
        Workload("tomo warm", "the same, warm page cache", "MiB/s", tomo_mib),
        Workload("region cold", "zarr: random 64³ region of it, cold", "ms"),
        Workload("pyramid cold", f"precomputed: {n_chunks} chunks under flat names, stored nested+gzip, cold "
                 "(direct and peers: the stored .gz names, gunzipped by the reader)", "MiB/s", pyr_mib,
                 note="only copickfs serves a chunk under other names than its stored one (decompressed); "
                      "direct and the peers read the stored nested .gz names and gunzip in the reader"),
        Workload("pyramid warm", "the same again", "MiB/s", pyr_mib),
    ]


def drop_caches(level: int = 3) -> bool:
    """3: page cache, dentries and inodes; 2: dentries and inodes. Needs root."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write(f"{level}\n")
        return True
    except OSError:
        return False


def run_process(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one external process (stdout discarded); raises if it fails."""
    start = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       check=False)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace').strip()[-300:]}")
    return elapsed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def region(side: int, seed: int) -> tuple[slice, ...]:
    """A 64³ box that starts off every chunk boundary (so it spans chunks as a user's would)."""
    rng = np.random.default_rng(seed)
    starts = [int(rng.integers(1, side - 64)) for _ in range(3)]
    return tuple(slice(s + (s % 64 == 0), s + (s % 64 == 0) + 64) for s in starts)


@dataclass
class Runner:
    """Runs every local workload on one system and checks what it read against the manifest."""

    sizes: Sizes
    manifest: Manifest
    static: Path
    work: Path
    seed: int = 1
    cold_ok: bool = True
    problems: list[str] = field(default_factory=list)
    verified: dict[str, set[str]] = field(default_factory=dict)  # system -> what was checked
    _expected_region: dict[int, str] = field(default_factory=dict)

    def _drop(self, level: int = 3) -> None:
        if not drop_caches(level):
            self.cold_ok = False

    def _check(self, system: str, what: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.verified.setdefault(system, set()).add(what)
        else:
            self.problems.append(f"{system}: WRONG {what} {detail}".rstrip())
            print(f"  !! {self.problems[-1]}", file=sys.stderr, flush=True)

    def _first(self, system: str, what: str) -> bool:
        return what not in self.verified.get(system, set())

    def run(self, sys_: System, run: int, record: Callable[[str, float], None]) -> None:
        s, py = self.sizes, sys.executable
        big = sys_.read_root / "big.bin"
        dd_read = ["dd", f"if={big}", "of=/dev/null", "bs=1M", "status=none"]
        self._drop()
        record("read cold", run_process(dd_read))
        record("read warm", run_process(dd_read))
        if self._first(sys_.name, "bytes of big.bin"):
            digest = sha256_file(big)
            self._check(sys_.name, "bytes of big.bin", digest == self.manifest.big_sha256, digest[:12])

        self._drop()
        record("random 4k", run_process([py, "-I", "-S", "-c", RANDOM_READS, str(big), str(s.random_reads),
                                         str(self.seed + run)]))

        out = sys_.write_root / "written.bin"
        record("write", run_process(["dd", "if=/dev/zero", f"of={out}", "bs=1M", f"count={s.big_mib}",
                                     "conv=fsync", "status=none"]))
        os.unlink(out)

        self._walks(sys_, record)

        created = sys_.write_root / "creates"
        record("creates", run_process([py, "-I", "-S", "-c", CREATES, str(created), str(s.creates),
                                       str(s.create_size)]))
        self._check(sys_.name, "count of created files", len(os.listdir(created)) == s.creates)
        record("deletes", run_process([py, "-I", "-S", "-c", DELETES, str(created)]))

        self._picks(sys_, record)
        self._zarr(sys_, run, record)
        self._pyramid(sys_, record)

    def _walks(self, sys_: System, record: Callable[[str, float], None]) -> None:
        """Each tool on its own: dentries and inodes dropped first (so a mount answers from its
        own daemon), then the static tree walked directly, untimed, so the disk is not measured."""
        tree = str(sys_.read_root / "tree")
        env = {**os.environ, "LC_ALL": "C"}
        tools = (("find", ["find", tree]), ("ls -lR", ["ls", "-lR", tree]), ("du", ["du", "-s", tree]))
        for tool, argv in tools:
            self._drop(2)
            run_process(["ls", "-lR", str(self.static / "tree")], env=env)
            record(f"{tool} first", run_process(argv, env=env))
            record(f"{tool} again", run_process(argv, env=env))

    def _picks(self, sys_: System, record: Callable[[str, float], None]) -> None:
        payload = self.work / "picks.json"
        if sys_.name == "direct":  # the run directories a union shows from its lower layer
            for r in range(RUNS):
                (sys_.write_root / f"ExperimentRuns/TS_{r:03d}").mkdir(parents=True, exist_ok=True)
        record("picks", run_process([sys.executable, "-I", "-S", "-c", PICKS, str(sys_.write_root),
                                     str(self.sizes.picks), str(RUNS), str(payload)]))
        back = (sys_.write_root / "ExperimentRuns/TS_001/Picks/bench_00001_ribosome.json").read_text()
        self._check(sys_.name, "picks file read back", back == payload.read_text())

    def _zarr(self, sys_: System, run: int, record: Callable[[str, float], None]) -> None:
        import zarr

        path = str(sys_.read_root / TOMO_RELPATH / "0")
        got: dict[str, np.ndarray] = {}

        def read_all() -> None:
            got["all"] = zarr.open_array(path, mode="r")[...]

        self._drop()
        record("tomo cold", timed(read_all))
        if self._first(sys_.name, "tomogram values"):
            digest = hashlib.sha256(got["all"].tobytes()).hexdigest()
            self._check(sys_.name, "tomogram values", digest == self.manifest.tomo_sha256, digest[:12])
        del got["all"]
        record("tomo warm", timed(read_all))
        del got["all"]

        sel = region(self.sizes.tomo_side, self.seed + run)
        if run not in self._expected_region:
            stored = zarr.open_array(str(self.static / TOMO_RELPATH / "0"), mode="r")[sel]
            self._expected_region[run] = hashlib.sha256(stored.tobytes()).hexdigest()
        self._drop()
        record("region cold", timed(lambda: got.update(region=zarr.open_array(path, mode="r")[sel])))
        digest = hashlib.sha256(got["region"].tobytes()).hexdigest()
        self._check(sys_.name, "region values", digest == self._expected_region[run], f"run {run}")

    def _pyramid(self, sys_: System, record: Callable[[str, float], None]) -> None:
        """copickfs serves the flat names (decompressed); the others read what is stored and gunzip."""
        root = sys_.read_root / PYRAMID_RELPATH
        chunks = self.manifest.pyramid_chunks
        got: list[bytes] = []

        def read_chunks() -> None:
            got.clear()
            if sys_.name == "copickfs":
                for c in chunks:
                    with open(root / flat_name(c), "rb") as f:
                        got.append(f.read())
            else:
                for c in chunks:
                    with open(root / nested_gz_name(c), "rb") as f:
                        got.append(gzip.decompress(f.read()))

        self._drop()
        record("pyramid cold", timed(read_chunks))
        h = hashlib.sha256()
        for data in got:
            h.update(data)
        self._check(sys_.name, "pyramid chunks", h.hexdigest() == self.manifest.pyramid_sha256)
        record("pyramid warm", timed(read_chunks))
        got.clear()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
