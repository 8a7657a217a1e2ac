"""`copickfs demo`: the sample project is well formed, the mount is shown and always removed."""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from copickfs import sample
from copickfs.mount.mountinfo import is_mounted
from mounting import copickfs, force_unmount
from treehash import tree_digest

POINT_KEYS = {"location", "transformation_", "instance_id", "score"}
PICKS_KEYS = {"pickable_object_name", "user_id", "session_id", "run_name", "voxel_spacing", "unit",
              "points", "trust_orientation"}


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "demo"
    force_unmount(tmp_path / "demo" / "mnt")  # only if a failing run left it


def run_demo(directory: Path) -> str:
    result = copickfs("demo", "--dir", str(directory), "--exit-after-show")
    assert result.returncode == 0, result.stderr
    assert not is_mounted(str(directory / "mnt")), "the demo left its mount behind"
    pid = int(re.search(r"daemon PID (\d+)", result.stdout).group(1))
    assert not os.path.exists(f"/proc/{pid}"), "the mount daemon outlived the demo"
    return result.stdout


def test_demo_shows_the_mounted_tree_and_unmounts(demo_dir: Path) -> None:
    out = run_demo(demo_dir)
    for name in ("TS_001", "VoxelSpacing10.000", "wbp.zarr", "demo_0_ribosome.json", "demo_0_membrane.glb",
                 "10.000_demo_0_membrane.zarr", "copick_config.json", "What to try", "unmount"):
        assert name in out
    config = json.loads((demo_dir / "config.json").read_text())
    assert config["static_root"] == str(demo_dir.absolute() / "static")
    assert config["overlay_root"] == str(demo_dir.absolute() / "overlay")
    assert list((demo_dir / "overlay").iterdir()) == []
    assert list((demo_dir / "mnt").iterdir()) == []


def test_demo_is_idempotent(demo_dir: Path) -> None:
    assert "Built the sample project" in run_demo(demo_dir)
    before = tree_digest(str(demo_dir / "static"))
    assert "Reusing the sample project" in run_demo(demo_dir)
    assert tree_digest(str(demo_dir / "static")) == before


def test_sample_zarr_stores_are_ome_ngff_multiscales(tmp_path: Path) -> None:
    sample.build_sample_project(tmp_path)
    for store, dtype in ((sample.TOMOGRAM, np.float32), (sample.SEGMENTATION, np.uint8)):
        group = zarr.open_group(str(tmp_path / store), mode="r", zarr_format=2)
        multiscale = group.attrs["multiscales"][0]
        assert multiscale["version"] == "0.4"
        assert [(a["name"], a["unit"]) for a in multiscale["axes"]] == [(n, "angstrom") for n in "zyx"]
        assert [d["path"] for d in multiscale["datasets"]] == ["0", "1", "2"]
        for level in range(3):
            array = group[str(level)]
            assert array.shape == (64 >> level,) * 3 and array.dtype == dtype
            assert array.compressors, "levels are compressed"
            scale = multiscale["datasets"][level]["coordinateTransformations"][0]["scale"]
            assert scale == [10.0 * 2**level] * 3
    labels = zarr.open_group(str(tmp_path / sample.SEGMENTATION), mode="r")["0"][:]
    assert set(np.unique(labels)) == {0, 2}


def test_sample_picks_and_config_follow_copick(tmp_path: Path) -> None:
    sample.build_sample_project(tmp_path)
    picks = json.loads((tmp_path / sample.PICKS).read_text())
    assert PICKS_KEYS <= picks.keys()
    names = (picks["pickable_object_name"], picks["run_name"], picks["unit"])
    assert names == ("ribosome", "TS_001", "angstrom")
    assert picks["points"] and all(POINT_KEYS <= p.keys() for p in picks["points"])
    assert all(set(p["location"]) == {"x", "y", "z"} for p in picks["points"])
    assert picks["points"][0]["transformation_"] == np.eye(4).tolist()
    config = json.loads((tmp_path / sample.CONFIG_NAME).read_text())
    objects = {o["name"]: o for o in config["pickable_objects"]}
    assert (objects["ribosome"]["is_particle"], objects["ribosome"]["label"]) == (True, 1)
    assert (objects["membrane"]["is_particle"], objects["membrane"]["label"]) == (False, 2)
    assert len(objects["ribosome"]["color"]) == 4


def test_sample_mesh_is_binary_gltf2(tmp_path: Path) -> None:
    sample.build_sample_project(tmp_path)
    data = (tmp_path / sample.MESH).read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0
    document = json.loads(data[20:20 + json_length])
    assert document["asset"]["version"] == "2.0"
    bin_length, bin_type = struct.unpack_from("<II", data, 20 + json_length)
    assert bin_type == 0x004E4942 and 28 + json_length + bin_length == len(data)
    assert document["buffers"][0]["byteLength"] <= bin_length
    positions, indices = document["accessors"]
    assert positions["type"] == "VEC3" and indices["count"] % 3 == 0
    index_view = document["bufferViews"][indices["bufferView"]]
    triangles = np.frombuffer(data, "<u2", indices["count"], 28 + json_length + index_view["byteOffset"])
    assert triangles.max() < positions["count"]


def test_sample_is_deterministic(tmp_path: Path) -> None:
    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    sample.build_sample_project(tmp_path / "a")
    sample.build_sample_project(tmp_path / "b")
    assert contents(tmp_path / "a") == contents(tmp_path / "b")
