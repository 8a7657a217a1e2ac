"""The `copickfs` command.

Every failure is one line, ``Error: <thing>: <what is wrong>``, and a non-zero exit. An
unforeseen exception is reported the same way as an internal error (set COPICKFS_DEBUG=1
for its traceback).
"""

from __future__ import annotations

import errno
import os
import sys

import click

from . import __version__
from .config import (ConfigError, CopickConfig, absolute_path, check_roots, load_config, union_config,
                     with_absolute_roots)
from .mount.fuselib import FuseUnavailable, check_fuse_available
from .mount.preflight import MountError, MountPointClaim, claim_mountpoint
from .options import (MountOptions, OptionError, check_output_files, merge_options, parse_option_string,
                      split_mount_options)


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped, so it stays one line.

    A byte that is not UTF-8 in a path (a surrogate escape) shows as ``\\xNN``.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else repr(c)[1:-1]
                   for c in text)


def _fail(error: Exception | str) -> None:
    raise click.ClickException(one_line(str(error)))


def _working_directory() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def prepare_mount(config_path: str, mountpoint: str, option_strings: tuple[str, ...],
                  base_dir: str | None = None, lock_fd: int | None = None
                  ) -> tuple[CopickConfig, MountOptions, MountPointClaim]:
    """Everything that must hold before mounting; one-line errors, nothing touched.

    Relative roots and log path are taken from ``base_dir`` (default: the working directory).
    The returned claim holds the mount point's lock: release it once the mount answers.
    """
    try:
        ours, dirs = split_mount_options(option_strings)
        if dirs:
            config = union_config(config_path, dirs, base_dir)
        else:
            config = with_absolute_roots(load_config(absolute_path(config_path, base_dir)), base_dir)
        overrides: dict[str, object] = {}
        for text in ours:
            overrides.update(parse_option_string(text))
        options = merge_options(config.copickfs, overrides)
        for field in ("log", "metrics_file"):
            path = getattr(options, field)
            if path is not None and not os.path.isabs(path):
                options = options.model_copy(update={field: absolute_path(path, base_dir)})
        check_output_files(options)
        check_roots(config)
        check_fuse_available()
        claim = claim_mountpoint(mountpoint, config, lock_fd=lock_fd)
    except (ConfigError, OptionError, MountError, FuseUnavailable) as e:
        _fail(e)
    return config, options, claim


class _Group(click.Group):
    """Turns an unforeseen exception into one error line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except OSError as e:
            if e.errno == errno.EPIPE or os.environ.get("COPICKFS_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e}")
        except Exception as e:
            if os.environ.get("COPICKFS_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e}")
        return None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="copickfs")
def main() -> None:
    """copickfs: a writable overlay over a read-only static copick project, as one tree."""


@main.command()
@click.argument("config", type=click.Path())
@click.argument("mountpoint", type=click.Path())
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground until unmounted.")
@click.option("-o", "option_strings", multiple=True, metavar="OPT[=VAL],...",
              help="Mount options (see the README); override the config's \"copickfs\" section.")
@click.option("--lock-fd", type=int, hidden=True,
              help="(internal) descriptor of the locked mount point, passed by the starting copickfs.")
@click.option("--base-dir", hidden=True,
              help="(internal) the starting copickfs's working directory, for relative paths.")
def mount(config: str, mountpoint: str, foreground: bool, option_strings: tuple[str, ...],
          lock_fd: int | None, base_dir: str | None) -> None:
    """Mount the union of CONFIG's overlay_root over its static_root at MOUNTPOINT.

    Returns once the mount answers; SIGINT or SIGTERM to a foreground mount unmounts it.
    Relative paths, also in CONFIG, are taken from the working directory. With
    -o lowerdir=DIR,upperdir=DIR (as overlayfs) no config is read: CONFIG is only a label.
    """
    if (lock_fd is not None or base_dir is not None) and not foreground:
        raise click.UsageError("--lock-fd and --base-dir are for the daemon (mount -f) only")
    if base_dir is not None and not os.path.isabs(base_dir):
        raise click.UsageError("--base-dir must be absolute")
    cfg, options, claim = prepare_mount(config, mountpoint, option_strings, base_dir, lock_fd)
    from .mount.runner import run_foreground, start_background

    with claim:  # held until the mount answers (background) or ends (foreground)
        if foreground:
            try:
                run_foreground(cfg, claim.path, options)
            except (RuntimeError, OSError) as e:
                _fail(MountError(f"cannot mount {mountpoint}: {e}"))
            return
        # The daemon starts in "/" (it must pin no directory), so it gets absolute paths and
        # this directory for the relative ones inside the config; and the lock, by descriptor.
        cwd = _working_directory()
        try:  # with lowerdir=/upperdir= the source is only a label
            config_abs = config if split_mount_options(option_strings)[1] else absolute_path(config)
        except (ConfigError, OptionError) as e:
            _fail(e)
        locked = ["--lock-fd", str(claim.fd)] if claim.fd >= 0 else []  # none on an autofs trigger
        argv = ["mount", "-f", *locked, *(["--base-dir", cwd] if cwd else []),
                config_abs, claim.path]
        for text in option_strings:
            argv += ["-o", text]
        try:
            start_background(argv, claim.path, pass_fds=(claim.fd,) if claim.fd >= 0 else ())
        except MountError as e:
            _fail(e)


@main.command()
@click.argument("mountpoint", type=click.Path())
def unmount(mountpoint: str) -> None:
    """Unmount the copickfs mount at MOUNTPOINT, also when its daemon died."""
    from .mount.runner import unmount as do_unmount

    try:
        do_unmount(mountpoint)
    except MountError as e:
        _fail(e)


@main.command()
@click.argument("mountpoint", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's report as JSON.")
def status(mountpoint: str, as_json: bool) -> None:
    """Show what the mount at MOUNTPOINT is doing: its layers, cache, pending uploads, counters.

    The daemon answers through MOUNTPOINT/.wh..wh.status, readable by the mount's owner and root.
    """
    import json

    from .mount.runner import read_status
    from .mount.status import format_text

    try:
        report = read_status(mountpoint)
    except MountError as e:
        _fail(e)
    click.echo(json.dumps(report, indent=2) if as_json else format_text(report))


@main.command()
@click.argument("config", type=click.Path())
def info(config: str) -> None:
    """Show the copick project of CONFIG as a tree, each entry marked static or overlay."""
    from .copick.info import info_lines
    from .copick.root import CopickRootFSSpec

    try:
        cfg = with_absolute_roots(load_config(config))
        check_roots(cfg)
        root = CopickRootFSSpec(cfg)
        for line in info_lines(root, cfg.name or config):
            click.echo(line.encode("utf-8", "surrogateescape") + b"\n", nl=False)
    except ConfigError as e:
        _fail(e)


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), default="demo-data",
              show_default=True, help="Where the sample project, overlay and mount point go.")
@click.option("--exit-after-show", is_flag=True, help="Unmount and exit after showing the tree.")
def demo(directory: str, exit_after_show: bool) -> None:
    """Build a sample copick project, mount it over an empty overlay and show it."""
    from .demo import run_demo

    try:
        run_demo(directory, keep=not exit_after_show)
    except (ConfigError, MountError, FuseUnavailable) as e:
        _fail(e)
    except OSError as e:
        where = e.filename if e.filename is not None else directory
        _fail(f"--dir {directory}: {os.fsdecode(where)}: {e.strerror or e}")


if __name__ == "__main__":
    sys.exit(main())
