#!/usr/bin/env python3
"""Benchmark copickfs against the plain directories and the union filesystems beside it.

Systems (each over the same static data set as the read-only lower layer, with a fresh,
empty writable upper directory per run):

  direct          the plain directories (static for reads, a fresh directory for writes)
  copickfs        ``copickfs mount -f`` with its default options (add some with -o)
  fuse-overlayfs  ``fuse-overlayfs -o lowerdir=,upperdir=,workdir=``
  mergerfs        ``mergerfs -o cache.files=auto-full,dropcacheonclose=true,func.getattr=newest,
                  category.create=ff UPPER=RW:STATIC=RO`` (its documented caching options)
  unionfs-fuse    ``unionfs -o cow UPPER=RW:STATIC=RO``
  overlayfs       the kernel's ``mount -t overlay`` (root only; skipped, with the reason, if
                  the kernel or the container refuses it)

Peers that are not installed are reported as skipped; ``--install-peers`` apt-get installs
mergerfs and unionfs-fuse first.

Local workloads (every system, every run; systems rotated within each run so machine noise
hits all alike):

  sequential read of a large static file, cold and warm page cache (dd, 1 MiB blocks)
  random 4 KiB reads of it, cold cache (pread at seeded offsets, POSIX_FADV_RANDOM)
  sequential write of a new file of the same size into the overlay, fsync at the end
  find, ls -lR and du over many small static files: first (dentries and inodes dropped,
    the static tree's own caches warm, so the disk is not what is measured) and repeated
  small-file creates, then deletes of those files
  copick-shaped: writing picks files (copick's JSON) into ExperimentRuns/<run>/Picks/;
    reading a whole OME-Zarr float32 tomogram (all chunks; cold, warm) and a random 64^3
    region of it (cold) with zarr.open on the path; reading a precomputed pyramid chunk by
    chunk under its flat names while it is stored nested + gzip. Only copickfs serves those
    names: direct and the peers read the stored nested .gz names and gunzip in the reader.

S3 workloads (copickfs, s3fs used from Python, s3fs-fuse with and without its cache, over
a moto S3 server on 127.0.0.1) are those of bench_s3.py, run by its own code.

Every figure is the median of the runs, with the min–max spread; every ratio is copickfs's
figure over the other system's, taken within each run. The copickfs daemon's peak resident
memory (VmHWM) is read before each unmount. What is read is checked against the source
(sha256 of the file, the tomogram's values, the region, the pyramid's chunks, a picks file
read back) on every system.

Run as root: dropping the page cache (cold reads, first walks) and kernel overlayfs need it.

    sudo .venv/bin/python benchmarks/bench.py --quick --out bench-out    # a few minutes
    sudo .venv/bin/python benchmarks/bench.py --out bench-out            # full sizes, 30-60 min

--out DIR receives bench.md (the tables and the machine line) and bench.png (the chart);
bench.md is also printed. The data set is generated once under --workdir and reused.
Everything mounted is unmounted in finally blocks (also on Ctrl-C or SIGTERM); only
processes this script started are ever signalled, by PID.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchkit import dataset, report, systems
from benchkit.dataset import Sizes
from benchkit.report import Results
from benchkit.systems import LOCAL_PEERS, Launcher, System, unmount, unmount_all
from benchkit.workloads import Runner, Workload, local_workloads

S3_SYSTEMS = ["s3fs (Python)", "copickfs", "s3fs-fuse", "s3fs-fuse use_cache"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- arguments

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes (256 MiB file, 20,000 files, 2,000 creates, 256^3 tomogram, "
                        "500 picks files; S3: 16 MiB, 128^3), 3 runs, 2 for S3: a few minutes")
    p.add_argument("--runs", type=int, help="runs of the local workloads (default 5; --quick 3)")
    p.add_argument("--s3-runs", type=int, help="runs of the S3 workloads (default 3; --quick 2)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="where bench.md and bench.png go")
    p.add_argument("--workdir", type=Path, default=Path("/var/tmp/copickfs-bench-suite"),
                   help="data set (generated once, reused), upper dirs, mount points, logs")
    p.add_argument("--systems", help="comma-separated subset of: direct,copickfs," + ",".join(LOCAL_PEERS))
    p.add_argument("--no-s3", action="store_true", help="skip the S3 workloads")
    p.add_argument("--install-peers", action="store_true", help="apt-get install mergerfs unionfs-fuse first")
    p.add_argument("-o", "--copickfs-opt", action="append", default=[], metavar="OPT[=VAL]",
                   help="mount option for copickfs (repeatable)")
    p.add_argument("--seed", type=int, default=1, help="seeds the random reads and regions")
    p.add_argument("--json", type=Path, help="also write every timing (seconds) here")
    sizes = p.add_argument_group("sizes (override the preset of the mode)")
    for f in dataclasses.fields(Sizes):
        sizes.add_argument("--" + f.name.replace("_", "-"), type=int, dest=f"size_{f.name}", metavar="N")
    sizes.add_argument("--s3-size-mib", type=int,
                       help="S3 object size, a multiple of 16 (default 256; --quick 16)")
    sizes.add_argument("--s3-zarr-side", type=int, help="S3 zarr array side (default 256; --quick 128)")
    a = p.parse_args(argv)
    preset = dataset.QUICK if a.quick else dataset.FULL
    given = {f.name: getattr(a, f"size_{f.name}") for f in dataclasses.fields(Sizes)}
    a.sizes = dataclasses.replace(preset, **{k: v for k, v in given.items() if v is not None})
    a.runs = a.runs or (3 if a.quick else 5)
    a.s3_runs = a.s3_runs or (2 if a.quick else 3)
    a.s3_size_mib = a.s3_size_mib or (16 if a.quick else 256)
    a.s3_zarr_side = a.s3_zarr_side or (128 if a.quick else 256)
    if a.runs < 1 or a.s3_runs < 1:
        p.error("--runs and --s3-runs must be at least 1")
    if a.sizes.tomo_side < 130 or a.sizes.pyramid_side % a.sizes.pyramid_chunk:
        p.error("--tomo-side must be at least 130; --pyramid-side a multiple of --pyramid-chunk")
    return a


# --------------------------------------------------------------------------- systems

def choose_systems(args: argparse.Namespace, work: Path) -> tuple[list[str], dict[str, str]]:
    """The systems that will run, and the reason for each peer that will not."""
    wanted = (["direct", "copickfs", *LOCAL_PEERS] if not args.systems
              else [s.strip() for s in args.systems.split(",") if s.strip()])
    unknown = set(wanted) - {"direct", "copickfs", *LOCAL_PEERS}
    if unknown:
        sys.exit(f"unknown system(s): {', '.join(sorted(unknown))}")
    chosen, skipped = [], {}
    for name in wanted:
        reason = systems.missing_reason(name) if name in LOCAL_PEERS else None
        if name == "overlayfs":
            reason = systems.probe_overlayfs(work / "probe-overlayfs")
        if reason:
            skipped[name] = reason
        else:
            chosen.append(name)
    return chosen, skipped


def peer_versions(names: list[str]) -> dict[str, str]:
    versions = {}
    for name in names:
        if name in ("direct", "copickfs"):
            continue
        kernel = f"(kernel {os.uname().release})"
        versions[name] = kernel if name == "overlayfs" else systems.debian_version(name)
    return versions


def install_peers() -> None:
    if os.geteuid() != 0:
        sys.exit("--install-peers needs root (apt-get)")
    log("installing mergerfs and unionfs-fuse with apt-get ...")
    subprocess.run(["apt-get", "install", "-y", "mergerfs", "unionfs-fuse"], check=True)


# --------------------------------------------------------------------------- local runs

def run_local(args: argparse.Namespace, names: list[str], runner: Runner, launcher: Launcher,
              results: Results, peaks: list[float], problems: list[str]) -> None:
    for run in range(args.runs):
        order = names[run % len(names):] + names[: run % len(names)]
        for name in order:
            log(f"run {run + 1}/{args.runs}: {name}")
            started = time.monotonic()

            def record(workload: str, seconds: float, name: str = name, run: int = run) -> None:
                results.setdefault(workload, {}).setdefault(name, {})[run] = seconds

            system: System | None = None
            try:
                system = launcher.setup(name, run)
                runner.run(system, run, record)
            except Exception as e:  # noqa: BLE001 - report it, go on with the other systems
                problems.append(f"{name}, run {run + 1}: {type(e).__name__}: {e}")
                log(f"  !! {problems[-1]}")
            finally:
                if system is not None:
                    launcher.teardown(system, run)
                    if "peak_rss_mib" in system.extra and name == "copickfs":
                        peaks.append(system.extra["peak_rss_mib"])
                else:
                    unmount_all()
            log(f"  done in {time.monotonic() - started:.1f} s")


# --------------------------------------------------------------------------- S3

def run_s3(args: argparse.Namespace, work: Path, problems: list[str]
           ) -> tuple[list[Workload], Results, set[str]]:
    """bench_s3.py's workloads, by its own code; its per-run timings in this script's shape, and
    the systems whose object bytes it checked (it checks every zarr read's values itself)."""
    import bench_s3

    s3work = work / "s3"
    s3work.mkdir(parents=True, exist_ok=True)
    bench = None
    server = bench_s3.start_server()
    try:
        shape = (args.s3_zarr_side,) * 3
        digest, volume = bench_s3.make_data(server, "bench", args.s3_size_mib, args.seed, shape)
        ns = argparse.Namespace(size_mib=args.s3_size_mib, runs=args.s3_runs, seed=args.seed,
                                zarr_side=args.s3_zarr_side)
        bench = bench_s3.Bench(ns, server, "bench", s3work, digest, volume)
        bench.run()
    finally:
        bench_s3.stop_server(server)
        for mnt in s3work.glob("*/mnt"):
            unmount(mnt)
    problems.extend(f"S3 {p}" for p in bench.problems)
    side = args.s3_zarr_side
    labels = {"seq first": f"S3: sequential read {args.s3_size_mib} MiB object, first",
              "seq again": "the same again, page cache dropped",
              "zarr all cold": f"S3: zarr, whole {side}³ float32 array, cold",
              "zarr all warm": "the same, warm",
              "zarr region cold": "S3: zarr, random 64³ region, cold",
              "zarr region warm": "the same, warm"}
    workloads = [Workload(f"s3 {w}", labels[w], "MiB/s", bench.mib(w)) for w in bench_s3.WORKLOADS]
    results: Results = {}
    for (w, system), times in bench.times.items():
        # bench_s3 appends one timing per run; a run that failed leaves a gap at the end only
        results.setdefault(f"s3 {w}", {})[system] = dict(enumerate(times))
    return workloads, results, bench.verified


# --------------------------------------------------------------------------- report

def markdown(args: argparse.Namespace, machine: str, local: tuple[list[Workload], Results, list[str]],
             s3: tuple[list[Workload], Results, set[str]] | None, skipped: dict[str, str], peaks: list[float],
             cold_ok: bool, problems: list[str], verified: dict[str, set[str]]) -> str:
    workloads, results, names = local
    s = args.sizes
    out = [f"Local workloads: median of {args.runs} runs ({'--quick' if args.quick else 'full'} sizes); "
           + report.legend(), ""]
    out += report.table(workloads, results, names)
    notes: dict[str, list[str]] = {}  # one line per note, naming every workload it is about
    for w in workloads:
        if w.note:
            notes.setdefault(w.note, []).append(w.key)
    out += [""] + [f"- † {', '.join(keys)}: {text}." for text, keys in notes.items()]
    out.append(f"- mergerfs options: {systems.MERGERFS_OPTIONS}; unionfs-fuse: -o cow; "
               f"copickfs: {','.join(args.copickfs_opt) or 'defaults'}.")
    if peaks:
        out.append(f"- copickfs daemon peak resident memory (VmHWM before unmount): median "
                   f"{statistics.median(peaks):.0f} MiB, max {max(peaks):.0f} MiB over {len(peaks)} runs "
                   f"(the whole local workload list per mount).")
    for name, reason in skipped.items():
        out.append(f"- skipped {name}: {reason}")
    if not cold_ok:
        out.append("- WARNING: the page cache could not be dropped (not root): 'cold' and 'first' were warm.")
    if s3 is not None:
        s3_workloads, s3_results, s3_verified = s3
        out += ["", (f"S3 static root (bench_s3.py's workloads; moto server on 127.0.0.1, a single Python "
                     f"process on the same cores, bounds every first read): median of {args.s3_runs} runs; "
                     "ratios are copickfs / each."), ""]
        out += report.table(s3_workloads, s3_results, S3_SYSTEMS)
        out += ["", (f"S3 bytes checked (sha256 of the object): {', '.join(sorted(s3_verified)) or 'none'}; "
                     "the values of every zarr read are compared with the array written (mismatches are "
                     "listed under Problems).")]
    checks = sorted(set().union(*verified.values())) if verified else []
    passed = ", ".join(f"{n} ({len(v)}/{len(checks)})" for n, v in sorted(verified.items()))
    out += ["", (f"What was read, checked against the source ({'; '.join(checks) or 'nothing'}): "
                 f"passed on {passed or 'no system'}.")]
    if problems:
        out += ["", "Problems:"] + [f"- {p}" for p in problems]
    out += ["", machine,
            (f"Sizes: {s.big_mib} MiB file, {s.files:,} files ({s.files_per_dir} a directory, "
             f"{s.small_size} B), {s.creates:,} creates of {s.create_size} B, {s.random_reads:,} random reads, "
             f"{s.tomo_side}³ tomogram, {s.picks:,} picks files, {s.pyramid_side}³ pyramid in "
             f"{s.pyramid_chunk}³ chunks.")]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main

def _on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("warning: not root: the page cache cannot be dropped (cold reads will be warm) "
            "and kernel overlayfs cannot be mounted")
    if args.install_peers:
        install_peers()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for leftover in [*work.glob("mnt/*"), *work.glob("s3/*/mnt")]:  # our own, from a killed run
        unmount(leftover)
    names, skipped = choose_systems(args, work)
    if not args.no_s3 and shutil.which("s3fs") is None:
        skipped["s3fs-fuse"] = systems.missing_reason("s3fs-fuse") or "not installed"
    versions = peer_versions(names + (["s3fs-fuse"] if not args.no_s3 and "s3fs-fuse" not in skipped else []))
    machine = report.machine_line(work, versions, load)
    log(machine)
    for name, reason in skipped.items():
        log(f"skipping {name}: {reason}")

    data = work / f"data-{args.sizes.key()}"
    manifest = dataset.ensure(data, args.sizes)
    (work / "picks.json").write_text(dataset.picks_json(args.sizes.points_per_pick))
    runner = Runner(args.sizes, manifest, data / "static", work, seed=args.seed)
    launcher = Launcher(work, data / "static", [sys.executable, "-m", "copickfs"], args.copickfs_opt)

    results: Results = {}
    peaks: list[float] = []
    problems: list[str] = []
    s3: tuple[list[Workload], Results, set[str]] | None = None
    interrupted = False
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        run_local(args, names, runner, launcher, results, peaks, problems)
        if not args.no_s3 and "s3fs-fuse" not in skipped:
            log("S3 workloads (bench_s3.py) ...")
            try:
                s3 = run_s3(args, work, problems)
            except Exception as e:  # noqa: BLE001 - the local results still get reported
                problems.append(f"S3 workloads: {type(e).__name__}: {e}")
                log(f"  !! {problems[-1]}")
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: unmounting, then reporting what was measured")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the unmounting short
        unmount_all()
        shutil.rmtree(work / "runs", ignore_errors=True)

    workloads = local_workloads(args.sizes)
    text = markdown(args, machine, (workloads, results, names), s3, skipped, peaks, runner.cold_ok,
                    runner.problems + problems, runner.verified)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(text)
    panels = [("local workloads", workloads, results, names, "direct")]
    if s3 is not None:
        panels.append(("S3 static root", s3[0], s3[1], S3_SYSTEMS, "s3fs (Python)"))
    if results:
        report.chart(args.out / "bench.png", panels)
    if args.json:
        raw = {"local": results, "s3": s3[1] if s3 else {}, "peak_rss_mib": peaks, "machine": machine}
        args.json.write_text(json.dumps(raw, indent=1))
    print(text)
    log(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.png'}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
