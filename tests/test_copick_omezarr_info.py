"""The OME-Zarr writer (format 2 and 3) and `copickfs info`."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from copick_project import config, write_content
from copickfs.copick import CopickRootFSSpec, write_multiscale
from copickfs.copick.info import Progress, info_lines
from copickfs.copick.omezarr import downsample, multiscales
from mounting import copickfs


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_writer_makes_a_compressed_ngff_pyramid(tmp_path: Path, zarr_format: int) -> None:
    data = np.random.default_rng(0).normal(size=(300, 40, 9)).astype(np.float32)
    group = write_multiscale(LocalStore(tmp_path / "v.zarr"), data, 7.84, zarr_format=zarr_format)  # type: ignore[arg-type]
    reopened = zarr.open_group(str(tmp_path / "v.zarr"), mode="r")
    assert reopened.metadata.zarr_format == zarr_format
    (multiscale,) = multiscales(reopened)
    assert [(a["name"], a["unit"]) for a in multiscale["axes"]] == [("z", "angstrom"), ("y", "angstrom"),
                                                                     ("x", "angstrom")]
    version = reopened.attrs["multiscales"][0]["version"] if zarr_format == 2 else reopened.attrs["ome"]["version"]
    assert version == ("0.4" if zarr_format == 2 else "0.5")
    shapes = [reopened[d["path"]].shape for d in multiscale["datasets"]]
    assert shapes == [(300, 40, 9), (150, 20, 5), (75, 10, 3)]
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[7.84] * 3, [15.68] * 3, [31.36] * 3]
    level0 = reopened["0"]
    assert level0.chunks == (256, 40, 9) and level0.compressors
    np.testing.assert_array_equal(level0[:], data)
    np.testing.assert_allclose(reopened["1"][0, 0, 0], data[:2, :2, :2].mean(), rtol=1e-5)
    assert group is not None
    stored = sum(p.stat().st_size for p in (tmp_path / "v.zarr" / "0").rglob("*") if p.is_file())
    assert stored < data.nbytes, "level 0 is compressed"
    if zarr_format == 2:
        assert json.loads((tmp_path / "v.zarr/0/.zarray").read_text())["dimension_separator"] == "/"


def test_labels_keep_their_values_and_channels_are_not_downsampled(tmp_path: Path) -> None:
    labels = np.random.default_rng(1).integers(0, 3, size=(9, 9, 9)).astype(np.uint8) * 5
    assert set(np.unique(downsample(labels, labels=True))) <= {0, 5, 10}
    group = write_multiscale(LocalStore(tmp_path / "f.zarr"), np.ones((3, 8, 8, 8)), 10.0, levels=2)
    assert group["1"].shape == (3, 4, 4, 4) and group["1"].chunks == (1, 4, 4, 4)
    assert [a["name"] for a in multiscales(group)[0]["axes"]] == ["c", "z", "y", "x"]
    with pytest.raises(ValueError, match="zarr_format"):
        write_multiscale(LocalStore(tmp_path / "g.zarr"), labels, 1.0, zarr_format=4)  # type: ignore[arg-type]


def test_tomograms_can_be_written_as_zarr_format_3(tmp_path: Path) -> None:
    root = CopickRootFSSpec(config(tmp_path))
    tomogram = root.new_run("TS_1").new_voxel_spacing(10).new_tomogram("wbp")
    tomogram.from_numpy(np.ones((4, 4, 4)), levels=1, zarr_format=3)
    assert (tmp_path / "ExperimentRuns/TS_1/VoxelSpacing10.000/wbp.zarr/zarr.json").is_file()
    root.refresh()
    assert root.runs[0].voxel_spacings[0].tomograms[0].numpy().sum() == 64


def test_info_shows_the_tree_with_layers(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    write_content(static, seed=1)
    root = CopickRootFSSpec(config(overlay, static))
    root.get_run("TS_001").new_picks("ribosome", "1").from_numpy(np.zeros((3, 3)))
    (overlay / "ExperimentRuns/TS_001/Picks/bad_1_ribosome.json").write_text("{")
    path = tmp_path / "project.json"
    path.write_text(json.dumps(config(overlay, static)))
    result = copickfs("info", str(path))
    assert result.returncode == 0, result.stderr
    bad = "ExperimentRuns/TS_001/Picks/bad_1_ribosome.json: invalid JSON at line 1 column 2"
    assert result.stdout.splitlines() == [
        "test project  (1 run)",
        "└── TS_001  [overlay]",
        "    ├── VoxelSpacing10.000  [static]",
        "    │   └── wbp  float32 24×20×16, 3 levels  [static]",
        "    ├── Picks",
        f"    │   ├── bad_1_ribosome  (unreadable: {bad}: Expecting property name enclosed in double quotes)"
        "  [overlay]",
        "    │   ├── me_1_ribosome  3 points  [overlay]",
        "    │   └── tool_0_ribosome  5 points  [static]",
        "    ├── Meshes",
        "    │   └── tool_0_membrane  [static]",
        "    └── Segmentations",
        "        └── 10.000_tool_0_membrane  uint8 24×20×16, 1 level  [static]",
    ]


def test_info_fails_cleanly_on_a_bad_config(tmp_path: Path) -> None:
    result = copickfs("info", str(tmp_path / "none.json"))
    assert result.returncode != 0 and "config file not found" in result.stderr


def test_progress_appears_only_after_a_moment() -> None:
    quick = io.StringIO()
    progress = Progress(3, stream=quick, delay=60, force=True)
    progress.update(1)
    progress.close()
    assert quick.getvalue() == ""
    slow = io.StringIO()
    progress = Progress(4, stream=slow, delay=0.01, force=True)
    time.sleep(0.02)
    progress.update(2)
    progress.close()
    assert "listing runs 2/4" in slow.getvalue() and slow.getvalue().endswith("\r\x1b[K")


def test_info_lines_report_progress_per_run(tmp_path: Path) -> None:
    root = CopickRootFSSpec(config(tmp_path))
    for name in ("TS_1", "TS_2", "TS_3"):
        root.new_run(name)
    stream = io.StringIO()
    lines = list(info_lines(root, "p", Progress(3, stream=stream, delay=0, force=True)))
    assert lines == ["p  (3 runs)", "├── TS_1  [overlay]", "├── TS_2  [overlay]", "└── TS_3  [overlay]"]
    assert "listing runs 3/3" in stream.getvalue()


def test_levels_are_copicks_odd_sizes_pad_with_zeros_and_labels_take_the_nearest_voxel() -> None:
    # scikit-image's downscale_local_mean, as copick: the block past an odd edge is averaged with zeros.
    level = downsample(np.ones((3, 3, 3), dtype=np.float32), labels=False)
    assert level.shape == (2, 2, 2) and level[0, 0, 0] == 1.0 and level[1, 1, 1] == 0.125
    # rescale(order=0), as copick: round(n / 2) voxels (half to even), each the nearest on the grid.
    ramp = np.arange(11)[:, None, None] * np.ones((1, 9, 5), dtype=np.uint16)
    labels = downsample(ramp, labels=True)
    assert labels.shape == (6, 4, 2) and labels[:, 0, 0].tolist() == [0, 2, 4, 6, 8, 10]
    assert downsample(np.arange(9)[None, :, None] * np.ones((1, 1, 1), dtype=np.uint16), labels=True)[0, :, 0].tolist() \
        == [1, 3, 5, 7]
