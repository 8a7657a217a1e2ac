"""A small copick project written with copickfs's classes, for the copick tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from copickfs.copick import CopickRootFSSpec

OBJECTS: list[dict[str, Any]] = [
    {"name": "ribosome", "is_particle": True, "label": 1, "color": [0, 117, 220, 255], "radius": 150.0},
    {"name": "membrane", "is_particle": False, "label": 2, "color": [255, 164, 5, 255]},
]
RUN, VS, TOMO = "TS_001", 10.0, "wbp"


@dataclass
class Content:
    """What a layer was given, to compare with what is read back."""

    tomogram: np.ndarray
    positions: np.ndarray
    segmentation: np.ndarray
    mesh: bytes


def config(overlay: Path, static: Path | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"config_type": "filesystem", "name": "test project", "overlay_root": str(overlay),
                            "pickable_objects": OBJECTS, "user_id": "me", "session_id": "1", **extra}
    if static is not None:
        data["static_root"] = str(static)
    return data


def write_content(root_dir: Path, seed: int, user: str = "tool", session: str = "0") -> Content:
    """One run with a tomogram, picks, a mesh and a segmentation, written straight into ``root_dir``."""
    rng = np.random.default_rng(seed)
    content = Content(tomogram=rng.normal(size=(24, 20, 16)).astype(np.float32),
                      positions=rng.uniform(0, 200, size=(5, 3)),
                      segmentation=(rng.uniform(size=(24, 20, 16)) > 0.7).astype(np.uint8),
                      mesh=b"glTF" + bytes([seed % 256]) * 16)
    root = CopickRootFSSpec(config(root_dir))
    run = root.new_run(RUN, exist_ok=True)
    run.new_voxel_spacing(VS, exist_ok=True).new_tomogram(TOMO, exist_ok=True).from_numpy(content.tomogram)
    run.new_picks("ribosome", session, user_id=user, exist_ok=True).from_numpy(content.positions)
    run.new_mesh("membrane", session, user_id=user, mesh=content.mesh)
    run.new_segmentation(VS, "membrane", session, user_id=user, exist_ok=True).from_numpy(content.segmentation)
    return content
