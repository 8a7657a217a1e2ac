#!/usr/bin/env bash
# Run the test suite (it mounts real FUSE file systems, so /dev/fuse must be usable).
# Usage: scripts/test.sh [pytest arguments...]   (.venv/bin/python -m pytest --help lists them)
# Installs fuse3 and the repository's .venv when missing; run as root.
set -euo pipefail
case "${1:-}" in -h|--help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; exit 0 ;; esac
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO"
exec "$VENV/bin/python" -m pytest -q "$@"
