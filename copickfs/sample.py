"""A small, deterministic copick project to mount and play with (used by `copickfs demo`).

Everything is synthetic and seeded, so two builds are byte-identical: a 64³ tomogram with
ribosome-like blobs and a curved membrane, picks at the blob centres, a membrane mesh and a
membrane segmentation. It is written with copickfs's copick classes (`copickfs.copick`),
so its zarr stores are Zarr format 2 / OME-NGFF 0.4, which released copick (zarr<3) reads.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError
from .copick import CopickRootFSSpec

RUN = "TS_001"
VOXEL_SPACING = 10.0
TOMO_TYPE = "wbp"
USER, SESSION = "demo", "0"
SIZE = 64
LEVELS = 3
SEED = 20240601
CONFIG_NAME = "copick_config.json"
GLB_JSON, GLB_BIN = 0x4E4F534A, 0x004E4942  # glTF chunk types: b"JSON", b"BIN\0" little-endian

PICKABLE_OBJECTS: list[dict[str, Any]] = [
    {"name": "ribosome", "is_particle": True, "label": 1, "color": [0, 117, 220, 255], "radius": 150.0},
    {"name": "membrane", "is_particle": False, "label": 2, "color": [255, 164, 5, 255]},
]
PROJECT: dict[str, Any] = {
    "config_type": "filesystem",
    "name": "copickfs demo",
    "description": "A synthetic one-run project built by `copickfs demo`.",
    "version": "1.0.0",
    "pickable_objects": PICKABLE_OBJECTS,
}

_VS = f"VoxelSpacing{VOXEL_SPACING:.3f}"
RUN_DIR = f"ExperimentRuns/{RUN}"
TOMOGRAM = f"{RUN_DIR}/{_VS}/{TOMO_TYPE}.zarr"
PICKS = f"{RUN_DIR}/Picks/{USER}_{SESSION}_ribosome.json"
MESH = f"{RUN_DIR}/Meshes/{USER}_{SESSION}_membrane.glb"
SEGMENTATION = f"{RUN_DIR}/Segmentations/{VOXEL_SPACING:.3f}_{USER}_{SESSION}_membrane.zarr"


def build_sample_project(static: str | os.PathLike[str]) -> bool:
    """Build the project at ``static`` unless it is there already; True if it was built.

    The tree is built beside ``static`` and renamed into place, so an interrupted build
    never leaves a half project that a later run would take for a whole one.
    """
    static = Path(static)
    if (static / CONFIG_NAME).is_file():
        return False
    if static.exists() and (not static.is_dir() or any(static.iterdir())):
        raise ConfigError(f"static_root: {static} exists but is not a sample project (no {CONFIG_NAME}); "
                          "remove it or choose another directory")
    partial = static.with_name(f".{static.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    write_project(partial)
    partial.replace(static)  # an empty directory in the way is replaced
    return True


def write_project(root: Path) -> None:
    """Write every file of the sample project under ``root``, with copickfs's copick classes."""
    rng = np.random.default_rng(SEED)
    centres = rng.integers(8, [40, 56, 56], size=(6, 3))  # z, y, x voxels; above the membrane
    surface = membrane_surface()
    (root / CONFIG_NAME).write_text(json.dumps(PROJECT, indent=2) + "\n")
    project = CopickRootFSSpec({**PROJECT, "overlay_root": str(root), "user_id": USER, "session_id": SESSION})
    run = project.new_run(RUN)
    voxel_spacing = run.new_voxel_spacing(VOXEL_SPACING)
    voxel_spacing.new_tomogram(TOMO_TYPE).from_numpy(tomogram(rng, centres, surface), levels=LEVELS)
    run.new_segmentation(VOXEL_SPACING, "membrane", SESSION).from_numpy(segmentation(surface), levels=LEVELS)
    picks = run.new_picks("ribosome", SESSION)
    picks.meta.voxel_spacing = VOXEL_SPACING
    picks.from_numpy(centres[:, ::-1] * VOXEL_SPACING)  # x, y, z in angstrom
    run.new_mesh("membrane", SESSION, mesh=glb(*membrane_mesh(surface)))


def membrane_surface() -> np.ndarray:
    """The membrane's z (voxels) for each (y, x): a gently curved sheet near the bottom."""
    x = np.arange(SIZE)
    return np.broadcast_to(48 + 3 * np.sin(2 * np.pi * x / SIZE), (SIZE, SIZE))


def tomogram(rng: np.random.Generator, centres: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Noise, Gaussian blobs at ``centres`` and a bright sheet along ``surface``."""
    z, y, x = np.meshgrid(*(np.arange(SIZE),) * 3, indexing="ij")
    volume = rng.normal(0.0, 0.3, (SIZE,) * 3)
    for cz, cy, cx in centres:
        volume += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * 3.0**2))
    volume += 0.8 * np.exp(-((z - surface[None]) ** 2) / 2)
    return volume.astype(np.float32)


def segmentation(surface: np.ndarray) -> np.ndarray:
    """The membrane's voxels, labelled with the membrane's label."""
    z = np.arange(SIZE)[:, None, None]
    return np.where(np.abs(z - surface[None]) <= 1.5, PICKABLE_OBJECTS[1]["label"], 0).astype(np.uint8)


def membrane_mesh(surface: np.ndarray, steps: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A coarse triangulated patch of the membrane: (vertices x,y,z in angstrom, triangle indices)."""
    ticks = np.linspace(0, SIZE - 1, steps).round().astype(int)
    vertices = np.array([(x, y, surface[y, x]) for y in ticks for x in ticks], dtype=np.float32)
    vertices *= VOXEL_SPACING
    triangles = []
    for row in range(steps - 1):
        for col in range(steps - 1):
            a = row * steps + col
            triangles += [(a, a + 1, a + steps), (a + 1, a + steps + 1, a + steps)]
    return vertices, np.array(triangles, dtype=np.uint16)


def glb(vertices: np.ndarray, triangles: np.ndarray) -> bytes:
    """A binary glTF 2.0 file holding one triangle mesh (header, JSON chunk, BIN chunk)."""
    positions = vertices.astype("<f4").tobytes()
    indices = triangles.astype("<u2").tobytes()
    binary = _pad(positions + indices, b"\0")
    document = {
        "asset": {"version": "2.0", "generator": "copickfs demo"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "membrane"}],
        "meshes": [{"name": "membrane", "primitives": [{"attributes": {"POSITION": 0}, "indices": 1,
                                                         "mode": 4}]}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(vertices), "type": "VEC3",
             "min": vertices.min(axis=0).tolist(), "max": vertices.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5123, "count": triangles.size, "type": "SCALAR"},
        ],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962},
            {"buffer": 0, "byteOffset": len(positions), "byteLength": len(indices), "target": 34963},
        ],
        "buffers": [{"byteLength": len(positions) + len(indices)}],
    }
    text = _pad(json.dumps(document, separators=(",", ":")).encode(), b" ")
    chunks = (struct.pack("<II", len(text), GLB_JSON) + text
              + struct.pack("<II", len(binary), GLB_BIN) + binary)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def _pad(data: bytes, filler: bytes) -> bytes:
    return data + filler * (-len(data) % 4)
