#!/usr/bin/env bash
# Build a sample copick project, mount it over an empty overlay and show what to try.
# Usage: scripts/demo.sh [--dir DIR] [--exit-after-show]   (DIR defaults to ./demo-data)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
exec "$VENV/bin/copickfs" demo "$@"
