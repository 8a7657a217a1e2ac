#!/usr/bin/env bash
# Build the sample copick project, an empty overlay and a config mounting one over the other.
# Usage: scripts/build-sample.sh [DIR]   (DIR defaults to ./demo-data, as for scripts/demo.sh)
#   DIR/static       the sample project: run TS_001 with an OME-Zarr tomogram, picks, a mesh
#                    and a segmentation (kept if already built)
#   DIR/overlay      the overlay, empty at first
#   DIR/config.json  the copick config; mount it, or install it as a service:
#                      .venv/bin/copickfs mount DIR/config.json MOUNTPOINT
#                      sudo scripts/install-service.sh sample DIR/config.json
# Installs fuse3 and the repository's .venv when missing (as scripts/demo.sh).
set -euo pipefail
usage() { sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; }

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; echo "build-sample.sh: unknown option $1" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { usage >&2; exit 2; }
dir="${1:-demo-data}"

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$VENV/bin/python" - "$dir" <<'PY'
import sys
from pathlib import Path

from copickfs import sample
from copickfs.config import ConfigError
from copickfs.demo import write_demo_config

base = Path(sys.argv[1]).absolute()
try:
    base.mkdir(parents=True, exist_ok=True)
    built = sample.build_sample_project(base / "static")
    (base / "overlay").mkdir(exist_ok=True)
    config = write_demo_config(base / "config.json", base / "overlay", base / "static")
except (ConfigError, OSError) as e:
    sys.exit(f"Error: {e}")
print(f"{'Built' if built else 'Kept'} the sample project in {base / 'static'}")
print(f"Overlay {base / 'overlay'}; config {config}")
PY
