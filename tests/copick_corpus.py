"""A stand-in for copick's published test corpus, for running copick's filesystem tests offline.

copick's suite reads ``sample_project.zip`` from a DOI, which is not reachable everywhere.
This writes a project with the same layout, names and counts as far as the suite's
assertions reveal them (runs, objects, picks, meshes, segmentations, tomograms, features,
TS_001's gapstop ribosome picks as the suite lists them, TS_002's instance and panoptic
segmentations). Voxel values differ from the published ones, so the few tests that check
voxel sums are skipped on it (see copick_suite_conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from copickfs.copick import CopickRootFSSpec

OBJECTS: list[dict[str, Any]] = [
    {"name": "proteasome", "is_particle": True, "label": 1, "color": [255, 0, 0, 255], "radius": 60,
     "map_threshold": 0.0418},
    {"name": "ribosome", "is_particle": True, "label": 2, "color": [0, 255, 0, 255], "radius": 150},
    {"name": "membrane", "is_particle": False, "label": 3, "color": [0, 0, 0, 255]},
]
CONFIG: dict[str, Any] = {"config_type": "filesystem", "name": "test", "description": "A test project.",
                          "version": "0.5.0", "pickable_objects": OBJECTS}

#: TS_001's ribosome picks by gapstop, as copick's suite states them.
GAPSTOP_POINTS = [
    [13.109512186388912, 74.71185201921038, 202.47507943202584],
    [631.4709314294199, 216.35459177569777, 153.51979459358296],
    [13.269106483949642, 493.1507625056122, 191.96928603555477],
    [295.3857864878723, 48.00127558957804, 12.379751870875282],
    [204.07695344548807, 363.70538811345045, 421.5631049171766],
    [341.5641484136662, 583.1178654724652, 265.92234830389776],
    [595.6901903739324, 152.54150479358174, 269.050095901217],
    [414.749742830462, 33.87702343343186, 149.04501288274474],
    [230.77112217392795, 158.07881774104047, 33.889195589406285],
    [205.03836780107628, 191.17304087417068, 17.748902885347206],
]
GAPSTOP_TRANSFORMS = [
    [[0.91082157, 0.41183225, 0.02825357, 2.04080334], [0.39883888, -0.86030307, -0.31749989, -1.22192711], [-0.10645006, 0.30045437, -0.9478373, -4.95620327], [0.0, 0.0, 0.0, 1.0]],
    [[0.25494658, -0.930823, 0.26186024, -4.15673036], [0.07354863, 0.28869173, 0.95459294, 1.73078736], [-0.96415395, -0.22411074, 0.14206172, -0.88387753], [0.0, 0.0, 0.0, 1.0]],
    [[0.97406863, -0.12313085, -0.18981335, -1.54048992], [0.10487541, 0.98909245, -0.10342766, -4.39372889], [0.20047809, 0.08083889, 0.97635732, -1.8710075], [0.0, 0.0, 0.0, 1.0]],
    [[0.63125354, 0.05558002, -0.77358247, -0.27267958], [0.26806113, 0.92032357, 0.28486444, 1.45023474], [0.72777895, -0.38718908, 0.56605867, -1.47745371], [0.0, 0.0, 0.0, 1.0]],
    [[-0.16909497, -0.31483618, -0.93396203, 3.25622553], [0.98550232, -0.04068504, -0.16471158, 3.51267799], [0.01385888, -0.94827365, 0.31715142, -0.50734273], [0.0, 0.0, 0.0, 1.0]],
    [[-0.46587729, 0.80999162, 0.35619085, 2.20399113], [0.87365849, 0.48488946, 0.04003821, -4.95970857], [-0.14028257, 0.32984205, -0.93355504, 2.89001954], [0.0, 0.0, 0.0, 1.0]],
    [[-0.12243006, 0.91735533, 0.37877445, 2.32553322], [-0.77156017, -0.32802754, 0.54506223, 3.06393629], [0.62426419, -0.22551528, 0.74795526, -2.55255873], [0.0, 0.0, 0.0, 1.0]],
    [[0.704833, -0.70612128, -0.06784677, -1.28122836], [0.70160862, 0.70803464, -0.08020155, -1.33420528], [0.10466989, 0.00892682, 0.99446696, -2.85401946], [0.0, 0.0, 0.0, 1.0]],
    [[0.19161049, 0.75988339, -0.62117843, -4.11172068], [-0.57053738, -0.42874731, -0.7004733, -2.50187213], [-0.79860661, 0.48862355, 0.3513894, 3.90473263], [0.0, 0.0, 0.0, 1.0]],
    [[0.40646443, 0.88858526, 0.21260974, 2.53815537], [-0.66079699, 0.44660241, -0.60323597, 4.90033419], [-0.63097861, 0.10470209, 0.76870246, -4.43535779], [0.0, 0.0, 0.0, 1.0]],
]

PICKS = [("pytom", "0", "proteasome"), ("test.user", "1234", "ribosome"), ("gapstop", "0", "ribosome"),
         ("test.user", "1234", "proteasome"), ("ArtiaX", "19", "proteasome")]
MESHES = [("membrain", "0", "membrane"), ("user.test", "321", "proteasome"), ("gapstop", "0", "ribosome")]
SEGMENTATIONS = [(10.0, "cellcanvas", "0", "prediction", True), (10.0, "test.user", "123", "painting", True),
                 (20.0, "membrain", "0", "membrane", False)]


def build(destination: Path) -> Path:
    """Write ``sample_project/``, ``sample_overlay/`` and both configs under ``destination``."""
    project, overlay = destination / "sample_project", destination / "sample_overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "ExperimentRuns").mkdir(exist_ok=True)
    rng = np.random.default_rng(31)
    root = CopickRootFSSpec({**CONFIG, "overlay_root": str(project)})
    root.get_object("proteasome").from_numpy(rng.uniform(0, 0.1, (42, 36, 36)).astype(np.float32), 10.0)
    for name in ("TS_001", "TS_002", "TS_003"):
        run = root.new_run(name)
        for voxel_size, size in ((10.0, 64), (20.0, 32)):
            vs = run.new_voxel_spacing(voxel_size)
            vs.new_tomogram("wbp").from_numpy(rng.normal(size=(size,) * 3).astype(np.float32))
        if name == "TS_001":
            _ts_001(run, rng)
        elif name == "TS_002":
            _ts_002(run)
    for name in ("filesystem.json", "filesystem_overlay_only.json"):
        (destination / name).write_text(json.dumps({**CONFIG, "overlay_root": "local:///PLACEHOLDER"}, indent=2))
    return destination


def _ts_001(run: Any, rng: np.random.Generator) -> None:
    vs = run.get_voxel_spacing(10.0)
    vs.new_tomogram("denoised").from_numpy(rng.normal(size=(64,) * 3).astype(np.float32))
    wbp = vs.get_tomogram("wbp")
    for feature in ("sobel", "edge"):
        wbp.new_features(feature).from_numpy(rng.uniform(size=(64,) * 3).astype(np.float32))
    for user, session, obj in PICKS:
        picks = run.new_picks(obj, session, user_id=user)
        if (user, obj) == ("gapstop", "ribosome"):
            picks.from_numpy(np.array(GAPSTOP_POINTS), np.array(GAPSTOP_TRANSFORMS))
        else:
            picks.from_numpy(rng.uniform(0, 640, (5, 3)))
    import trimesh

    for user, session, obj in MESHES:
        run.new_mesh(obj, session, user_id=user, mesh=trimesh.creation.box(extents=(10.0, 20.0, 30.0)).scene())
    for voxel_size, user, session, name, multilabel in SEGMENTATIONS:
        size = 64 if voxel_size == 10.0 else 32
        seg = run.new_segmentation(voxel_size, name, session, is_multilabel=multilabel, user_id=user)
        seg.from_numpy((rng.uniform(size=(size,) * 3) > 0.5).astype(np.uint8))


def _ts_002(run: Any) -> None:
    labels = np.zeros((64, 64, 64), dtype=np.uint16)
    instances = np.zeros_like(labels)
    labels[40:48] = 3  # membrane, one unsplit region
    for index, corner in enumerate((2, 12, 22), start=1):  # ribosomes 1-3
        labels[corner:corner + 6, corner:corner + 6, 30:36] = 2
        instances[corner:corner + 6, corner:corner + 6, 30:36] = index
    labels[50:56, 50:56, 50:56], instances[50:56, 50:56, 50:56] = 1, 1  # one proteasome
    ribosomes = np.where(labels == 2, instances, 0)
    run.new_segmentation(10.0, "ribosome", "1", user_id="annotator", is_instance=True).from_numpy(ribosomes)
    run.new_segmentation(10.0, "cell", "1", user_id="annotator", is_panoptic=True).from_numpy(
        np.stack([labels, instances]))
