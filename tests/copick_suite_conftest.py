"""conftest.py for running copick 1.31's own filesystem tests against copickfs's classes.

`test_copick_suite.py` copies this file, beside copick's ``test_filesystem.py``, into a
scratch directory and runs pytest there with ``copick_shim`` first on the path, so
``copick.from_file`` and ``copick.impl.filesystem`` are copickfs's. It replaces copick's
conftest (which downloads its corpus and starts S3/SSH servers) by the two local cases:
the whole project as the overlay, and the project as static under a separate overlay.

The corpus directory comes from ``COPICKFS_SUITE_CORPUS``; ``COPICKFS_SUITE_STAND_IN=1``
says it is the stand-in built by ``copick_corpus.py`` rather than copick's published one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePath
from typing import Any, Iterator

import fsspec
import pytest

CORPUS = Path(os.environ["COPICKFS_SUITE_CORPUS"])
STAND_IN = os.environ.get("COPICKFS_SUITE_STAND_IN") == "1"

ZARR2_OPEN = "calls zarr.open(store, 'r') with a positional mode, zarr 2's API (zarr 3 makes mode keyword-only)"

#: Tests that use zarr 2's API on a store copickfs returns: expected to fail under zarr 3.
ZARR2_API: dict[str, str] = {name: ZARR2_OPEN for name in (
    "test_object_zarr", "test_segmentation_zarr", "test_segmentation_write_numpy", "test_tomogram_zarr",
    "test_tomogram_write_numpy", "test_feature_zarr", "test_feature_write_numpy",
    "test_segmentation_values_never_narrowed", "test_instance_segmentation_round_trip",
)}

#: Tests of copick's own tools over the entity classes (copick.ops, copick.util.uri), which copickfs does not ship.
COPICK_TOOLS = "exercises copick.ops / copick.util.uri, copick's tools over the classes, which copickfs does not ship"
NOT_FILESYSTEM: dict[str, str] = {name: COPICK_TOOLS for name in (
    "test_filaments_uri_copy_and_move", "test_filament_curves_round_trip_and_copy",
    "test_segmentation_copy_and_move_keep_dtype_and_levels", "test_untyped_segmentation_queries_select_binary_and_multilabel",
    "test_instance_segmentation_copy_keeps_type", "test_panoptic_segmentation_copy_keeps_type",
)}

#: Tests that check sums of the published corpus's volumes, which the stand-in corpus does not reproduce.
CORPUS_VALUES = "checks voxel sums of copick's published test corpus; the stand-in corpus has other data"
PUBLISHED_ONLY: dict[str, str] = {name: CORPUS_VALUES for name in (
    "test_object_read_numpy", "test_segmentation_read_numpy", "test_tomogram_read_numpy", "test_feature_read_numpy",
)}


def pytest_configure(config: pytest.Config) -> None:
    pytest.common_cases = ["local_overlay_only", "local"]  # type: ignore[attr-defined]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.originalname if isinstance(item, pytest.Function) else item.name
        if name in NOT_FILESYSTEM:
            item.add_marker(pytest.mark.skip(reason=NOT_FILESYSTEM[name]))
        elif STAND_IN and name in PUBLISHED_ONLY:
            item.add_marker(pytest.mark.skip(reason=PUBLISHED_ONLY[name]))
        elif name in ZARR2_API:
            item.add_marker(pytest.mark.xfail(reason=ZARR2_API[name], raises=TypeError, strict=True))


def _config(name: str, tmp_path: Path) -> dict[str, Any]:
    return json.loads((CORPUS / name).read_text())


@pytest.fixture
def local_overlay_only(tmp_path: Path) -> Iterator[dict[str, Any]]:
    project = tmp_path / "sample_project_overlay"
    shutil.copytree(CORPUS / "sample_project", project)
    cfg = _config("filesystem_overlay_only.json", tmp_path)
    cfg["overlay_root"] = "local://" + str(project)
    cfg["overlay_fs_args"] = {"auto_mkdir": True}
    config = tmp_path / "local_overlay_only.json"
    config.write_text(json.dumps(cfg))
    yield {"cfg_file": config, "testfs_static": None, "testpath_static": None,
           "testfs_overlay": fsspec.filesystem("local"), "testpath_overlay": PurePath(project)}


@pytest.fixture
def local(tmp_path: Path) -> Iterator[dict[str, Any]]:
    project, overlay = tmp_path / "sample_project", tmp_path / "sample_overlay"
    shutil.copytree(CORPUS / "sample_project", project)
    shutil.copytree(CORPUS / "sample_overlay", overlay)
    cfg = _config("filesystem.json", tmp_path)
    cfg["overlay_root"] = "local://" + str(overlay)
    cfg["overlay_fs_args"] = {"auto_mkdir": True}
    cfg["static_root"] = "local://" + str(project)
    cfg["static_fs_args"] = {"auto_mkdir": False}
    config = tmp_path / "local.json"
    config.write_text(json.dumps(cfg))
    yield {"cfg_file": config, "testfs_static": fsspec.filesystem("local"), "testpath_static": PurePath(project),
           "testfs_overlay": fsspec.filesystem("local"), "testpath_overlay": PurePath(overlay)}
