#!/usr/bin/env bash
# Run the test suite (it mounts real FUSE file systems, so /dev/fuse must be usable).
# Usage: scripts/test.sh [pytest arguments...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$REPO"
exec "$VENV/bin/python" -m pytest -q "$@"
