"""The Markdown table, the machine line and the PNG chart.

Figures are medians over runs with their min–max spread. Ratios are taken run by run
(copickfs and the other system measured in the same run, so machine noise hits both alike)
and then summarised the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .workloads import Workload

# workload key -> system -> run index -> seconds
Results = dict[str, dict[str, dict[int, float]]]


def fmt(x: float) -> str:
    """Three significant digits, thousands separated: figures are noisier than that anyway."""
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def spread(values: Sequence[float], suffix: str = "") -> str:
    """Median, then min–max when there is more than one value."""
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med) + suffix
    return f"{fmt(med)}{suffix} ({fmt(min(values))}–{fmt(max(values))})"


def figures(w: Workload, runs: dict[int, float]) -> list[float]:
    return [w.figure(t) for t in runs.values()]


def run_ratios(w: Workload, mine: dict[int, float], other: dict[int, float]) -> list[float]:
    """copickfs's figure / the other's, for each run both were measured in."""
    return [w.figure(mine[r]) / w.figure(other[r]) for r in sorted(mine.keys() & other.keys())]


def table(workloads: list[Workload], results: Results, systems: list[str], reference: str = "copickfs",
          ) -> list[str]:
    """One row per workload: each system's figure, then copickfs / each other system."""
    others = [s for s in systems if s != reference]
    head = ["workload", "unit", *systems, *(f"{reference} / {o}" for o in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for w in workloads:
        row = results.get(w.key, {})
        cells = [spread(figures(w, row[s])) if row.get(s) else "–" for s in systems]
        for o in others:
            ratios = run_ratios(w, row.get(reference, {}), row.get(o, {}))
            cells.append(spread(ratios, "x") if ratios else "–")
        label = w.label + (" †" if w.note else "")
        unit = w.unit + (" ↑" if w.higher_is_better else " ↓")
        lines.append("| " + " | ".join([label, unit, *cells]) + " |")
    return lines


def legend(reference: str = "copickfs") -> str:
    return (f"Cells: median (min–max) over runs. ↑ higher is better, ↓ lower is better. "
            f"Ratios are {reference}'s figure / the other's, taken within each run, then median (min–max): "
            "for ↑ rows above 1 means copickfs is faster, for ↓ rows below 1 does.")


# --------------------------------------------------------------------------- machine

def _first_line(path: str, prefix: str) -> str | None:
    try:
        with open(path) as f:
            return next((ln for ln in f if ln.startswith(prefix)), None)
    except OSError:
        return None


def libfuse_version() -> str:
    lib = ctypes.util.find_library("fuse3")
    if lib:
        try:
            v = ctypes.CDLL(lib).fuse_version()  # e.g. 314 -> 3.14
            return f"{v // 100}.{v % 100}"
        except (OSError, AttributeError):
            pass
    return "?"


def machine_line(work: Path, peer_versions: dict[str, str], load: str) -> str:
    cpu_line = _first_line("/proc/cpuinfo", "model name")
    cpu = cpu_line.split(":", 1)[1].strip() if cpu_line else "?"
    mem_line = _first_line("/proc/meminfo", "MemTotal")
    ram = f"{int(mem_line.split()[1]) / 1024 / 1024:.1f} GiB" if mem_line else "?"
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(work)], capture_output=True, text=True,
                            check=False)
    try:
        from copickfs import __version__ as copickfs_version
    except ImportError:
        copickfs_version = "?"
    peers = ", ".join(f"{name} {version}" for name, version in peer_versions.items()) or "none"
    return (f"Machine: {cpu}, {os.cpu_count()} cores, {ram} RAM, kernel {platform.release()}, "
            f"libfuse {libfuse_version()}, Python {platform.python_version()}, copickfs {copickfs_version}; "
            f"peers: {peers}; data on {fstype.stdout.strip() or '?'}; load average at start {load}.")


# --------------------------------------------------------------------------- chart

def chart(path: Path, panels: list[tuple[str, list[Workload], Results, list[str], str]]) -> None:
    """One panel per table: each system's time relative to the panel's reference (log scale),
    bars at the median of the per-run ratios, whiskers at their min and max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    heights = [max(2.0, 0.24 * len(p[1]) * max(1, len(p[3]) - 1) ** 0.6 + 1.2) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, workloads, results, systems, reference) in zip(axes[:, 0], panels, strict=True):
        shown = [s for s in systems if s != reference]
        bar = 0.8 / max(1, len(shown))
        for i, system in enumerate(shown):
            meds, lows, highs, ys = [], [], [], []
            for j, w in enumerate(workloads):
                row = results.get(w.key, {})
                # time relative to the reference: inverse of the figure ratio for rates
                ratios = run_ratios(w, row.get(system, {}), row.get(reference, {}))
                if not ratios:
                    continue
                rel = [1 / r if w.higher_is_better else r for r in ratios]
                med = statistics.median(rel)
                meds.append(med)
                lows.append(med - min(rel))
                highs.append(max(rel) - med)
                ys.append(j + (i - (len(shown) - 1) / 2) * bar)
            style = {"edgecolor": "black", "linewidth": 0.6} if system == "copickfs" else {}
            ax.barh(ys, meds, height=bar, xerr=[lows, highs], color=colors[i % len(colors)], label=system,
                    error_kw={"elinewidth": 0.7, "capsize": 1.5}, **style)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 2, 10: not 5×10⁻¹
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yticks(range(len(workloads)), [w.key for w in workloads], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"time relative to {reference} (log scale; lower is better)", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

