"""copickfs.copick entity classes on local roots: data in static only, overlay only, and both."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from copick_project import RUN, TOMO, VS, Content, config, write_content
from copickfs.config import ConfigError
from copickfs.copick import (CopickConfigFSSpec, CopickRootFSSpec, CopickRunFSSpec, CopickRunMeta,
                             CopickSegmentationFSSpec, PicksFileError)
from treehash import tree_digest


@dataclass
class Project:
    static: Path
    overlay: Path
    root: CopickRootFSSpec
    content: Content           # what the winning layer holds
    where: str                 # "static", "overlay" or "both"


@pytest.fixture(params=["static", "overlay", "both"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    """One run of data in static, in the overlay, or different data in each; static must stay unchanged."""
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    overlay.mkdir()
    where = request.param
    content = None
    if where in ("static", "both"):
        content = write_content(static, seed=1)
    if where in ("overlay", "both"):
        content = write_content(overlay, seed=2)
    before = tree_digest(str(static))
    assert content is not None
    yield Project(static, overlay, CopickRootFSSpec(config(overlay, static)), content, where)
    assert tree_digest(str(static)) == before, "the static tree changed"


def test_every_entity_is_listed_once_with_the_winning_layers_data(project: Project) -> None:
    root, content = project.root, project.content
    assert [r.name for r in root.runs] == [RUN]
    run = root.get_run(RUN)
    assert [vs.voxel_size for vs in run.voxel_spacings] == [VS]
    tomograms = run.get_voxel_spacing(VS).tomograms
    assert [t.tomo_type for t in tomograms] == [TOMO]
    np.testing.assert_array_equal(tomograms[0].numpy(), content.tomogram)
    assert [(p.user_id, p.session_id, p.pickable_object_name) for p in run.picks] == [("tool", "0", "ribosome")]
    positions, transforms = run.picks[0].numpy()
    np.testing.assert_allclose(positions, content.positions)
    np.testing.assert_array_equal(transforms, np.broadcast_to(np.eye(4), (5, 4, 4)))
    assert [m.glb() for m in run.meshes] == [content.mesh]
    assert [s.filename for s in run.segmentations] == ["10.000_tool_0_membrane.zarr"]
    np.testing.assert_array_equal(run.segmentations[0].numpy(), content.segmentation)
    read_only = project.where == "static"
    for entity in (run, run.voxel_spacings[0], tomograms[0], run.picks[0], run.meshes[0], run.segmentations[0]):
        assert entity.read_only is read_only, entity


def test_scale_levels_and_regions(project: Project) -> None:
    tomogram = project.root.runs[0].voxel_spacings[0].tomograms[0]
    assert tomogram.numpy("1").shape == (12, 10, 8) and tomogram.numpy("2").shape == (6, 5, 4)
    region = tomogram.numpy(x=slice(2, 5), y=slice(0, 3), z=slice(10, 12))
    np.testing.assert_array_equal(region, project.content.tomogram[10:12, 0:3, 2:5])
    group = zarr.open_group(tomogram.zarr(), mode="r")
    assert group["0"].metadata.zarr_format == 2


@pytest.mark.parametrize("project", ["static"], indirect=True)
def test_static_entities_are_read_only(project: Project) -> None:
    run = project.root.runs[0]
    picks, mesh, seg = run.picks[0], run.meshes[0], run.segmentations[0]
    tomogram = run.voxel_spacings[0].tomograms[0]
    for action in (picks.store, picks.delete, mesh.store, mesh.delete, seg.delete, tomogram.delete, run.delete,
                   run.voxel_spacings[0].delete):
        with pytest.raises(PermissionError, match="static"):
            action()
    with pytest.raises(PermissionError):
        tomogram.from_numpy(np.zeros((4, 4, 4)))
    array = zarr.open_group(tomogram.zarr(), mode="r")["0"]
    with pytest.raises(Exception, match="read.only"):
        zarr.open_array(tomogram.zarr(), path="0", mode="r+")[0, 0, 0] = 1.0
    assert array[0, 0, 0] == project.content.tomogram[0, 0, 0]
    assert list(project.overlay.iterdir()) == []


def test_new_entities_land_in_the_overlay(project: Project) -> None:
    root = project.root
    run = root.get_run(RUN)
    picks = run.new_picks("ribosome", "1")
    picks.from_numpy(np.array([[1.0, 2.0, 3.0]]), scores=np.array([0.5]))
    assert (project.overlay / "ExperimentRuns/TS_001/Picks/me_1_ribosome.json").is_file()
    assert not (project.static / "ExperimentRuns/TS_001/Picks/me_1_ribosome.json").exists()
    tomogram = run.get_voxel_spacing(VS).new_tomogram("denoised")
    tomogram.from_numpy(np.ones((8, 8, 8)))
    assert (project.overlay / "ExperimentRuns/TS_001/VoxelSpacing10.000/denoised.zarr/0/.zarray").is_file()
    vs = run.new_voxel_spacing(7.84)
    assert (project.overlay / "ExperimentRuns/TS_001/VoxelSpacing7.840").is_dir()
    new_run = root.new_run("TS_002")
    assert (project.overlay / "ExperimentRuns/TS_002").is_dir() and new_run.name in [r.name for r in root.runs]
    fresh = CopickRootFSSpec(config(project.overlay, project.static))
    run2 = fresh.get_run(RUN)
    assert [(p.user_id, p.read_only) for p in run2.get_picks(user_id="me")] == [("me", False)]
    assert run2.get_picks(user_id="me")[0].points[0].score == 0.5
    assert {v.voxel_size for v in run2.voxel_spacings} == {VS, vs.voxel_size}
    assert sorted(t.tomo_type for t in run2.get_voxel_spacing(VS).tomograms) == ["denoised", TOMO]
    with pytest.raises(ValueError, match="already exist"):
        run.new_picks("ribosome", "0", user_id="tool")
    assert run.new_picks("ribosome", "0", user_id="tool", exist_ok=True) is run.get_picks(user_id="tool")[0]
    with pytest.raises(ValueError, match="already exists"):
        root.new_run(RUN)


@pytest.mark.parametrize("project", ["overlay", "both"], indirect=True)
def test_delete_removes_the_overlay_copy_only(project: Project) -> None:
    run = project.root.runs[0]
    run.picks[0].delete()
    run.segmentations[0].delete()
    run.voxel_spacings[0].tomograms[0].delete()
    assert run.picks == [] and run.segmentations == [] and run.voxel_spacings[0].tomograms == []
    run.refresh()
    if project.where == "overlay":
        assert run.picks == [] and run.segmentations == [] and run.voxel_spacings[0].tomograms == []
        assert not (project.overlay / "ExperimentRuns/TS_001/Picks/tool_0_ribosome.json").exists()
    else:  # static's copy shows again, read-only, as in copick
        assert [p.read_only for p in run.picks] == [True]
        static_positions = CopickRootFSSpec(config(project.static)).runs[0].picks[0].numpy()[0]
        np.testing.assert_allclose(run.picks[0].numpy()[0], static_positions)
        assert [s.read_only for s in run.segmentations] == [True]


@pytest.mark.parametrize("project", ["both"], indirect=True)
def test_overlay_copy_wins_and_is_writable(project: Project) -> None:
    run = project.root.runs[0]
    picks = run.picks[0]
    assert len(run.picks) == 1 and not picks.read_only
    picks.from_numpy(np.zeros((2, 3)))
    stored = json.loads((project.overlay / "ExperimentRuns/TS_001/Picks/tool_0_ribosome.json").read_text())
    assert [p["location"] for p in stored["points"]] == [{"x": 0.0, "y": 0.0, "z": 0.0}] * 2


def test_hidden_and_malformed_names_are_skipped_with_a_warning(project: Project,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    top = project.overlay / "ExperimentRuns"
    (top / ".hidden_run").mkdir(parents=True)
    run_dir = top / RUN
    (run_dir / "VoxelSpacingabc").mkdir(parents=True)
    (run_dir / "VoxelSpacing10.1234").mkdir()
    (run_dir / ".meta").write_text("meta")
    (run_dir / "Picks").mkdir(exist_ok=True)
    (run_dir / "Picks" / "two_parts.json").write_text("{}")
    (run_dir / "Picks" / ".me_1_ribosome.json").write_text("{}")
    (run_dir / "Segmentations").mkdir(exist_ok=True)
    (run_dir / "Segmentations" / "abc_u_s_name.zarr").mkdir()
    (run_dir / "Segmentations" / "nonsense.zarr").mkdir()
    with caplog.at_level(logging.WARNING, logger="copickfs.copick"):
        run = project.root.runs[0]
        assert [r.name for r in project.root.runs] == [RUN]
        assert [vs.voxel_size for vs in run.voxel_spacings] == [VS]
        assert [p.user_id for p in run.picks] == ["tool"]
        assert [s.name for s in run.segmentations] == ["membrane"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    for bad in ("VoxelSpacingabc", "VoxelSpacing10.1234", "Picks/two_parts.json", "abc_u_s_name.zarr",
                "nonsense.zarr"):
        assert f"ExperimentRuns/TS_001/{bad}" in messages or bad in messages, bad
    assert ".hidden_run" not in messages and ".me_1_ribosome" not in messages


def test_invalid_picks_json_names_the_file_and_spares_the_listing(project: Project) -> None:
    picks_dir = project.overlay / "ExperimentRuns" / RUN / "Picks"
    picks_dir.mkdir(parents=True, exist_ok=True)
    (picks_dir / "bad_1_ribosome.json").write_text('{"points": [')
    (picks_dir / "worse_1_ribosome.json").write_text('{"pickable_object_name": "ribosome"}')
    run = project.root.runs[0]
    by_user = {p.user_id: p for p in run.picks}
    assert set(by_user) == {"bad", "tool", "worse"}
    with pytest.raises(PicksFileError, match=r"ExperimentRuns/TS_001/Picks/bad_1_ribosome.json: invalid JSON"):
        by_user["bad"].points
    with pytest.raises(PicksFileError, match=r"worse_1_ribosome.json: .*user_id"):
        by_user["worse"].load()
    np.testing.assert_allclose(by_user["tool"].numpy()[0], project.content.positions)


def test_bad_inputs_fail_with_clear_errors(tmp_path: Path) -> None:
    root = CopickRootFSSpec(config(tmp_path))
    run = root.new_run("TS_001")
    for call, match in [
        (lambda: run.new_picks("ribosome", "1", user_id="__"), "user_id '__' cannot be empty"),
        (lambda: run.new_picks("nucleosome", "1"), "not a pickable object"),
        (lambda: run.new_voxel_spacing(10.1234), "more than three decimals"),
        (lambda: run.new_voxel_spacing(-1), "positive"),
        (lambda: run.new_segmentation(10.0005, "membrane", "1"), "more than three decimals"),
        (lambda: run.new_segmentation(10.0, "a b", "1", is_multilabel=True), "invalid segmentation name"),
        (lambda: root.new_run("../escape"), "invalid run name"),
        (lambda: root.new_run(".hidden"), "invalid run name"),
        (lambda: run.new_voxel_spacing(10.0).new_tomogram("wbp_2"), "invalid tomogram type"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()
    # As copick's sanitize_name: characters a name part may not hold become '-', rather than failing.
    assert (run.new_picks("ribosome", "se/ss", user_id="a_b").path
            == "ExperimentRuns/TS_001/Picks/a-b_se-ss_ribosome.json")
    no_user = CopickRootFSSpec(config(tmp_path, user_id=None))
    with pytest.raises(ValueError, match="no user_id"):
        no_user.get_run("TS_001").new_picks("ribosome", "1")
    with pytest.raises(ConfigError, match="config file not found"):
        CopickRootFSSpec.from_file(tmp_path / "missing.json")


def test_attributes_follow_copick(project: Project) -> None:
    root = project.root
    assert root.root_overlay == str(project.overlay) and root.root_static == str(project.static)
    assert root.fs_overlay.protocol[0] == "file" and not root.static_is_overlay
    run = root.runs[0]
    assert isinstance(run, CopickRunFSSpec)
    assert run.static_path == f"{project.static}/ExperimentRuns/{RUN}"
    assert run.overlay_path == f"{project.overlay}/ExperimentRuns/{RUN}"
    tomogram = run.voxel_spacings[0].tomograms[0]
    assert tomogram.static_stem == f"{project.static}/ExperimentRuns/{RUN}/VoxelSpacing10.000/wbp"
    assert tomogram.overlay_path.endswith("/VoxelSpacing10.000/wbp.zarr")
    picks = run.picks[0]
    assert picks.path == f"ExperimentRuns/{RUN}/Picks/tool_0_ribosome.json"
    assert picks.directory == f"ExperimentRuns/{RUN}/Picks/"
    assert json.loads(picks.fs.cat_file(picks.path))["user_id"] == "tool"  # fs + path read the winning layer
    assert picks.color == (0, 117, 220, 255) and picks.from_tool and not picks.from_user
    seg = run.segmentations[0]
    assert isinstance(seg, CopickSegmentationFSSpec) and seg.color == (255, 164, 5, 255)
    assert CopickConfigFSSpec is type(root.config)


def test_get_run_without_listing_and_refresh(project: Project) -> None:
    root = project.root
    assert root.get_run(RUN) is not None and root._runs is None
    assert root.get_run("TS_999") is None and root.get_run("../x") is None
    assert [r.name for r in root.runs] == [RUN]
    (project.overlay / "ExperimentRuns" / "TS_002").mkdir(parents=True)
    assert [r.name for r in root.runs] == [RUN]  # cached, as copick
    root.refresh()
    assert [r.name for r in root.runs] == [RUN, "TS_002"]


def test_ensure_creates_only_when_asked(tmp_path: Path) -> None:
    root = CopickRootFSSpec(config(tmp_path / "o", tmp_path / "s"))
    (tmp_path / "o").mkdir()
    (tmp_path / "s").mkdir()
    run = CopickRunFSSpec(root, CopickRunMeta(name="TS_9"))
    assert run.ensure() is False and not (tmp_path / "o/ExperimentRuns/TS_9").exists()
    assert run.ensure(create=True) is True and (tmp_path / "o/ExperimentRuns/TS_9").is_dir()
    assert list((tmp_path / "s").iterdir()) == []


def test_segmentation_names_parse_back(tmp_path: Path) -> None:
    root = CopickRootFSSpec(config(tmp_path))
    run = root.new_run("TS_001")
    labels = np.zeros((8, 8, 8), np.uint16)
    labels[2:4] = 1
    labels[5:7] = 2
    run.new_segmentation(7.84, "cells", "3", is_multilabel=True).from_numpy(labels, levels=2)
    run.new_segmentation(10.0, "ribosome", "3").from_numpy(labels > 0)
    assert sorted(p.name for p in (tmp_path / "ExperimentRuns/TS_001/Segmentations").iterdir()) == [
        "10.000_me_3_ribosome.zarr", "7.840_me_3_cells-multilabel.zarr"]
    run.refresh()
    multilabel = run.get_segmentations(is_multilabel=True)
    assert [(s.name, s.voxel_size, s.user_id, s.session_id) for s in multilabel] == [("cells", 7.84, "me", "3")]
    # As copick: stored in the smallest unsigned type that holds every value, whatever the input's type.
    assert multilabel[0].numpy().dtype == np.uint8 and set(np.unique(multilabel[0].numpy("1"))) <= {0, 1, 2}
    assert [s.name for s in run.get_segmentations(voxel_size=10.0)] == ["ribosome"]
    assert run.get_segmentations(name="ribosome")[0].numpy().dtype == np.uint8


def test_features_and_object_maps(tmp_path: Path) -> None:
    static, overlay = tmp_path / "static", tmp_path / "overlay"
    static.mkdir()
    writer = CopickRootFSSpec(config(static))
    tomogram = writer.new_run(RUN).new_voxel_spacing(VS).new_tomogram(TOMO)
    tomogram.from_numpy(np.ones((8, 8, 8)))
    tomogram.new_features("sobel").from_numpy(np.arange(2 * 8 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 8))
    writer.get_object("ribosome").from_numpy(np.full((6, 6, 6), 3.0), voxel_size=VS)
    assert writer.get_object("membrane").zarr() is None
    overlay.mkdir()
    root = CopickRootFSSpec(config(overlay, static))
    features = root.runs[0].voxel_spacings[0].tomograms[0].features
    assert [(f.feature_type, f.read_only) for f in features] == [("sobel", True)]
    assert features[0].numpy().shape == (2, 8, 8, 8)
    assert features[0].numpy(slices=(1, slice(0, 1), 0, 0))[0] == 512.0
    ribosome = root.get_object("ribosome")
    assert ribosome.read_only and ribosome.numpy().mean() == 3.0 and ribosome.radius == 150.0
    with pytest.raises(PermissionError):
        ribosome.from_numpy(np.zeros((2, 2, 2)), voxel_size=VS)
    assert root.get_object("membrane").numpy() is None and root.get_object("nothing") is None


def test_meshes_as_trimesh_objects(tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh", reason="trimesh is the optional 'mesh' extra")
    root = CopickRootFSSpec(config(tmp_path))
    run = root.new_run(RUN)
    box = trimesh.creation.box(extents=(10.0, 20.0, 30.0))
    run.new_mesh("membrane", "1", mesh=box)
    run.refresh()
    loaded = run.meshes[0].mesh
    assert isinstance(loaded, trimesh.Scene)
    np.testing.assert_allclose(loaded.extents, [10.0, 20.0, 30.0])
    assert run.meshes[0].glb()[:4] == b"glTF"
