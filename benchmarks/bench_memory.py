#!/usr/bin/env python3
"""Daemon memory against the number of distinct paths the kernel has looked up.

Builds a static tree of ``--files`` empty files (``--per-dir`` per directory) once under
``--workdir``, mounts it with copickfs over an empty overlay, stats every file through
the mount (one walk), and samples the daemon's resident memory (VmRSS) as it goes.
Prints the RSS after mounting, the peak during the walk, the RSS at the end, and the
size of the daemon's inode table is implied by the limit (`-o max_inodes=`).

    python benchmarks/bench_memory.py                      # 1,000,000 files
    python benchmarks/bench_memory.py --files 200000       # quicker

Everything mounted is unmounted in a ``finally`` block; only the daemon this script
started is ever signalled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mounting import mounted, write_config  # noqa: E402


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def build_tree(static: Path, files: int, per_dir: int) -> None:
    stamp = static / ".built"
    if stamp.exists() and stamp.read_text() == f"{files}/{per_dir}":
        return
    print(f"building {files:,} files under {static} ...", file=sys.stderr, flush=True)
    for d in range(0, files, per_dir):
        directory = static / f"d{d // per_dir:05d}"
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(min(per_dir, files - d)):
            os.close(os.open(directory / f"f{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    stamp.write_text(f"{files}/{per_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-dir", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/copickfs-bench-memory"))
    parser.add_argument("-o", dest="options", action="append", default=[], help="mount options")
    args = parser.parse_args()

    static, overlay, mnt = args.workdir / "static", args.workdir / "overlay", args.workdir / "mnt"
    for d in (static, overlay, mnt):
        d.mkdir(parents=True, exist_ok=True)
    build_tree(static, args.files, args.per_dir)
    subprocess.run(["rm", "-rf", str(overlay)], check=True)
    overlay.mkdir()
    config = write_config(args.workdir / "config.json", overlay, static)

    with mounted(config, mnt, *args.options) as pid:
        start_rss = rss_mib(pid)
        peak = [start_rss]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], rss_mib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        count = 0
        for directory in sorted(d for d in os.listdir(mnt) if d.startswith("d")):
            for name in os.listdir(mnt / directory):
                os.stat(mnt / directory / name)
                count += 1
        elapsed = time.monotonic() - began
        time.sleep(1.5)  # let the trimming settle
        done.set()
        sampler.join()
        end_rss = rss_mib(pid)
    result = {"paths_stated": count, "seconds": round(elapsed, 1), "rss_after_mount_mib": round(start_rss, 1),
              "rss_peak_mib": round(max(peak[0], end_rss), 1), "rss_end_mib": round(end_rss, 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
