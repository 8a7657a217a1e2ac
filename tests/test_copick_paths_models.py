"""Path templates and parsers, and the JSON shapes of the picks schema and config (copick's field list)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from copickfs.config import CopickConfig, PickableObject, parse_config
from copickfs.copick import CopickPicksFile, CopickPoint, PicksFileError, paths
from copickfs.copick.paths import MalformedName, PartsKey, SegmentationKey


def test_templates_match_copicks_layout() -> None:
    key = PartsKey("alice", "3", "ribosome")
    assert paths.voxel_spacing_path("TS_1", 7.84) == "ExperimentRuns/TS_1/VoxelSpacing7.840"
    assert paths.tomogram_path("TS_1", 10, "wbp") == "ExperimentRuns/TS_1/VoxelSpacing10.000/wbp.zarr"
    assert paths.features_path("TS_1", 10, "wbp", "sobel") == \
        "ExperimentRuns/TS_1/VoxelSpacing10.000/wbp_sobel_features.zarr"
    assert paths.picks_path("TS_1", key) == "ExperimentRuns/TS_1/Picks/alice_3_ribosome.json"
    assert paths.mesh_path("TS_1", key) == "ExperimentRuns/TS_1/Meshes/alice_3_ribosome.glb"
    assert paths.segmentation_path("TS_1", SegmentationKey(7.84, "u", "0", "cells", True)) == \
        "ExperimentRuns/TS_1/Segmentations/7.840_u_0_cells-multilabel.zarr"
    assert paths.object_path("ribosome") == "Objects/ribosome.zarr"


@pytest.mark.parametrize("key", [SegmentationKey(10.0, "u", "0", "membrane", False),
                                 SegmentationKey(0.5, "tool-x", "12", "cells", True)])
def test_segmentation_names_round_trip(key: SegmentationKey) -> None:
    assert paths.parse_segmentation(paths.segmentation_name(key)) == key


def test_parsers_tell_foreign_names_from_malformed_ones() -> None:
    assert paths.parse_voxel_spacing("VoxelSpacing10.000") == 10.0
    assert paths.parse_voxel_spacing("Picks") is None
    assert paths.parse_tomogram("wbp.zarr") == "wbp"
    assert paths.parse_tomogram("wbp_sobel_features.zarr") is None
    assert paths.parse_tomogram(".meta") is None and paths.parse_tomogram("notes.txt") is None
    assert paths.parse_features("wbp_sobel_features.zarr", "wbp") == "sobel"
    assert paths.parse_features("denoised_sobel_features.zarr", "wbp") is None
    assert paths.parse_picks("u_1_ribosome.json") == PartsKey("u", "1", "ribosome")
    assert paths.parse_picks("readme.txt") is None
    assert paths.parse_mesh("u_1_membrane.glb") == PartsKey("u", "1", "membrane")
    for parse, name, reason in [
        (paths.parse_voxel_spacing, "VoxelSpacingabc", "not a number"),
        (paths.parse_voxel_spacing, "VoxelSpacing10.0", "expected 'VoxelSpacing10.000'"),
        (paths.parse_voxel_spacing, "VoxelSpacing10.1234", "more than three decimals"),
        (paths.parse_picks, "u_1.json", "found 2 part"),
        (paths.parse_picks, "u_1_a_b.json", "found 4 part"),
        (paths.parse_mesh, "u__x.glb", "found 3 part"),
        (paths.parse_segmentation, "abc_u_0_m.zarr", "not a number"),
        (paths.parse_segmentation, "10.000_u_0.zarr", "expected <voxel size>"),
        (paths.parse_segmentation, "10_u_0_m.zarr", "expected '10.000_u_0_m.zarr'"),
        (paths.parse_segmentation, "10.000_u_0_-multilabel.zarr", "no name"),
        (paths.parse_features, "wbp__features.zarr", "no feature type"),
    ]:
        with pytest.raises(MalformedName, match=reason):
            parse(name) if parse is not paths.parse_features else parse(name, "wbp")


@pytest.mark.parametrize("value", [10, 10.0, 7.84, 0.001, 1234.5])
def test_voxel_sizes_with_up_to_three_decimals_are_kept(value: float) -> None:
    assert float(paths.format_voxel_size(value)) == value


@pytest.mark.parametrize("value", [10.0001, 7.8449, 0.0005, 0.0, -1.0, float("nan"), "ten"])
def test_other_voxel_sizes_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        paths.format_voxel_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a_b", "a b", "a/b", "", ".hidden", "-x", "a*b", "tab\t"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError):
        paths.check_name(name, "user_id")


PICKS_KEYS = ["pickable_object_name", "user_id", "session_id", "run_name", "voxel_spacing", "unit", "points",
              "trust_orientation"]


def test_picks_json_has_copicks_keys_and_shapes() -> None:
    picks = CopickPicksFile(pickable_object_name="ribosome", user_id="me", session_id="1", run_name="TS_1",
                            voxel_spacing=10.0,
                            points=[CopickPoint(location={"x": 1, "y": 2.5, "z": 3})])  # type: ignore[arg-type]
    data = json.loads(picks.to_json())
    assert list(data) == PICKS_KEYS
    assert data["unit"] == "angstrom" and data["trust_orientation"] is True
    point = data["points"][0]
    assert list(point) == ["location", "transformation_", "instance_id", "score"]
    assert point["location"] == {"x": 1.0, "y": 2.5, "z": 3.0}
    assert point["transformation_"] == np.eye(4).tolist() and point["instance_id"] == 0 and point["score"] == 1.0
    assert CopickPicksFile.model_validate(data) == picks
    assert picks.to_json().startswith('{\n    "pickable_object_name"')  # copick's json.dump(indent=4)


def test_point_transformation_is_validated_and_not_shared() -> None:
    a, b = (CopickPoint(location={"x": 0, "y": 0, "z": 0}) for _ in range(2))  # type: ignore[arg-type]
    a.transformation_[0][3] = 5.0
    assert b.transformation_[0][3] == 0.0
    a.transformation = np.diag([2.0, 2.0, 2.0, 1.0])
    assert a.transformation[0, 0] == 2.0
    with pytest.raises(ValidationError, match="4x4"):
        CopickPoint(location={"x": 0, "y": 0, "z": 0}, transformation_=[[1, 0], [0, 1]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="last row"):
        a.transformation = np.ones((4, 4))


def test_picks_file_errors_name_the_source() -> None:
    with pytest.raises(PicksFileError, match=r"^where.json: invalid JSON at line 1"):
        CopickPicksFile.from_json("{", "where.json")
    with pytest.raises(PicksFileError, match=r"^p.json: not a copick picks file: points.0.location"):
        CopickPicksFile.from_json('{"pickable_object_name": "a", "user_id": "u", "session_id": "1", '
                                  '"points": [{"location": {"x": 1}}]}', "p.json")


def test_config_fields_and_pickable_objects() -> None:
    config = parse_config({"config_type": "filesystem", "name": "p", "description": "d", "version": "1",
                           "overlay_root": "/o", "static_root": "s3://bucket/x", "overlay_fs_args": {"a": 1},
                           "static_fs_args": {"anon": True}, "user_id": "u", "session_id": "1",
                           "pickable_objects": [{"name": "ribosome", "is_particle": True, "label": 3,
                                                 "color": [1, 2, 3, 4], "emdb_id": "EMD-1", "pdb_id": "1ABC",
                                                 "identifier": "GO:1", "map_threshold": 0.5, "radius": 120,
                                                 "metadata": {"k": "v"}}]})
    assert isinstance(config, CopickConfig) and config.static_fs_args == {"anon": True}
    obj = config.pickable_objects[0]
    assert (obj.label, obj.color, obj.radius, obj.metadata) == (3, (1, 2, 3, 4), 120.0, {"k": "v"})
    for bad in ({"label": 0}, {"color": [0, 0, 0]}, {"color": [0, 0, 0, 256]}, {"color": [-1, 0, 0, 0]}):
        with pytest.raises(ValidationError):
            PickableObject.model_validate({"name": "x", "is_particle": False, **bad})
