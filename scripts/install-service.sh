#!/usr/bin/env bash
# Install a copickfs mount as a systemd service: its config, the unit, daemon-reload.
# Usage: scripts/install-service.sh [--root DIR] NAME CONFIG [MOUNTPOINT]
#   NAME        the instance: copickfs@NAME.service, config /etc/copickfs/NAME.json
#   CONFIG      a copick config; relative local roots are taken from the working directory
#   MOUNTPOINT  where to mount (default /mnt/copickfs/NAME; kept in /etc/copickfs/NAME.env)
#   --root DIR  install under DIR instead of / (an image); no daemon-reload
# Run as root. Installs fuse3 and the repository's .venv when missing (as scripts/demo.sh).
# Prints the command that mounts it now and at every boot.
set -euo pipefail
usage() { sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; }
die() { echo "install-service.sh: $*" >&2; exit 1; }

root=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; root="$2"; shift 2 ;;
        --root=*) root="${1#--root=}"; shift ;;
        --) shift; args+=("$@"); break ;;
        -*) usage >&2; die "unknown option $1" ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ "${#args[@]}" -lt 2 ] || [ "${#args[@]}" -gt 3 ]; then
    usage >&2; exit 2
fi
name="${args[0]}" config="${args[1]}" mountpoint="${args[2]:-}"
if [ -n "$root" ]; then
    [ -d "$root" ] || die "--root $root: not a directory"
    root="$(cd "$root" && pwd)"
elif [ "$(id -u)" -ne 0 ]; then
    die "must run as root (it writes /etc/copickfs and /etc/systemd/system): sudo $0 ${args[*]}"
fi

[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9_.:-]*$ ]] ||
    die "NAME $name: use letters, digits and _ . : - (it becomes copickfs@NAME.service)"
[ -f "$config" ] || die "CONFIG $config: no such file"
if [ -n "$mountpoint" ]; then
    [[ "$mountpoint" == /* ]] || die "MOUNTPOINT $mountpoint: must be an absolute path"
    [[ "$mountpoint" != *[\"\\\$\`$'\n']* ]] || die "MOUNTPOINT $mountpoint: must not contain \" \\ \$ \` or a newline"
fi

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

etc="$root/etc/copickfs"
units="$root/etc/systemd/system"
mkdir -p "$etc" "$units"
chmod 0755 "$etc"

# The config, checked as `copickfs mount` checks it, with absolute local roots; 0600 since
# it may hold S3 credentials.
target="$etc/$name.json"
tmp="$(mktemp "$etc/.$name.json.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
"$VENV/bin/python" - "$config" "$tmp" <<'PY' || die "CONFIG $config: not installed"
import json, os, sys
from copickfs.config import ConfigError, absolute_path, check_roots, load_config, with_absolute_roots

source, out = sys.argv[1], sys.argv[2]
try:
    config = with_absolute_roots(load_config(source))
    check_roots(config)
except ConfigError as e:
    sys.exit(f"Error: {e}")
with open(source, "rb") as f:
    data = json.load(f)
for field in ("overlay_root", "static_root"):
    if getattr(config, field) is not None:
        data[field] = getattr(config, field)
section = data.get("copickfs")
if isinstance(section, dict) and isinstance(section.get("log"), str):
    section["log"] = absolute_path(section["log"])
with open(out, "w") as f:
    json.dump(data, f, indent=2)
    f.write("\n")
PY
chmod 0600 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
echo "Installed the config as $target"

envfile="$etc/$name.env"
if [ -n "$mountpoint" ]; then
    printf '# Written by install-service.sh: where copickfs@%s.service mounts.\nMOUNTPOINT="%s"\n' \
        "$name" "$mountpoint" > "$envfile"
    echo "Mount point $mountpoint (in $envfile)"
else
    if [ -f "$envfile" ]; then
        rm -f "$envfile"
        echo "Removed $envfile of an earlier install"
    fi
    echo "Mount point /mnt/copickfs/$name"
fi

install -m 0644 "$REPO/systemd/copickfs@.service" "$units/copickfs@.service"
echo "Installed the unit as $units/copickfs@.service"

# systemd finds a command without a path in its default search path only: name the
# directory of this copickfs unless that path already leads to it.
dropin="$units/copickfs@.service.d/exec-search-path.conf"
default_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ours="$(readlink -f "$VENV/bin/copickfs")"
found=""
IFS=: read -ra dirs <<< "$default_path"
for dir in "${dirs[@]}"; do
    if [ -x "$root$dir/copickfs" ]; then found="$root$dir/copickfs"; break; fi
done
if [ -n "$found" ] && [ "$(readlink -f "$found")" = "$ours" ]; then
    rm -f "$dropin"
else
    mkdir -p "$(dirname "$dropin")"
    # ExecSearchPath= finds the commands of Exec*= lines; PATH, those their shells run.
    printf '# Written by install-service.sh: where copickfs is installed.\n[Service]\nExecSearchPath=%s\nEnvironment=PATH=%s\n' \
        "$VENV/bin:$default_path" "$VENV/bin:$default_path" > "$dropin"
    echo "Installed $dropin (copickfs from $VENV/bin)"
fi

if [ -n "$root" ]; then
    echo "Installed under $root; in that system run: systemctl enable copickfs@$name.service"
    exit 0
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
else
    echo "systemd is not running here: no daemon-reload" >&2
fi
echo
echo "Mount it now and at every boot:  systemctl enable --now copickfs@$name.service"
echo "Then:                            systemctl status copickfs@$name.service"
