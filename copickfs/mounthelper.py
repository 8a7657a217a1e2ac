"""``mount.fuse.copickfs``: the helper mount(8) runs for ``mount -t fuse.copickfs`` and
/etc/fstab lines of type ``fuse.copickfs``.

mount(8) calls ``/sbin/mount.fuse.copickfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]``; link
the installed script there (``ln -s "$(command -v mount.fuse.copickfs)" /sbin/``). SOURCE
is a copick config, or any label with ``-o lowerdir=DIR,upperdir=DIR``. mount(8)'s own
options (``defaults``, ``nofail``, ``_netdev``, ``x-systemd.*``, ...) are dropped by
`copickfs mount`; with ``-s`` (sloppy) unknown options are dropped too, with a warning.
The helper returns once the mount answers, as mount(8) expects.
"""

from __future__ import annotations

import sys

import click

from .options import MountOptions, OptionError, split_mount_options


def _usage(message: str) -> int:
    click.echo(f"mount.fuse.copickfs: {message}", err=True)
    click.echo("usage: mount.fuse.copickfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]", err=True)
    return 2


def _sloppy(options: list[str]) -> list[str]:
    """Options without the ones copickfs does not know (mount -s)."""
    kept = []
    for text in options:
        for item in text.split(","):
            key = item.partition("=")[0]
            known = key in MountOptions.model_fields or key.startswith("no") and key[2:] in MountOptions.model_fields
            if known or key in ("lowerdir", "upperdir", "workdir"):
                kept.append(item)
            elif item:
                click.echo(f"mount.fuse.copickfs: ignoring unknown option {key!r} (-s)", err=True)
    return [",".join(kept)] if kept else []


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        click.echo(__doc__.strip())
        return 0
    positional: list[str] = []
    options: list[str] = []
    fake = sloppy = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-o" or arg == "-t" or arg == "-N":
            if i + 1 == len(args):
                return _usage(f"{arg} needs a value")
            value = args[i + 1]
            if arg == "-o":
                options.append(value)
            elif arg == "-N":
                return _usage("-N (mount in another namespace) is not supported")
            elif value not in ("fuse.copickfs", "copickfs"):
                return _usage(f"-t {value}: this helper mounts fuse.copickfs only")
            i += 2
            continue
        if arg.startswith("-o") and len(arg) > 2:
            options.append(arg[2:])
        elif arg.startswith("-") and len(arg) > 1 and set(arg[1:]) <= set("sfnvwr"):
            fake |= "f" in arg
            sloppy |= "s" in arg
            if "r" in arg:
                options.append("ro")
        elif arg.startswith("-") and len(arg) > 1:
            return _usage(f"unknown flag {arg}")
        else:
            positional.append(arg)
        i += 1
    if len(positional) != 2:
        return _usage("expected SOURCE and MOUNTPOINT")
    if sloppy:
        options = _sloppy(options)
    if fake:  # mount -f: check what we can, mount nothing
        try:
            split_mount_options(options)
        except OptionError as e:
            click.echo(f"Error: {e}", err=True)
            return 1
        return 0
    from .cli import main as copickfs

    command = ["mount", positional[0], positional[1], *(x for o in options for x in ("-o", o))]
    try:
        copickfs.main(args=command, prog_name="mount.fuse.copickfs", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def entry() -> None:
    sys.exit(main())
