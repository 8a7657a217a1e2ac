# Shared setup for scripts/*.sh, sourced by them: FUSE 3 and a Python venv from apt when
# missing, then the repo's .venv with copickfs installed editable. Sets REPO and VENV.
# Made for Debian/Ubuntu run as root (or with sudo); elsewhere install fuse3 yourself.
# Usage: source "$(dirname "${BASH_SOURCE[0]}")/common.sh"   (from a script in scripts/)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced: it only explains itself
    sed -n '1,/^$/{/^$/d;s/^# \{0,1\}//;p;}' "$0"
    case "${1:-}" in -h|--help) exit 0 ;; *) exit 2 ;; esac
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "error: need root to run: $*" >&2; exit 1
    fi
}

_has_package() {
    ! command -v dpkg >/dev/null 2>&1 || dpkg -s "$1" >/dev/null 2>&1
}

ensure_system_packages() {
    local missing=()
    if ! command -v fusermount3 >/dev/null 2>&1 || ! _has_package fuse3; then missing+=(fuse3); fi
    if ! _has_package libfuse3-3; then missing+=(libfuse3-3); fi
    if ! command -v python3 >/dev/null 2>&1; then missing+=(python3); fi
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: please install ${missing[*]} (no apt-get here)" >&2; exit 1
    fi
    echo "Installing ${missing[*]} with apt-get..." >&2
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# pip runs again only when pyproject.toml changed since the last install.
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating $VENV..." >&2
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.copickfs-installed" digest
    digest="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || [ ! -x "$VENV/bin/copickfs" ]; then
        echo "Installing copickfs into $VENV..." >&2
        (cd "$REPO" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]')
        echo "$digest" > "$stamp"
    fi
}

ensure_system_packages
ensure_venv
