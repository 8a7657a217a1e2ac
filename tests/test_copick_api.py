"""copick 1.31's public API on copickfs's classes: caches, exist_ok, read-only sources, errors, new entities.

Each test states copick's behaviour (read from copick's source) that an earlier copickfs got wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from copick_project import RUN, VS, config, write_content
from copickfs.copick import CopickRootFSSpec


@pytest.fixture
def root(tmp_path: Path) -> CopickRootFSSpec:
    write_content(tmp_path / "static", seed=1)
    return CopickRootFSSpec(config(tmp_path / "overlay", tmp_path / "static"))


def test_new_run_joins_runs_and_exist_ok_returns_the_same_object(root: CopickRootFSSpec) -> None:
    assert root._runs is None
    run = root.new_run("TS_NEW")
    assert run in root.runs and root.new_run("TS_NEW", exist_ok=True) is run
    with pytest.raises(ValueError):
        root.new_run(RUN)


def test_refresh_lists_again_at_once(root: CopickRootFSSpec, tmp_path: Path) -> None:
    root.refresh()
    assert root._runs is not None and [r.name for r in root._runs] == [RUN]
    (tmp_path / "overlay/ExperimentRuns/TS_OTHER").mkdir(parents=True)
    assert [r.name for r in root.runs] == [RUN]  # cached
    root.refresh()
    assert sorted(r.name for r in root.runs) == [RUN, "TS_OTHER"]
    run = root.get_run(RUN)
    run.refresh()
    assert run._picks is not None and run._voxel_spacings is not None and run._filaments is not None
    vs = run.get_voxel_spacing(VS)
    vs.refresh_tomograms()
    assert [t.tomo_type for t in vs._tomograms] == ["wbp"]
    tomogram = vs.tomograms[0]
    tomogram.refresh_features()
    assert tomogram._features == []


def test_run_name_is_settable_and_voxel_spacing_lookup_lists_nothing(root: CopickRootFSSpec) -> None:
    run = root.get_run(RUN)
    assert run.get_voxel_spacing(VS).voxel_size == VS and run._voxel_spacings is None
    assert run.get_voxel_spacing(30.0) is None and run._voxel_spacings is None
    run.name = "renamed"
    assert run.name == "renamed" and run.meta.name == "renamed"


def test_delete_by_filter_and_tool_lists(root: CopickRootFSSpec) -> None:
    run = root.get_run(RUN)
    run.new_picks("ribosome", "1").from_numpy(np.zeros((1, 3)))
    run.new_mesh("membrane", "1")
    assert [m.user_id for m in run.tool_meshes()] == ["tool"] and [m.user_id for m in run.user_meshes()] == ["me"]
    run.delete_picks(user_id="me")
    run.delete_meshes(user_id="me")
    assert [p.user_id for p in run.picks] == ["tool"] and [m.user_id for m in run.meshes] == ["tool"]
    with pytest.raises(PermissionError):
        run.delete_picks(user_id="tool")  # static: read-only


def test_new_mesh_is_stored_at_once_as_an_empty_scene(root: CopickRootFSSpec, tmp_path: Path) -> None:
    mesh = root.get_run(RUN).new_mesh("ribosome", "2")
    stored = tmp_path / "overlay/ExperimentRuns" / RUN / "Meshes/me_2_ribosome.glb"
    assert stored.read_bytes()[:4] == b"glTF"
    mesh.store()  # no geometry set: still stores
    existing = root.get_run(RUN).get_meshes(user_id="me")[0]
    existing.mesh = b"glTF-other"
    existing.store()
    fresh = CopickRootFSSpec(root.config).get_run(RUN).get_meshes(user_id="me")[0]
    fresh.store()  # never loaded: what is stored stays
    assert stored.read_bytes() == b"glTF-other"


def test_new_object_and_save_config(root: CopickRootFSSpec, tmp_path: Path) -> None:
    obj = root.new_object("vesicle", is_particle=False)
    assert obj.label == 3 and obj.color == (100, 100, 100, 255) and root.get_object("vesicle") is obj
    with pytest.raises(ValueError, match="already exists"):
        root.new_object("vesicle", is_particle=True)
    assert root.new_object("vesicle", is_particle=True, exist_ok=True).is_particle is True
    with pytest.raises(ValueError, match="label 1 already exists"):
        root.new_object("other", is_particle=True, label=1)
    root.save_config(tmp_path / "saved.json")
    saved = json.loads((tmp_path / "saved.json").read_text())
    assert [o["name"] for o in saved["pickable_objects"]] == ["ribosome", "membrane", "vesicle"]
    assert CopickRootFSSpec.from_file(tmp_path / "saved.json").get_object("vesicle").is_particle


def test_picks_identity_scores_and_full_positions(root: CopickRootFSSpec) -> None:
    picks = root.get_run(RUN).new_picks("ribosome", "5")
    transforms = np.tile(np.eye(4), (2, 1, 1))
    transforms[:, :3, 3] = [[1.0, 0, 0], [0, 2.0, 0]]
    picks.from_numpy(np.ones((2, 3)), transforms, instance_ids=np.array([4, 5]), scores=np.array([0.5, 0.25]))
    again = CopickRootFSSpec(root.config).get_run(RUN).get_picks(session_id="5")[0]
    assert again.instance_ids().tolist() == [4, 5] and again.scores().tolist() == [0.5, 0.25]
    np.testing.assert_allclose(again.full_positions(), [[2, 1, 1], [1, 3, 1]])
    for kwargs, message in [({"instance_ids": [1, -1]}, ">= 0"), ({"instance_ids": [1.5, 2]}, "integers"),
                            ({"scores": [1.0, np.nan]}, "finite")]:
        with pytest.raises(ValueError, match=message):
            picks.from_numpy(np.ones((2, 3)), **kwargs)


def test_picks_relion_round_trip(root: CopickRootFSSpec) -> None:
    pytest.importorskip("pandas", reason="df() needs pandas (the test extra)")
    run = root.get_run(RUN)
    source = run.new_picks("ribosome", "6")
    rotation = np.eye(4)
    rotation[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    source.from_numpy(np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]), np.stack([rotation, np.eye(4)]))
    df = source.df()
    # The tomogram (24, 20, 16) voxels at 10 A: centre (80, 100, 120) A; no pixel size, so no rlnCoordinate*.
    np.testing.assert_allclose(df["rlnCenteredCoordinateXAngst"], [-70.0, -40.0])
    assert "rlnCoordinateX" not in df.columns and (df["rlnTomoName"] == RUN).all()
    copy = run.new_picks("ribosome", "7")
    copy.from_df(df)
    np.testing.assert_allclose(copy.numpy()[0], source.numpy()[0], atol=1e-9)
    np.testing.assert_allclose(copy.numpy()[1], source.numpy()[1], atol=1e-9)


def test_features_set_region_takes_slices(root: CopickRootFSSpec) -> None:
    tomogram = root.get_run(RUN).get_voxel_spacing(VS).get_tomogram("wbp")
    features = tomogram.new_features("sobel")
    features.from_numpy(np.zeros((2, 4, 4, 4)))
    features.set_region(np.ones((2, 2, 2, 2)), slices=(slice(None), slice(0, 2), slice(0, 2), slice(0, 2)))
    assert features.numpy().sum() == 16


def test_segmentation_values_are_never_narrowed(root: CopickRootFSSpec) -> None:
    seg = root.get_run(RUN).new_segmentation(VS, "cells", "1", is_multilabel=True)
    volume = np.zeros((8, 8, 8), dtype=np.int64)
    volume[:2] = 300
    seg.from_numpy(volume)
    assert seg.numpy().dtype == np.uint16 and seg.numpy().max() == 300
    with pytest.raises(ValueError, match="do not fit uint8"):
        seg.from_numpy(volume, dtype=np.uint8)
    with pytest.raises(ValueError, match="non-negative"):
        seg.from_numpy(-volume)
    seg.from_numpy((volume > 0).astype(np.int64))
    with pytest.raises(ValueError, match="do not fit uint8"):
        seg.set_region(np.full((2, 2, 2), 300), x=slice(0, 2), y=slice(0, 2), z=slice(0, 2))


def test_instance_and_panoptic_segmentations(root: CopickRootFSSpec, tmp_path: Path) -> None:
    run = root.get_run(RUN)
    with pytest.raises(ValueError, match="one type"):
        run.new_segmentation(VS, "ribosome", "1", is_multilabel=True, is_instance=True)
    with pytest.raises(ValueError, match="named after one"):
        run.new_segmentation(VS, "cells", "1", is_instance=True)
    instances = np.zeros((8, 8, 8), dtype=np.uint8)
    instances[:2], instances[4:6] = 1, 7
    inst = run.new_segmentation(VS, "ribosome", "1", is_instance=True)
    inst.from_numpy(instances)
    assert (tmp_path / "overlay/ExperimentRuns" / RUN / "InstanceSegmentations/10.000_me_1_ribosome.zarr").is_dir()
    labels = (instances > 0).astype(np.uint8)  # ribosome's label is 1
    pan = run.new_segmentation(VS, "cell", "1", is_panoptic=True)
    with pytest.raises(ValueError, match="background voxels"):
        pan.from_numpy(np.stack([np.zeros_like(labels), instances]))
    pan.from_numpy(np.stack([labels, instances]))
    fresh = CopickRootFSSpec(root.config).get_run(RUN)
    assert [s.segmentation_type for s in fresh.get_segmentations(user_id="me")] == []  # untyped: binary, multilabel
    (found,) = fresh.get_segmentations(user_id="me", is_instance=True)
    assert found.numpy().dtype == np.uint16 and found.instance_ids().tolist() == [1, 7]
    (panoptic,) = fresh.get_segmentations(user_id="me", is_panoptic=True)
    assert panoptic.directory == "PanopticSegmentations" and panoptic.segments() == [("ribosome", 1), ("ribosome", 7)]
    np.testing.assert_array_equal(panoptic.instance_volume("ribosome"), instances)
    fresh.delete_segmentations(user_id="me", is_instance=True)
    assert fresh.get_segmentations(user_id="me", is_instance=None, is_panoptic=None) == [panoptic]


def test_filaments_round_trip_and_static_ones_are_read_only(root: CopickRootFSSpec, tmp_path: Path) -> None:
    run = root.get_run(RUN)
    filaments = run.new_filaments("ribosome", "1")
    filaments.from_numpy([np.zeros((2, 3)), np.ones((3, 3))], radii=[5.0, None], voxel_spacing=10.0)
    stored = tmp_path / "overlay/ExperimentRuns" / RUN / "Filaments/me_1_ribosome.json"
    assert json.loads(stored.read_text())["filaments"][1]["instance_id"] == 2
    (found,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert found.instance_ids().tolist() == [1, 2] and found.get(1).radius == 5.0 and found.voxel_spacing == 10.0
    static = tmp_path / "static/ExperimentRuns" / RUN / "Filaments"
    static.mkdir()
    (static / "tool_0_ribosome.json").write_text(json.dumps({
        "pickable_object_name": "ribosome", "user_id": "tool", "session_id": "0",
        "filaments": [{"instance_id": 1, "points": [[0, 0, 0], [1, 0, 0]]}]}))
    (tool,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="tool")
    assert tool.read_only and tool.from_tool and tool.numpy()[0].shape == (2, 3)
    with pytest.raises(PermissionError):
        tool.store()
    run.delete_filaments(user_id="me")
    assert not stored.exists() and run.get_filaments(user_id="me") == []


# ------------------------------------------------------------ filament curves (copick.models, copick.util.filaments)


def test_filament_from_control_points_regenerates_points_through_them() -> None:
    from copickfs.copick.models import CopickFilament

    linear = CopickFilament.from_control_points(1, [(0, 0, 0), (50, 0, 0), (50, 25, 0)], step=10.0, kind="linear")
    # Each segment is resampled on its own, evenly, at most `step` apart: 5 + 3 steps, every control point kept.
    np.testing.assert_allclose(linear.points, [(x, 0, 0) for x in range(0, 50, 10)]
                               + [(50, y, 0) for y in (0, 25 / 3, 50 / 3, 25)], atol=1e-12)
    assert linear.curve.alpha is None and linear.curve_is_current()
    traced = CopickFilament.from_control_points(2, [(0, 0, 0), (40, 10, 0), (80, 0, 0)], step=10.0)
    assert traced.curve.kind == "catmull-rom" and traced.curve.alpha == 0.5
    points = np.asarray(traced.points)
    assert [tuple(points[0]), tuple(points[-1])] == [(0, 0, 0), (80, 0, 0)] and (40, 10, 0) in traced.points
    assert np.linalg.norm(np.diff(points, axis=0), axis=1).max() <= 10.0
    assert not CopickFilament(instance_id=3, points=traced.points).curve_is_current()  # no curve
    with pytest.raises(ValueError, match="from_curve"):
        CopickFilament.from_control_points(4, [(0, 0, 0), (1, 0, 0)], step=1.0, kind="bspline")
    with pytest.raises(ValueError, match="coincide"):
        CopickFilament.from_control_points(5, [(0, 0, 0), (0, 0, 0), (1, 0, 0)], step=1.0)


def test_filament_curve_is_stored_without_unset_fields_and_read_back(root: CopickRootFSSpec, tmp_path: Path) -> None:
    filaments = root.get_run(RUN).new_filaments("membrane", "1")
    filaments.from_control_points([[(0, 0, 0), (30, 0, 0)], [(0, 10, 0), (20, 30, 0), (40, 10, 0)]],
                                  kind="linear", voxel_spacing=5.0, metadata=[{"tool": "clicks"}, None])
    stored = json.loads((tmp_path / "overlay/ExperimentRuns" / RUN / "Filaments/me_1_membrane.json").read_text())
    assert stored["filaments"][0]["curve"] == {"kind": "linear", "control_points": [[0, 0, 0], [30, 0, 0]], "step": 5.0}
    (found,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert [f.curve_is_current() for f in found.filaments] == [True, True]
    assert [c.tolist() for c in found.control_points()] == [[[0, 0, 0], [30, 0, 0]], [[0, 10, 0], [20, 30, 0],
                                                                                      [40, 10, 0]]]
    assert found.filaments[0].curve == filaments.filaments[0].curve and found.get(1).metadata == {"tool": "clicks"}
    with pytest.raises(ValueError, match="step or voxel_spacing"):
        root.get_run(RUN).new_filaments("membrane", "2").from_control_points([[(0, 0, 0), (1, 0, 0)]])


def test_filament_stale_curve_is_dropped_on_store_with_a_warning(root: CopickRootFSSpec,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    filaments = root.get_run(RUN).new_filaments("membrane", "1")
    filaments.from_control_points([[(0, 0, 0), (40, 10, 0), (80, 0, 0)]], voxel_spacing=10.0)
    (traced,) = filaments.filaments
    moved = traced.model_copy(update={"points": [(0, 0, 0), (40, 40, 0), (80, 0, 0)]})
    assert traced.curve_is_current() and not moved.curve_is_current()
    filaments.filaments = [moved]
    with caplog.at_level("WARNING"):
        filaments.store()
    assert "Dropping the curves of filaments [1]" in caplog.text
    (reread,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert reread.filaments[0].curve is None and reread.filaments[0].points[1] == (40.0, 40.0, 0.0)
    # An editor gets a curve derived from the points at the file's voxel spacing; its edit stores a curve again.
    curve = reread.editable_curve(1)
    assert curve.kind == "catmull-rom" and curve.step == 10.0 and curve.is_current_for(reread.filaments[0].points)
    reread.filaments = [reread.filaments[0].with_control_points(curve.control_points, step=curve.step)]
    reread.store()
    (again,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert again.filaments[0].curve_is_current() and again.control_points()[0] is not None
    with pytest.raises(KeyError):
        again.editable_curve(99)


def test_unknown_curve_kinds_are_kept_as_written_and_never_evaluated(root: CopickRootFSSpec) -> None:
    from copickfs.copick.models import CopickFilament

    nurbs = {"kind": "nurbs", "control_points": [(0, 0, 0), (5, 5, 0)], "step": 1.0, "weights": [1.0, 2.0]}
    filament = CopickFilament(instance_id=1, points=[(0, 0, 0), (9, 9, 9)], curve=nurbs)
    assert not filament.curve.is_known and not filament.curve_is_current()
    with pytest.raises(ValueError, match="unknown kind"):
        filament.curve.evaluate()
    filaments = root.get_run(RUN).new_filaments("membrane", "1")
    filaments.filaments = [filament]
    filaments.store()  # an unknown kind is not "stale": it is kept
    (found,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert found.filaments[0].curve.model_dump() == {**nurbs, "control_points": [(0, 0, 0), (5, 5, 0)]}
    assert found.control_points() == [None]
    # The editor's curve for it is derived from the points, since it cannot show a nurbs.
    assert found.filaments[0].editable_curve(step=3.0).kind == "catmull-rom"


def test_bspline_curves_from_tck_and_reversed_filaments(root: CopickRootFSSpec) -> None:
    from copickfs.copick.models import CopickFilament, CopickFilamentCurve

    knots = [0, 0, 0, 0, 0.5, 1, 1, 1, 1]
    coefficients = [[0, 3, 8, 12, 16], [0, 4, 5, 0, -2], [10, 10, 11, 12, 12.5]]
    curve = CopickFilamentCurve.from_tck((knots, coefficients, 3), step=10.0, smoothing=2.0, scale=10.0)
    assert curve.kind == "bspline" and curve.control_points[1] == (30.0, 40.0, 100.0) and curve.degree == 3
    with pytest.raises(ValueError, match="clamped"):
        CopickFilamentCurve(kind="bspline", step=1.0, degree=3, knots=[0, 0, 0, 0.2, 0.5, 1, 1, 1, 1],
                            control_points=curve.control_points)
    fitted = CopickFilament.from_curve(1, curve, score=0.5)
    assert fitted.points[0] == (0, 0, 100) and fitted.points[-1] == (160, -20, 125)  # clamped: ends exactly
    with pytest.raises(ValueError, match="needs 5 control points"):
        fitted.with_control_points(curve.control_points[:4])
    backwards = fitted.reversed()
    assert backwards.points == fitted.points[::-1] and backwards.curve.knots == knots and backwards.curve_is_current()
    assert backwards.curve.control_points == curve.control_points[::-1] and backwards.score == 0.5
    filaments = root.get_run(RUN).new_filaments("ribosome", "1")
    filaments.from_curves([curve, backwards.curve], instance_ids=[4, 2], voxel_spacing=10.0)
    (found,) = CopickRootFSSpec(root.config).get_run(RUN).get_filaments(user_id="me")
    assert [f.curve for f in found.filaments] == [curve, backwards.curve] and found.instance_ids().tolist() == [4, 2]


def test_multiscale_arrays_are_listed_in_level_order(root: CopickRootFSSpec) -> None:
    """zarr 2 (copick's world) lists a pyramid's levels as "0", "1", "2"; zarr 3 yields them
    as their metadata fetches finish, so copickfs's stores read metadata in listing order."""
    import zarr

    vs = root.get_run(RUN).get_voxel_spacing(VS)
    tomogram = vs.new_tomogram("ordered")
    tomogram.from_numpy(np.zeros((40, 40, 40), dtype=np.float32), levels=4)
    seen = {tuple(name for name, _ in zarr.open_group(tomogram.zarr(), mode="r").arrays()) for _ in range(30)}
    assert seen == {("0", "1", "2", "3")}
