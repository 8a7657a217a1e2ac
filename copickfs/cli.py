"""The `copickfs` command."""

from __future__ import annotations

import os
import sys

import click

from . import __version__
from .config import ConfigError, CopickConfig, check_roots, load_config
from .mount.fuselib import FuseUnavailable, check_fuse_available
from .mount.preflight import MountError, check_mountpoint
from .options import MountOptions, OptionError, merge_options, parse_option_string


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error))


def prepare_mount(config_path: str, mountpoint: str, option_strings: tuple[str, ...]
                  ) -> tuple[CopickConfig, MountOptions, str]:
    """Everything that must hold before mounting; one-line errors, nothing touched."""
    try:
        config = load_config(config_path)
        overrides: dict[str, object] = {}
        for text in option_strings:
            overrides.update(parse_option_string(text))
        options = merge_options(config.copickfs, overrides)
        check_roots(config)
        check_fuse_available()
        target = check_mountpoint(mountpoint, config)
    except (ConfigError, OptionError, MountError, FuseUnavailable) as e:
        _fail(e)
    return config, options, target


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="copickfs")
def main() -> None:
    """copickfs: a writable overlay over a read-only static copick project, as one tree."""


@main.command()
@click.argument("config", type=click.Path())
@click.argument("mountpoint", type=click.Path())
@click.option("-f", "--foreground", is_flag=True, help="Stay in the foreground until unmounted.")
@click.option("-o", "option_strings", multiple=True, metavar="OPT[=VAL],...",
              help="Mount options (see the README); override the config's \"copickfs\" section.")
def mount(config: str, mountpoint: str, foreground: bool, option_strings: tuple[str, ...]) -> None:
    """Mount the union of CONFIG's overlay_root over its static_root at MOUNTPOINT.

    Returns once the mount answers; SIGINT or SIGTERM to a foreground mount unmounts it.
    """
    cfg, options, target = prepare_mount(config, mountpoint, option_strings)
    from .mount.runner import run_foreground, start_background

    if foreground:
        try:
            run_foreground(cfg, target, options)
        except (RuntimeError, OSError) as e:
            _fail(MountError(f"cannot mount {mountpoint}: {e}"))
        return
    argv = ["mount", "-f", os.path.abspath(config), target]
    for text in option_strings:
        argv += ["-o", text]
    try:
        start_background(argv, target)
    except MountError as e:
        _fail(e)


@main.command()
@click.argument("mountpoint", type=click.Path())
def unmount(mountpoint: str) -> None:
    """Unmount MOUNTPOINT, also when its daemon died."""
    from .mount.runner import unmount as do_unmount

    try:
        do_unmount(mountpoint)
    except MountError as e:
        _fail(e)


@main.command()
@click.argument("config", type=click.Path())
def info(config: str) -> None:
    """Show the copick project of CONFIG as a tree, each entry marked static or overlay."""
    from .copick.info import info_lines
    from .copick.root import CopickRootFSSpec

    try:
        cfg = load_config(config)
        check_roots(cfg)
        root = CopickRootFSSpec(cfg)
        for line in info_lines(root, cfg.name or config):
            click.echo(line)
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


if __name__ == "__main__":
    sys.exit(main())
