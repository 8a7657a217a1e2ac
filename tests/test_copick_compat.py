"""Released copick (1.31, zarr<3) and copickfs's classes see the same project, both ways.

copick runs in its own virtual environment (cached under ~/.cache/copickfs-tests), since it
needs zarr<3 and copickfs needs zarr>=3. The test is skipped only when that environment
cannot be installed (no package index reachable), and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from copick_project import RUN, VS, config, write_content
from copickfs.copick import CopickRootFSSpec
from mounting import mounted, write_config
from treehash import tree_digest

COPICK_SPEC = "copick==1.31.*"
VENV = Path(os.environ.get("COPICKFS_TEST_CACHE", Path.home() / ".cache" / "copickfs-tests")) / "copick-1.31"
PROBE = Path(__file__).with_name("copick_probe.py")


@pytest.fixture(scope="session")
def copick_python() -> str:
    """The Python of a venv holding released copick; built once and reused across runs."""
    python = VENV / "bin" / "python"
    done = VENV / ".installed"
    if not done.is_file():
        shutil.rmtree(VENV, ignore_errors=True)  # a half-built venv from an interrupted run
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
        result = subprocess.run([str(python), "-m", "pip", "install", "-q", COPICK_SPEC], capture_output=True,
                                text=True, timeout=1800)
        if result.returncode != 0:
            tail = " ".join(result.stderr.strip().splitlines()[-2:])
            pytest.skip(f"cannot install {COPICK_SPEC} into a test venv: {tail}")
        done.write_text(COPICK_SPEC + "\n")
    return str(python)


def copick(python: str, mode: str, config_path: Path, out: Path) -> dict[str, Any]:
    result = subprocess.run([python, str(PROBE), mode, str(config_path), str(out)], capture_output=True,
                            text=True, timeout=600, cwd=str(out.parent))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def copickfs_view(root: CopickRootFSSpec) -> dict[str, np.ndarray]:
    """The same keys as copick_probe.py's read mode, read with copickfs's classes."""
    arrays: dict[str, np.ndarray] = {}
    for run in root.runs:
        for vs in run.voxel_spacings:
            for tomogram in vs.tomograms:
                arrays[f"tomogram/{run.name}/{vs.voxel_size:.3f}/{tomogram.tomo_type}"] = tomogram.numpy()
        for picks in run.picks:
            arrays[f"picks/{run.name}/{picks.user_id}_{picks.session_id}_{picks.pickable_object_name}"] = \
                picks.numpy()[0]
        for seg in run.segmentations:
            arrays[f"segmentation/{run.name}/{seg.filename}"] = seg.numpy()
    return arrays


@pytest.fixture
def two_layer_project(tmp_path: Path) -> tuple[Path, Path]:
    """Static holds a tool's data; the overlay a user's data and one more tomogram, beside it."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    write_content(static, seed=1)
    root = CopickRootFSSpec(config(overlay, static))
    run = root.get_run(RUN)
    run.new_picks("ribosome", "1").from_numpy(np.array([[10.0, 20.0, 30.0], [1.5, 2.5, 3.5]]),
                                              transforms=np.stack([np.eye(4)] * 2))
    run.new_segmentation(VS, "cells", "1", is_multilabel=True).from_numpy(np.arange(24 * 20 * 16, dtype=np.uint16)
                                                                          .reshape(24, 20, 16) % 3)
    run.get_voxel_spacing(VS).new_tomogram("denoised").from_numpy(np.linspace(0, 1, 8**3).reshape(8, 8, 8))
    run.new_mesh("membrane", "1", mesh=b"glTF-user")
    return static, overlay


def assert_same(seen_by_copick: dict[str, np.ndarray], seen_by_copickfs: dict[str, np.ndarray]) -> None:
    assert sorted(seen_by_copick) == sorted(seen_by_copickfs)
    for key, array in seen_by_copickfs.items():
        np.testing.assert_array_equal(seen_by_copick[key], array, err_msg=key)


