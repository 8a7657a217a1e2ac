"""The mount daemon's foreground run: the union, the request handler, the FUSE session."""

from __future__ import annotations

import logging
import os
import sys
import threading

from ..config import CopickConfig, redacted
from ..options import MountOptions, levels_of, size_bytes
from ..precomputed import PrecomputedView
from ..union import UnionFileSystem
from .notify import MountWatcher, Notifier

log = logging.getLogger("copickfs.mount")


def union_from_config(config: CopickConfig, options: MountOptions) -> UnionFileSystem:
    from ..storage.roots import open_union
    from ..storage.staging import default_staging_dir

    return open_union(config.overlay_root, config.static_root, config.overlay_fs_args,
                      config.static_fs_args, options.cache_dir, size_bytes(options.cache_size),
                      options.staging_dir or default_staging_dir(), options.upload_timeout,
                      overlay_ttl=options.entry_timeout)


def fuse_options(config: CopickConfig, options: MountOptions) -> list[str]:
    out = [f"fsname=copickfs:{redacted(config.overlay_root)}", "subtype=copickfs", "default_permissions"]
    if options.allow_other:
        out.append("allow_other")
    if options.ro:
        out.append("ro")
    return out


def run_foreground(config: CopickConfig, mountpoint: str, options: MountOptions) -> None:
    """Serve the mount until it is unmounted or the process gets SIGINT/SIGTERM.

    Under systemd (``Type=notify``) it reports READY=1 once the mount answers and
    STOPPING=1 when the loop ends, before unmounting (see `notify`).
    """
    from ..storage.roots import describe_union
    from .operations import UnionHandler  # loads libfuse3
    from .session import FuseSession
    from .status import MetricsFile, StatusReport

    _configure_logging(options)
    notifier = Notifier()
    layers = _layers_text(config)
    notifier.status(f"Mounting {layers} at {mountpoint}")
    os.umask(0)  # modes are the callers' (the kernel applied their umask); ours must not leak
    union = union_from_config(config, options)
    if not union.overlay.is_local and "writeback_cache" not in options.model_fields_set:
        # Other machines share an object-store overlay: with the writeback cache the kernel
        # would trust the sizes it cached over theirs.
        options = options.model_copy(update={"writeback_cache": False})
    cleared = union.clear_work_area()
    if cleared:
        log.warning("removed %d temporary file(s) of copy-ups a crash interrupted", cleared)
    threading.Thread(target=_remove_leftovers, args=(union,), name="copickfs-leftovers", daemon=True).start()
    source = PrecomputedView(union, options.precomputed_layout) if options.precomputed else union
    if options.mrc:
        from ..mrc import MrcView

        source = MrcView(source, levels_of(options.mrc_levels), size_bytes(options.mrc_cache_size))
    status = StatusReport(mountpoint, config, options, lambda: describe_union(union))
    handler = UnionHandler(source, options, mountpoint, status)
    session = FuseSession(handler, mountpoint, fuse_options(config, options), threads=options.threads,
                          debug=options.debug, on_loop_end=lambda: notifier.stopping(f"Unmounting {mountpoint}"))
    handler.session = session
    metrics = MetricsFile(status, options.metrics_file, options.metrics_interval) if options.metrics_file else None
    if metrics is not None:
        metrics.start()
    watcher = MountWatcher(mountpoint, lambda: notifier.ready(f"Serving {layers} at {mountpoint}"))
    if notifier.enabled:
        watcher.start()
    try:
        result = session.run()
    except BaseException as e:
        notifier.stopping(f"Failed: {e}")
        raise
    finally:
        watcher.stop()
        notifier.stopping(f"Unmounted {mountpoint}")  # a no-op when the loop's end already said so
        if metrics is not None:
            metrics.stop()
        from ..storage.roots import close_union

        owed = close_union(union)
        if owed:
            log.warning("%d upload(s) still pending; the next mount of this overlay resumes them", owed)
            notifier.status(f"Unmounted {mountpoint}; {owed} upload(s) pending for the next mount")
    if result < 0:
        notifier.status(f"Failed: the FUSE loop failed: {os.strerror(-result)}")
        raise RuntimeError(f"the FUSE loop failed: {os.strerror(-result)}")


def _layers_text(config: CopickConfig) -> str:
    overlay = redacted(config.overlay_root)
    return f"{overlay} over {redacted(config.static_root)}" if config.static_root else overlay


def _remove_leftovers(union: UnionFileSystem) -> None:
    """Copy-ups a crash interrupted left private temporary files behind: remove them."""
    try:
        removed = union.remove_leftovers()
    except OSError as e:
        log.warning("cannot remove leftover temporary files: %s", e)
        return
    if removed:
        log.warning("removed %d temporary file(s) an older release left behind", removed)


def _configure_logging(options: MountOptions) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if options.log:
        handlers.append(logging.FileHandler(options.log))
    # ``debug`` is copickfs's own: other libraries stay at WARNING (botocore's debug log
    # prints request headers, and with them the access key id of every signed request).
    logging.basicConfig(level=logging.WARNING,
                        format="copickfs[%(process)d] %(levelname)s %(message)s", handlers=handlers, force=True)
    logging.getLogger("copickfs").setLevel(logging.DEBUG if options.debug else logging.NOTSET)
