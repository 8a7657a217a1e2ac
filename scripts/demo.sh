#!/usr/bin/env bash
# Build a sample copick project, mount it over an empty overlay and show what to try.
# Usage: scripts/demo.sh [--dir DIR] [--exit-after-show]   (DIR defaults to ./demo-data)
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; exit 0 ;; esac
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
exec "$VENV/bin/copickfs" demo "$@"
