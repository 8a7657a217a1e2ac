"""Run by released copick's own Python (not copickfs's): report what copick sees, or write with copick.

    python copick_probe.py read CONFIG OUT.npz     -> JSON on stdout, arrays in OUT.npz
    python copick_probe.py write CONFIG OUT.npz    -> writes one run with copick, what it wrote in OUT.npz

`describe` uses only API that copick and copickfs share, so the copickfs tests import it and
call it on copickfs's classes: both sides then yield the same report and arrays, key for key.

Keys of the arrays: ``tomogram/<run>/<vs>/<type>``, ``picks/<run>/<user>_<session>_<object>``,
``segmentation/<run>/<type>/<store name>``, ``filament/<run>/<user>_<session>_<object>/<id>``
(its points) and ``curve/...`` (the same filament's curve, evaluated by the reader).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

#: What the write mode gives copick, and what the copickfs tests write for copick to read.
PANOPTIC_SHAPE = (2, 12, 10, 8)
CONTROL_POINTS = [[(0.0, 0.0, 0.0), (40.0, 10.0, 0.0), (80.0, 0.0, 5.0)],
                  [(10.0, 10.0, 10.0), (30.0, 50.0, 10.0)]]
BSPLINE = {"kind": "bspline", "step": 7.84, "degree": 3, "smoothing": 2.0, "knots": [0, 0, 0, 0, 0.5, 1, 1, 1, 1],
           "control_points": [(0, 0, 100), (30, 40, 100), (80, 50, 110), (120, 0, 120), (160, -20, 125)]}
POLYLINES = [[(1.0, 2.0, 3.0), (4.0, 5.0, 6.0), (7.5, 8.25, 9.125)], [(0.1, 0.2, 0.3), (100.0, 200.0, 300.0)]]


def instance_volume(rng: np.random.Generator) -> np.ndarray:
    """Instance IDs beyond 255, so the smallest dtype that holds them is uint16."""
    ids = rng.integers(0, 4, size=PANOPTIC_SHAPE[1:]) * 150
    return ids.astype(np.int64)


def panoptic_volume(rng: np.random.Generator) -> np.ndarray:
    """Labels 0 (background), 1 and 2 (the test project's objects); instances only on objects."""
    labels = rng.integers(0, 3, size=PANOPTIC_SHAPE[1:])
    instances = np.where(labels > 0, rng.integers(0, 5, size=PANOPTIC_SHAPE[1:]), 0)
    return np.stack([labels, instances]).astype(np.int64)


def segmentation_facts(root: Any, seg: Any) -> dict[str, Any]:
    """A segmentation's type, levels (dtype, shape), OME axes, scales and metadata, and the instances it holds."""
    import zarr

    group = zarr.open_group(seg.zarr(), mode="r")
    multiscale = group.attrs.asdict()["multiscales"][0]
    datasets = multiscale["datasets"]
    facts: dict[str, Any] = {
        "name": seg.name, "voxel_size": seg.voxel_size, "type": seg.segmentation_type, "directory": seg.directory,
        "dtypes": [str(group[d["path"]].dtype) for d in datasets],
        "shapes": [list(group[d["path"]].shape) for d in datasets],
        "axes": multiscale["axes"], "paths": [d["path"] for d in datasets],
        "transforms": [d["coordinateTransformations"] for d in datasets],
        # copick's writer always stores this entry, {} when it has nothing to say
        "metadata": multiscale.get("metadata") or {},
    }
    if seg.is_instance:
        facts["instance_ids"] = seg.instance_ids().tolist()
    if seg.is_panoptic:
        facts["segments"] = [list(pair) for pair in seg.segments()]
        facts["instance_ids"] = {o.name: seg.instance_ids(object_name=o.name).tolist() for o in root.pickable_objects}
    return facts


def _filament_facts(run_name: str, key: str, filaments: Any, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    entries = []
    for filament in filaments.filaments:
        name = f"{run_name}/{key}/{filament.instance_id}"
        arrays[f"filament/{name}"] = np.asarray(filament.points, dtype=float)
        entry = filament.model_dump(mode="json", exclude={"points"})
        entry["curve_is_current"] = filament.curve_is_current()
        if filament.curve is not None and filament.curve.is_known:
            arrays[f"curve/{name}"] = filament.curve.evaluate()
        entries.append(entry)
    return {"voxel_spacing": filaments.voxel_spacing, "unit": filaments.meta.unit, "version": filaments.meta.version,
            "instance_ids": filaments.instance_ids().tolist(), "filaments": entries}


def describe(root: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """What a copick root shows: a JSON-able report and the arrays, with the keys of this module's docstring."""
    arrays: dict[str, np.ndarray] = {}
    runs = []
    for run in sorted(root.runs, key=lambda r: r.name):
        entry: dict[str, Any] = {"name": run.name, "segmentations": {}, "filaments": {}}
        for vs in run.voxel_spacings:
            for tomogram in vs.tomograms:
                arrays[f"tomogram/{run.name}/{vs.voxel_size:.3f}/{tomogram.tomo_type}"] = tomogram.numpy()
        for picks in run.picks:
            key = f"{picks.user_id}_{picks.session_id}_{picks.pickable_object_name}"
            arrays[f"picks/{run.name}/{key}"] = picks.numpy()[0]
        for seg in run.segmentations:
            key = f"{seg.segmentation_type}/{seg.filename}"
            arrays[f"segmentation/{run.name}/{key}"] = seg.numpy()
            entry["segmentations"][key] = segmentation_facts(root, seg)
        for filaments in run.filaments:
            key = f"{filaments.user_id}_{filaments.session_id}_{filaments.pickable_object_name}"
            entry["filaments"][key] = _filament_facts(run.name, key, filaments, arrays)
        entry["meshes"] = sorted(f"{m.user_id}_{m.session_id}_{m.pickable_object_name}" for m in run.meshes)
        runs.append(entry)
    return {"runs": runs}, arrays


def read(config: str, out: str) -> None:
    import copick
    from copick.impl.filesystem import CopickRootFSSpec

    report, arrays = describe(CopickRootFSSpec.from_file(config))
    np.savez(out, **arrays)
    report["copick_version"] = copick.__version__
    print(json.dumps(report))


def write(config: str, out: str) -> None:
    import trimesh
    from copick.impl.filesystem import CopickRootFSSpec
    from copick.models import CopickFilamentCurve

    rng = np.random.default_rng(7)
    root = CopickRootFSSpec.from_file(config)
    run = root.new_run("TS_COPICK")
    vs = run.new_voxel_spacing(7.84)
    tomogram_data = rng.normal(size=(16, 12, 10)).astype(np.float32)
    vs.new_tomogram("wbp").from_numpy(tomogram_data)
    positions = rng.uniform(0, 100, size=(4, 3))
    run.new_picks("ribosome", "5", user_id="copick").from_numpy(positions)
    labels = (rng.uniform(size=(16, 12, 10)) > 0.5).astype(np.uint8)
    seg = run.new_segmentation(7.84, "membrane", "5", user_id="copick")
    seg.from_numpy(labels)
    instances, panoptic = instance_volume(rng), panoptic_volume(rng)
    run.new_segmentation(7.84, "ribosome", "5", user_id="copick", is_instance=True).from_numpy(instances, levels=2)
    run.new_segmentation(7.84, "scene", "5", user_id="copick", is_panoptic=True).from_numpy(panoptic, levels=2)
    mesh = run.new_mesh("membrane", "5", user_id="copick")
    mesh.mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh.store()
    run.new_filaments("membrane", "5", user_id="copick").from_control_points(
        CONTROL_POINTS, instance_ids=[3, 7], voxel_spacing=7.84, polarity_known=[True, False], scores=[0.5, 1.0],
        radii=[25.0, None], metadata=[{"tool": "clicks"}, None])
    run.new_filaments("membrane", "6", user_id="copick").from_numpy(POLYLINES, metadata=[None, {"source": "fit"}])
    run.new_filaments("ribosome", "5", user_id="copick").from_curves([CopickFilamentCurve(**BSPLINE)],
                                                                     voxel_spacing=7.84)
    np.savez(out, **{"tomogram": tomogram_data, "positions": positions, "segmentation": labels,
                     "segmentation_name": np.array(seg.filename), "instances": instances, "panoptic": panoptic})
    print(json.dumps({"written": True}))


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]](sys.argv[2], sys.argv[3])
