"""Run by released copick's own Python (not copickfs's): report what copick sees, or write with copick.

    python copick_probe.py read CONFIG OUT.npz     -> JSON on stdout, arrays in OUT.npz
    python copick_probe.py write CONFIG OUT.npz    -> writes one run with copick, arrays it wrote in OUT.npz

Keys of the arrays: ``tomogram/<run>/<vs>/<type>``, ``picks/<run>/<user>_<session>_<object>``,
``segmentation/<run>/<store name>``.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def read(config: str, out: str) -> None:
    from copick.impl.filesystem import CopickRootFSSpec

    root = CopickRootFSSpec.from_file(config)
    arrays: dict[str, np.ndarray] = {}
    report: dict[str, object] = {"runs": []}
    for run in root.runs:
        entry: dict[str, object] = {"name": run.name, "tomograms": [], "picks": [], "segmentations": [],
                                    "meshes": []}
        for vs in run.voxel_spacings:
            for tomogram in vs.tomograms:
                key = f"tomogram/{run.name}/{vs.voxel_size:.3f}/{tomogram.tomo_type}"
                arrays[key] = tomogram.numpy()
                entry["tomograms"].append(key)
        for picks in run.picks:
            key = f"picks/{run.name}/{picks.user_id}_{picks.session_id}_{picks.pickable_object_name}"
            arrays[key] = picks.numpy()[0]
            entry["picks"].append(key)
        for seg in run.segmentations:
            key = f"segmentation/{run.name}/{seg.filename}"
            arrays[key] = seg.numpy()
            entry["segmentations"].append(key)
        entry["meshes"] = sorted(f"{m.user_id}_{m.session_id}_{m.pickable_object_name}" for m in run.meshes)
        report["runs"].append(entry)
    np.savez(out, **arrays)
    import copick

    report["copick_version"] = copick.__version__
    print(json.dumps(report))


def write(config: str, out: str) -> None:
    import trimesh
    from copick.impl.filesystem import CopickRootFSSpec

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
    mesh = run.new_mesh("membrane", "5", user_id="copick")
    mesh.mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh.store()
    np.savez(out, **{"tomogram": tomogram_data, "positions": positions, "segmentation": labels,
                     "segmentation_name": np.array(seg.filename)})
    print(json.dumps({"written": True}))


if __name__ == "__main__":
    {"read": read, "write": write}[sys.argv[1]](sys.argv[2], sys.argv[3])