def test_copick_reads_what_copickfs_wrote_on_both_roots(copick_python: str, two_layer_project: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    static, overlay = two_layer_project
    config_path = tmp_path / "copick.json"
    config_path.write_text(json.dumps(config(overlay, static)))
    report = copick(copick_python, "read", config_path, tmp_path / "seen.npz")
    assert report["copick_version"].startswith("1.31.")
    assert [r["name"] for r in report["runs"]] == [RUN]
    assert sorted(report["runs"][0]["meshes"]) == ["me_1_membrane", "tool_0_membrane"]
    ours = copickfs_view(CopickRootFSSpec(config(overlay, static)))
    assert {k.split("/")[0] for k in ours} == {"tomogram", "picks", "segmentation"} and len(ours) == 6
    with np.load(tmp_path / "seen.npz") as seen:
        assert_same(dict(seen), ours)


def test_copick_reads_the_mounted_union_as_a_local_root(copick_python: str, two_layer_project: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    static, overlay = two_layer_project
    before = tree_digest(str(static))
    ours = copickfs_view(CopickRootFSSpec(config(overlay, static)))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    copick_config = tmp_path / "copick-on-mount.json"
    copick_config.write_text(json.dumps(config(mountpoint)))
    with mounted(write_config(tmp_path / "mount.json", overlay, static), mountpoint):
        report = copick(copick_python, "read", copick_config, tmp_path / "seen.npz")
        through_mount = copickfs_view(CopickRootFSSpec(config(mountpoint)))
    assert [r["name"] for r in report["runs"]] == [RUN]
    assert sorted(report["runs"][0]["meshes"]) == ["me_1_membrane", "tool_0_membrane"]
    with np.load(tmp_path / "seen.npz") as seen:
        assert_same(dict(seen), ours)
    assert_same(through_mount, ours)
    assert tree_digest(str(static)) == before


def test_copickfs_reads_what_copick_wrote(copick_python: str, two_layer_project: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    static, overlay = two_layer_project
    before = tree_digest(str(static))
    config_path = tmp_path / "copick.json"
    # copick's zarr 2 stores need the local filesystem to make chunk directories (its documented setting).
    config_path.write_text(json.dumps(config(overlay, static, overlay_fs_args={"auto_mkdir": True})))
    copick(copick_python, "write", config_path, tmp_path / "written.npz")
    assert tree_digest(str(static)) == before, "copick wrote into static"
    root = CopickRootFSSpec.from_file(config_path)
    run = root.get_run("TS_COPICK")
    assert run is not None and not run.read_only
    with np.load(tmp_path / "written.npz") as written:
        tomogram = run.get_voxel_spacing(7.84).get_tomogram("wbp")
        np.testing.assert_array_equal(tomogram.numpy(), written["tomogram"])
        assert tomogram.numpy("1").shape == (8, 6, 5)
        picks = run.get_picks("ribosome", "copick", "5")
        assert len(picks) == 1
        np.testing.assert_allclose(picks[0].numpy()[0], written["positions"])
        np.testing.assert_array_equal(picks[0].numpy()[1], np.broadcast_to(np.eye(4), (4, 4, 4)))
        segs = run.get_segmentations(user_id="copick")
        assert [s.filename for s in segs] == [str(written["segmentation_name"])]
        np.testing.assert_array_equal(segs[0].numpy(), written["segmentation"])
    mesh = run.get_meshes(user_id="copick")[0]
    assert mesh.glb()[:4] == b"glTF"
    trimesh = pytest.importorskip("trimesh", reason="trimesh is the optional 'mesh' extra")
    np.testing.assert_allclose(mesh.mesh.extents, [1.0, 2.0, 3.0])
    # copick's JSON parses into copickfs's schema and is written back with the same keys and shapes.
    stored = json.loads((overlay / "ExperimentRuns/TS_COPICK/Picks/copick_5_ribosome.json").read_text())
    assert json.loads(picks[0].load().to_json()) == stored
    assert trimesh is not None
