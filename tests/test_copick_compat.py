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

import copick_probe as probe
from copick_project import RUN, VS, config, write_content
from copickfs.copick import CopickRootFSSpec
from copickfs.copick.models import CopickFilamentCurve
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


def copick_view(python: str, config_path: Path, out: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What released copick reports and reads from the project of ``config_path``."""
    report = copick(python, "read", config_path, out)
    assert report.pop("copick_version").startswith("1.31.")
    with np.load(out) as seen:
        return report, dict(seen)


@pytest.fixture
def two_layer_project(tmp_path: Path) -> tuple[Path, Path]:
    """Static holds a tool's data; the overlay a user's data of every kind and one more tomogram, beside it."""
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
    rng = np.random.default_rng(3)
    run.new_segmentation(VS, "ribosome", "1", is_instance=True).from_numpy(probe.instance_volume(rng), levels=2)
    run.new_segmentation(VS, "scene", "1", is_panoptic=True).from_numpy(probe.panoptic_volume(rng), levels=2)
    run.new_filaments("membrane", "1").from_control_points(
        probe.CONTROL_POINTS, instance_ids=[3, 7], voxel_spacing=VS, polarity_known=[True, False],
        scores=[0.5, 1.0], radii=[25.0, None], metadata=[{"tool": "clicks"}, None])
    run.new_filaments("membrane", "2").from_numpy(probe.POLYLINES, metadata=[None, {"source": "fit"}])
    run.new_filaments("ribosome", "1").from_curves([CopickFilamentCurve(**probe.BSPLINE)], voxel_spacing=VS)
    return static, overlay


def assert_same(seen_by_copick: tuple[dict[str, Any], dict[str, np.ndarray]],
                seen_by_copickfs: tuple[dict[str, Any], dict[str, np.ndarray]]) -> None:
    """Same report and the same arrays (keys, dtypes, values), exactly."""
    assert seen_by_copick[0] == seen_by_copickfs[0]
    theirs, ours = seen_by_copick[1], seen_by_copickfs[1]
    assert sorted(theirs) == sorted(ours)
    for key, array in ours.items():
        assert theirs[key].dtype == array.dtype, key
        np.testing.assert_array_equal(theirs[key], array, err_msg=key)


def assert_curves_evaluated_alike(arrays: dict[str, np.ndarray]) -> None:
    """Points regenerated from a curve are the curve's evaluation, bit for bit, whoever evaluated it."""
    curves = [key for key in arrays if key.startswith("curve/")]
    assert curves
    for key in curves:
        np.testing.assert_array_equal(arrays[key], arrays["filament/" + key.removeprefix("curve/")], err_msg=key)


def test_copick_reads_what_copickfs_wrote_on_both_roots(copick_python: str, two_layer_project: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    static, overlay = two_layer_project
    config_path = tmp_path / "copick.json"
    config_path.write_text(json.dumps(config(overlay, static)))
    theirs = copick_view(copick_python, config_path, tmp_path / "seen.npz")
    report, arrays = theirs
    assert [r["name"] for r in report["runs"]] == [RUN]
    assert sorted(report["runs"][0]["meshes"]) == ["me_1_membrane", "tool_0_membrane"]
    assert {k.split("/")[0] for k in arrays} == {"tomogram", "picks", "segmentation", "filament", "curve"}
    segmentations = report["runs"][0]["segmentations"]
    instance, panoptic = segmentations[f"instance/{VS:.3f}_me_1_ribosome.zarr"], \
        segmentations[f"panoptic/{VS:.3f}_me_1_scene.zarr"]
    assert instance["dtypes"] == ["uint16", "uint16"] and instance["instance_ids"] == [150, 300, 450]
    assert panoptic["metadata"] == {"copick": {"segmentation_type": "panoptic", "channels": ["label", "instance"]}}
    assert [a["name"] for a in panoptic["axes"]] == ["c", "z", "y", "x"] and panoptic["shapes"][0] == [2, 12, 10, 8]
    traced = report["runs"][0]["filaments"]["me_1_membrane"]
    assert traced["instance_ids"] == [3, 7] and traced["voxel_spacing"] == VS
    assert [f["curve_is_current"] for f in traced["filaments"]] == [True, True]
    assert traced["filaments"][0]["metadata"] == {"tool": "clicks"} and traced["filaments"][0]["radius"] == 25.0
    np.testing.assert_array_equal(arrays["filament/TS_001/me_2_membrane/2"], probe.POLYLINES[1])
    assert_curves_evaluated_alike(arrays)
    assert_same(theirs, probe.describe(CopickRootFSSpec(config(overlay, static))))


def test_copick_reads_the_mounted_union_as_a_local_root(copick_python: str, two_layer_project: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    static, overlay = two_layer_project
    before = tree_digest(str(static))
    ours = probe.describe(CopickRootFSSpec(config(overlay, static)))
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    copick_config = tmp_path / "copick-on-mount.json"
    copick_config.write_text(json.dumps(config(mountpoint)))
    with mounted(write_config(tmp_path / "mount.json", overlay, static), mountpoint):
        theirs = copick_view(copick_python, copick_config, tmp_path / "seen.npz")
        through_mount = probe.describe(CopickRootFSSpec(config(mountpoint)))
    assert [r["name"] for r in theirs[0]["runs"]] == [RUN]
    assert sorted(theirs[0]["runs"][0]["meshes"]) == ["me_1_membrane", "tool_0_membrane"]
    assert_same(theirs, ours)
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
        mine = run.get_voxel_spacing(7.84).new_tomogram("mine")
        mine.from_numpy(written["tomogram"])
        for level in "012":  # the same pyramid, to the last bit (level 2 pads odd sizes as copick does)
            assert mine.numpy(level).dtype == tomogram.numpy(level).dtype
            np.testing.assert_array_equal(mine.numpy(level), tomogram.numpy(level), err_msg=level)
        picks = run.get_picks("ribosome", "copick", "5")
        assert len(picks) == 1
        np.testing.assert_allclose(picks[0].numpy()[0], written["positions"])
        np.testing.assert_array_equal(picks[0].numpy()[1], np.broadcast_to(np.eye(4), (4, 4, 4)))
        segs = run.get_segmentations(user_id="copick")
        assert [s.filename for s in segs] == [str(written["segmentation_name"])]
        np.testing.assert_array_equal(segs[0].numpy(), written["segmentation"])
        instance = run.get_segmentations(user_id="copick", is_instance=True)
        panoptic = run.get_segmentations(user_id="copick", is_panoptic=True)
        assert [s.name for s in instance] == ["ribosome"] and [s.name for s in panoptic] == ["scene"]
        np.testing.assert_array_equal(instance[0].numpy(), written["instances"])
        np.testing.assert_array_equal(panoptic[0].numpy(), written["panoptic"])
        np.testing.assert_array_equal(panoptic[0].numpy(channel="instance"), written["panoptic"][1])
        # The same volumes written by copickfs: same dtypes, levels, axes, scales and metadata as copick's.
        ours = [run.new_segmentation(7.84, "ribosome", "9", is_instance=True),
                run.new_segmentation(7.84, "scene", "9", is_panoptic=True)]
        ours[0].from_numpy(written["instances"], levels=2)
        ours[1].from_numpy(written["panoptic"], levels=2)
        for theirs, mine in zip(instance + panoptic, ours):
            assert probe.segmentation_facts(root, mine) == probe.segmentation_facts(root, theirs)
            np.testing.assert_array_equal(mine.numpy("1"), theirs.numpy("1"))
    membrane = {f.session_id: f for f in run.get_filaments("membrane", user_id="copick")}
    traced = membrane["5"]
    assert traced.instance_ids().tolist() == [3, 7] and traced.voxel_spacing == 7.84
    assert [f.curve_is_current() for f in traced.filaments] == [True, True]
    assert [f.curve.control_points for f in traced.filaments] == probe.CONTROL_POINTS
    first = traced.get(3)
    assert first.metadata == {"tool": "clicks"} and first.radius == 25.0 and first.polarity_known
    assert traced.get(7).metadata == {} and traced.get(7).radius is None and traced.get(7).score == 1.0
    for filament in traced.filaments:  # copickfs regenerates copick's points exactly
        np.testing.assert_array_equal(filament.curve.evaluate(), np.asarray(filament.points))
    plain = membrane["6"]
    assert [f.curve for f in plain.filaments] == [None, None]
    np.testing.assert_array_equal(plain.numpy()[0], probe.POLYLINES[0])
    (fitted,) = run.get_filaments("ribosome", user_id="copick")
    assert fitted.filaments[0].curve == CopickFilamentCurve(**probe.BSPLINE) and fitted.filaments[0].curve_is_current()
    their_view = copick_view(copick_python, config_path, tmp_path / "seen.npz")
    assert_same(their_view, probe.describe(CopickRootFSSpec.from_file(config_path)))
    mesh = run.get_meshes(user_id="copick")[0]
    assert mesh.glb()[:4] == b"glTF"
    trimesh = pytest.importorskip("trimesh", reason="trimesh is the optional 'mesh' extra")
    np.testing.assert_allclose(mesh.mesh.extents, [1.0, 2.0, 3.0])
    # copick's JSON parses into copickfs's schema and is written back with the same keys and shapes.
    stored = json.loads((overlay / "ExperimentRuns/TS_COPICK/Picks/copick_5_ribosome.json").read_text())
    assert json.loads(picks[0].load().to_json()) == stored
    assert trimesh is not None
    # copick's filaments JSON is written back by copickfs with the same content.
    stored = json.loads((overlay / "ExperimentRuns/TS_COPICK/Filaments/copick_5_membrane.json").read_text())
    traced.store()
    assert json.loads((overlay / "ExperimentRuns/TS_COPICK/Filaments/copick_5_membrane.json").read_text()) == stored
