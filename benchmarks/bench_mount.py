#!/usr/bin/env python3
"""Benchmark a copickfs mount against the plain directory and fuse-overlayfs.

Workloads (each run on every system, median of ``--runs`` reported):

  read-cold   sequential read of one large static file after dropping the page cache
  read-warm   the same read again right away
  write       sequential write of a new file of the same size into the overlay, 1 MiB
              blocks, fsync at the end
  ls -lR      over a static tree of many small files
  find        over the same tree
  creates     many small files created in a new directory by one process

Systems:

  direct          the plain directories (static dir for reads, a fresh dir next to the
                  overlays for writes)
  copickfs        ``copickfs mount -f`` over a fresh overlay dir and the static dir
  fuse-overlayfs  ``fuse-overlayfs -o lowerdir=STATIC,upperdir=U,workdir=W`` (when on PATH)

Every external workload (dd, ls, find, the create loop) is the same process for every
system, so the figures compare the filesystems, not the clients.

Run as root (dropping the page cache needs it):

    python benchmarks/bench_mount.py --quick          # smoke run, a minute or two
    python benchmarks/bench_mount.py --runs 3         # 1 GiB / 50,000 files / 10,000 creates

The data set is generated once under ``--workdir`` and reused. Everything the script
mounts is unmounted in ``finally`` blocks (also on Ctrl-C or SIGTERM); only processes it
started are ever signalled.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024

WORKLOADS = ["read-cold", "read-warm", "write", "ls -lR", "find", "creates"]
THROUGHPUT = {"read-cold", "read-warm"}  # reported as MiB/s, ratio higher = better

# One external process creates all the small files, the same for every system.
CREATE_SCRIPT = r"""
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.mkdir(root)
data = b"x" * size
for i in range(count):
    fd = os.open(f"{root}/f{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)
"""


# --------------------------------------------------------------------------- helpers

def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _unescape(field_: str) -> str:
    return field_.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "surrogateescape")


def mount_entry(path: Path) -> tuple[str, str] | None:
    """(major:minor, fstype) of the mount at ``path``, read from /proc (never touches the mount)."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        lines = f.readlines()
    for line in reversed(lines):
        fields = line.split()
        if _unescape(fields[4]) == target:
            return fields[2], fields[fields.index("-") + 1]
    return None


def is_mounted(path: Path) -> bool:
    return mount_entry(path) is not None


def fusermount_unmount(path: Path) -> None:
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"
    if is_mounted(path):
        subprocess.run([fusermount, "-u", str(path)], capture_output=True)
    if is_mounted(path):
        time.sleep(0.2)
        subprocess.run([fusermount, "-u", str(path)], capture_output=True)
    if is_mounted(path):
        subprocess.run([fusermount, "-uz", str(path)], capture_output=True)


def drop_caches(level: int = 3) -> bool:
    """3: page cache, dentries and inodes; 2: dentries and inodes only."""
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write(f"{level}\n")
        return True
    except OSError:
        return False


def timed(argv: list[str], **kwargs: object) -> float:
    """Wall time of one external process; its stdout goes to /dev/null."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.decode(errors='replace').strip()[-500:]}")
    return elapsed


# --------------------------------------------------------------------------- mounts

@dataclass
class Mount:
    """One FUSE daemon started here in the foreground (so its PID is ours) and its mount point."""

    name: str
    argv: list[str]
    mountpoint: Path
    logfile: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        if is_mounted(self.mountpoint):
            raise RuntimeError(f"{self.mountpoint} is already mounted")
        out = open(self.logfile, "ab")
        try:
            # New session: a Ctrl-C at the terminal reaches this script only, which unmounts cleanly.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while not is_mounted(self.mountpoint):
            if self.proc.poll() is not None:
                tail = self.logfile.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"{self.name} mount failed ({self.proc.returncode}): " + " | ".join(tail))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} mount did not come up within {timeout:.0f} s")
            time.sleep(0.02)
        os.stat(self.mountpoint)  # answers

    def stop(self) -> None:
        fusermount_unmount(self.mountpoint)
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            fusermount_unmount(self.mountpoint)


ACTIVE: list[Mount] = []


def cleanup_all() -> None:
    while ACTIVE:
        m = ACTIVE.pop()
        try:
            m.stop()
        except Exception as e:  # noqa: BLE001 - keep unmounting the rest
            log(f"warning: unmounting {m.mountpoint}: {e}")


# --------------------------------------------------------------------------- systems

@dataclass
class System:
    """Where one system's workloads look: a read root (the static view) and a write root."""

    name: str
    static_view: Path  # path that shows the static tree (big.bin, tree/)
    write_view: Path   # path into which new files go
    mount: Mount | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    data: Path
    big: str = "big.bin"
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    cold_ok: bool = True

    # ---- data set

    def generate(self) -> None:
        a = self.args
        static = self.data / "static"
        stamp = self.data / "COMPLETE"
        if stamp.exists():
            log(f"data set: reusing {self.data}")
            return
        log(f"data set: generating in {self.data} ...")
        if self.data.exists():
            shutil.rmtree(self.data)
        static.mkdir(parents=True)
        # Random data (no sparse or compressible shortcut anywhere).
        subprocess.run(["dd", "if=/dev/urandom", f"of={static / self.big}", "bs=1M",
                        f"count={a.size_mib}", "status=none"], check=True)
        tree = static / "tree"
        per_dir = a.files_per_dir
        payload = b"copick" * (a.small_size // 6 + 1)
        payload = payload[: a.small_size]
        made = 0
        d = 0
        while made < a.files:
            sub = tree / f"d{d:04d}"
            sub.mkdir(parents=True)
            for i in range(min(per_dir, a.files - made)):
                (sub / f"file{i:05d}.json").write_bytes(payload)
                made += 1
            d += 1
        subprocess.run(["sync"], check=False)
        stamp.write_text(json.dumps({"size_mib": a.size_mib, "files": a.files}))
        log(f"data set: {a.size_mib} MiB file, {a.files} files in {d} dirs")

    # ---- systems

    def run_dir(self, run: int, system: str) -> Path:
        return self.work / "runs" / f"{system}-{run}"

    def setup_system(self, name: str, run: int) -> System:
        static = self.data / "static"
        base = self.run_dir(run, name)
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        if name == "direct":
            (base / "upper").mkdir()
            return System(name, static, base / "upper")
        mp = self.work / "mnt" / name
        mp.mkdir(parents=True, exist_ok=True)
        logfile = self.work / "logs" / f"{name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        upper = base / "upper"
        upper.mkdir()
        if name == "copickfs":
            config = base / "config.json"
            config.write_text(json.dumps({"config_type": "filesystem", "name": "bench",
                                          "overlay_root": str(upper), "static_root": str(static)}))
            argv = [*self.args.copickfs_cmd, "mount", "-f", str(config), str(mp)]
            for opt in self.args.copickfs_opt:
                argv += ["-o", opt]
        else:
            (base / "work").mkdir()
            argv = [self.args.fuse_overlayfs, "-f", "-o",
                    f"lowerdir={static},upperdir={upper},workdir={base / 'work'}", str(mp)]
        m = Mount(name, argv, mp, logfile)
        ACTIVE.append(m)
        m.start()
        return System(name, mp, mp, m)

    def teardown_system(self, system: System, run: int) -> None:
        if system.mount is not None:
            system.mount.stop()
            if system.mount in ACTIVE:
                ACTIVE.remove(system.mount)
        shutil.rmtree(self.run_dir(run, system.name), ignore_errors=True)

    # ---- workloads

    def record(self, workload: str, system: str, seconds: float) -> None:
        self.results.setdefault(workload, {}).setdefault(system, []).append(seconds)

    def run_workloads(self, s: System) -> None:
        a = self.args
        big = s.static_view / self.big
        dd_read = ["dd", f"if={big}", "of=/dev/null", "bs=1M", "status=none"]

        if not drop_caches():
            self.cold_ok = False
        self.record("read-cold", s.name, timed(dd_read))
        self.record("read-warm", s.name, timed(dd_read))

        out = s.write_view / "written.bin"
        self.record("write", s.name, timed(["dd", "if=/dev/zero", f"of={out}", "bs=1M",
                                            f"count={a.size_mib}", "conv=fsync", "status=none"]))
        os.unlink(out)

        # Tree walks, each on its own: dentries and inodes dropped first (a FUSE mount forgets
        # what the previous walk looked up), then the static dir walked directly (not timed) so
        # its own caches are warm and the figures compare filesystem overhead, not the disk.
        tree = s.static_view / "tree"
        env = {**os.environ, "LC_ALL": "C"}
        for name, argv in (("ls -lR", ["ls", "-lR", str(tree)]), ("find", ["find", str(tree)])):
            drop_caches(level=2)
            subprocess.run(["ls", "-lR", str(self.data / "static" / "tree")], env=env,
                           stdout=subprocess.DEVNULL, check=True)
            self.record(name, s.name, timed(argv, env=env))

        self.record("creates", s.name, timed([a.python, "-I", "-S", "-c", CREATE_SCRIPT,
                                              str(s.write_view / "creates"), str(a.creates),
                                              str(a.create_size)]))

    def run(self) -> None:
        systems = ["direct", "copickfs"] + (["fuse-overlayfs"] if self.args.fuse_overlayfs else [])
        for run in range(self.args.runs):
            # Systems interleaved within each run, rotated, so machine noise hits all alike.
            order = systems[run % len(systems):] + systems[: run % len(systems)]
            for name in order:
                log(f"run {run + 1}/{self.args.runs}: {name}")
                system = self.setup_system(name, run)
                try:
                    self.run_workloads(system)
                finally:
                    self.teardown_system(system, run)
                line = "  ".join(f"{w}={self.results[w][name][-1]:.3f}s" for w in WORKLOADS)
                log(f"    {line}")


# --------------------------------------------------------------------------- report

def machine_lines(args: argparse.Namespace, work: Path) -> list[str]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    libfuse = "unknown"
    lib = ctypes.util.find_library("fuse3")
    if lib:
        try:
            v = ctypes.CDLL(lib).fuse_version()  # e.g. 314 -> 3.14
            libfuse = f"{v // 100}.{v % 100}"
        except (OSError, AttributeError):
            pass
    fm = subprocess.run(["fusermount3", "-V"], capture_output=True, text=True)
    if fm.returncode == 0 and fm.stdout.strip():
        libfuse += f" (fusermount3 {fm.stdout.strip().split()[-1]})"
    py = platform.python_version()  # the default daemon command is this Python's -m copickfs
    if Path(args.copickfs_cmd[0]).resolve() != Path(sys.executable).resolve():
        try:
            shebang = open(args.copickfs_cmd[0], "rb").readline().decode().removeprefix("#!").split()
            r = subprocess.run([*shebang, "-c", "import platform; print(platform.python_version())"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                py = r.stdout.strip()
        except (OSError, UnicodeDecodeError, IndexError):
            py = "?"
    fov = "not installed"
    if args.fuse_overlayfs:
        r = subprocess.run([args.fuse_overlayfs, "--version"], capture_output=True, text=True)
        fov = next((ln.split("version", 1)[-1].strip(" :") for ln in (r.stdout + r.stderr).splitlines()
                    if ln.startswith("fuse-overlayfs")), "?")
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(work)], capture_output=True, text=True)
    try:
        from copickfs import __version__ as cv
    except ImportError:
        cv = "?"
    load = open("/proc/loadavg").read().split()[:3]
    return [
        f"machine: {cpu}, {os.cpu_count()} cores, {ram} RAM, kernel {platform.release()}, "
        f"libfuse {libfuse}, Python {py}",
        f"copickfs {cv}, fuse-overlayfs {fov}, workdir on {fstype.stdout.strip() or '?'}, "
        f"load average at start {' '.join(load)}",
    ]


def fmt_cell(workload: str, seconds: float | None, size_mib: int) -> str:
    if seconds is None:
        return "-"
    if workload in THROUGHPUT:
        return f"{size_mib / seconds:,.0f} MiB/s"
    if workload == "write":
        return f"{seconds:.2f} s ({size_mib / seconds:,.0f} MiB/s)"
    return f"{seconds:.3f} s"


def ratio(workload: str, mine: float | None, other: float | None) -> str:
    if mine is None or other is None or mine <= 0 or other <= 0:
        return "-"
    if workload in THROUGHPUT:
        return f"{other / mine:.2f}x thrpt"   # copickfs throughput / other throughput
    return f"{mine / other:.2f}x time"


def report(bench: Bench, header: list[str]) -> str:
    a = bench.args
    med = {w: {s: statistics.median(v) for s, v in d.items()} for w, d in bench.results.items()}
    labels = {
        "read-cold": f"read {a.size_mib} MiB, cold",
        "read-warm": f"read {a.size_mib} MiB, warm",
        "write": f"write {a.size_mib} MiB + fsync",
        "ls -lR": f"ls -lR, {a.files} files",
        "find": f"find, {a.files} files",
        "creates": f"create {a.creates} x {a.create_size // 1024} KiB",
    }
    cols = ["workload", "direct", "copickfs", "fuse-overlayfs", "copickfs/direct", "copickfs/fuse-ovl"]
    rows = []
    for w in WORKLOADS:
        m = med.get(w, {})
        rows.append([labels[w],
                     fmt_cell(w, m.get("direct"), a.size_mib),
                     fmt_cell(w, m.get("copickfs"), a.size_mib),
                     fmt_cell(w, m.get("fuse-overlayfs"), a.size_mib),
                     ratio(w, m.get("copickfs"), m.get("direct")),
                     ratio(w, m.get("copickfs"), m.get("fuse-overlayfs"))])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                                 for i, c in enumerate(cells)) + " |"
    out = [*header, "",
           f"median of {a.runs} runs; cells are time (lower is better) except reads, which are "
           "throughput (higher is better).",
           "ratios: 'x thrpt' = copickfs throughput / other's (reads; HIGHER is better, 1.00 = same); "
           "'x time' = copickfs time / other's (LOWER is better, 1.00 = same).",
           ]
    if not bench.cold_ok:
        out.append("WARNING: could not drop the page cache (not root?): 'cold' reads were not cold.")
    out += ["", line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    out += ["", "all runs (seconds):"]
    for w in WORKLOADS:
        for s, v in bench.results.get(w, {}).items():
            out.append(f"  {labels[w]:<28} {s:<15} " + " ".join(f"{x:.3f}" for x in v))
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="runs per workload and system (median reported)")
    p.add_argument("--size-mib", type=int, default=1024, help="size of the large file read and written")
    p.add_argument("--files", type=int, default=50_000, help="small static files for ls -lR / find")
    p.add_argument("--files-per-dir", type=int, default=1000, help="small static files per directory")
    p.add_argument("--small-size", type=int, default=512, help="bytes per small static file")
    p.add_argument("--creates", type=int, default=10_000, help="small files created")
    p.add_argument("--create-size", type=int, default=4096, help="bytes per created file")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 64 MiB, 2,000 files, 1,000 creates, 2 runs (overrides the sizes)")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/copickfs-bench"),
                   help="data set cache, overlay dirs and mount points")
    p.add_argument("--copickfs", dest="copickfs_bin", default=None,
                   help="copickfs command (default: this Python's 'python -m copickfs', else PATH)")
    p.add_argument("-o", "--copickfs-opt", action="append", default=[], metavar="OPT[=VAL],...",
                   help="mount option passed to copickfs (repeatable)")
    p.add_argument("--no-fuse-overlayfs", action="store_true", help="skip fuse-overlayfs even if installed")
    p.add_argument("--json", type=Path, help="also write the raw timings here")
    a = p.parse_args(argv)
    if a.quick:
        a.size_mib, a.files, a.creates = 64, 2000, 1000
        if "--runs" not in (argv if argv is not None else sys.argv[1:]):
            a.runs = 2
    if a.runs < 1:
        p.error("--runs must be at least 1")
    if a.copickfs_bin:
        a.copickfs_cmd = a.copickfs_bin.split()
    else:
        try:
            import copickfs  # noqa: F401
            a.copickfs_cmd = [sys.executable, "-m", "copickfs"]
        except ImportError:
            found = shutil.which("copickfs")
            if not found:
                p.error("copickfs is neither importable nor on PATH; pass --copickfs")
            a.copickfs_cmd = [found]
    a.fuse_overlayfs = None if a.no_fuse_overlayfs else shutil.which("fuse-overlayfs")
    a.python = sys.executable
    return a


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("warning: not root: the page cache cannot be dropped, cold reads will be warm")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # Our own mount points from an earlier, killed run: clear them (nothing else lives there).
    for mp in sorted((work / "mnt").glob("*")) if (work / "mnt").exists() else []:
        if is_mounted(mp):
            log(f"clearing a leftover mount at {mp}")
            fusermount_unmount(mp)
    data = work / f"data-{args.size_mib}m-{args.files}f-{args.files_per_dir}pd-{args.small_size}b"
    bench = Bench(args, work, data)
    header = machine_lines(args, work)
    for line in header:
        print(line, flush=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    interrupted = False
    try:
        bench.generate()
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: unmounting and reporting what was measured")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the unmounting short
        cleanup_all()
        shutil.rmtree(work / "runs", ignore_errors=True)
    if bench.results:
        print()
        print(report(bench, [f"sizes: --size-mib {args.size_mib} --files {args.files} "
                             f"--creates {args.creates} --runs {args.runs}"
                             + (f", copickfs -o {','.join(args.copickfs_opt)}" if args.copickfs_opt else "")]))
    if args.json:
        args.json.write_text(json.dumps({"machine": header, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": bench.results}, indent=1))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
