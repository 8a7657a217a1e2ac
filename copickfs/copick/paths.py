"""Every copick path template and its parser, in one place and with no I/O.

Paths are relative to a project root (the union's root), in copick's layout:

    Objects/<object>.zarr
    ExperimentRuns/<run>/VoxelSpacing<vs:.3f>/<tomo_type>.zarr
    ExperimentRuns/<run>/VoxelSpacing<vs:.3f>/<tomo_type>_<feature_type>_features.zarr
    ExperimentRuns/<run>/Picks/<user>_<session>_<object>.json
    ExperimentRuns/<run>/Meshes/<user>_<session>_<object>.glb
    ExperimentRuns/<run>/Segmentations/<vs:.3f>_<user>_<session>_<name>[-multilabel].zarr
    ExperimentRuns/<run>/InstanceSegmentations/<vs:.3f>_<user>_<session>_<object>.zarr
    ExperimentRuns/<run>/PanopticSegmentations/<vs:.3f>_<user>_<session>_<name>.zarr
    ExperimentRuns/<run>/Filaments/<user>_<session>_<object>.json

Each parser takes one directory entry's name and returns its key, None when the name is
not of that kind at all (a `.meta` file, a features store among tomograms), or raises
`MalformedName` when it is of that kind but cannot be read back (the listing then skips
it with a warning). A name is only accepted in the exact form its template writes, so a
key always maps back to the one path it was found at.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

RUNS = "ExperimentRuns"
OBJECTS = "Objects"
PICKS = "Picks"
MESHES = "Meshes"
SEGMENTATIONS = "Segmentations"
INSTANCE_SEGMENTATIONS = "InstanceSegmentations"
PANOPTIC_SEGMENTATIONS = "PanopticSegmentations"
FILAMENTS = "Filaments"
#: The run directory of each segmentation type; only binary and multilabel share one (told apart by the suffix).
SEGMENTATION_DIRECTORIES = {"binary": SEGMENTATIONS, "multilabel": SEGMENTATIONS,
                            "instance": INSTANCE_SEGMENTATIONS, "panoptic": PANOPTIC_SEGMENTATIONS}
VOXEL_SPACING_PREFIX = "VoxelSpacing"
ZARR, JSON, GLB = ".zarr", ".json", ".glb"
FEATURES_SUFFIX = "_features.zarr"
MULTILABEL_SUFFIX = "-multilabel"
META_FILE = ".meta"  # copick's marker that keeps an otherwise empty directory on object stores

# copick's sanitize_name() replaces these; "_" separates the parts of file names.
_INVALID = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s_]')


class MalformedName(ValueError):
    """A directory entry of a copick kind whose name does not parse."""


class PartsKey(NamedTuple):
    """Key of a picks file or a mesh: who made it, and of which object."""

    user_id: str
    session_id: str
    object_name: str


class SegmentationKey(NamedTuple):
    voxel_size: float
    user_id: str
    session_id: str
    name: str
    is_multilabel: bool
    is_instance: bool = False
    is_panoptic: bool = False

    @property
    def kind(self) -> str:
        return segmentation_type(self.is_multilabel, self.is_instance, self.is_panoptic)


def segmentation_type(is_multilabel: bool, is_instance: bool = False, is_panoptic: bool = False) -> str:
    """``binary``, ``multilabel``, ``instance`` or ``panoptic``; ValueError when more than one flag is set (copick's words)."""
    if sum(map(bool, (is_multilabel, is_instance, is_panoptic))) > 1:
        raise ValueError("A segmentation has one type: multilabel, instance or panoptic.")
    return "multilabel" if is_multilabel else "instance" if is_instance else "panoptic" if is_panoptic else "binary"


# ------------------------------------------------------------------ names and numbers

def sanitize_name(value: str, what: str) -> str:
    """copick's sanitize_name: invalid characters become '-', leading/trailing '-' go; then checked."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {value!r}")
    sanitized = _INVALID.sub("-", value).strip("-")
    if not sanitized:
        raise ValueError(f"{what} {value!r} cannot be empty or consist only of invalid characters")
    return check_name(sanitized, what)


def check_name(value: str, what: str) -> str:
    """``value`` if copick accepts it as a name part (no "_", "/", spaces, ...); else ValueError."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if _INVALID.search(value) or value.startswith(".") or value.strip("-") != value:
        raise ValueError(f"invalid {what} {value!r}: copick names may not contain '_', '/', spaces, "
                         "control or <>:\"\\|?* characters, nor start with '.' or '-'")
    return value


def check_run_name(name: str) -> str:
    """Run names are directory names: "_" is fine (TS_001); "/", control characters and hidden names are not."""
    if not isinstance(name, str) or not name or name in (".", "..") or is_hidden(name) \
            or re.search(r"[/\x00-\x1f\x7f]", name):
        raise ValueError(f"invalid run name {name!r}: it must be a non-empty directory name "
                         "without '/' or control characters, not starting with '.'")
    return name


def format_voxel_size(voxel_size: float) -> str:
    """``voxel_size`` as copick writes it (three decimals); refuse values that would be rounded."""
    try:
        value = float(voxel_size)
    except (TypeError, ValueError):
        raise ValueError(f"voxel spacing must be a number, got {voxel_size!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"voxel spacing must be a positive number, got {voxel_size!r}")
    text = f"{value:.3f}"
    if float(text) != value and abs(float(text) - value) > 1e-9 * value:
        raise ValueError(f"voxel spacing {voxel_size!r} has more than three decimals; copick stores "
                         f"it as {text}, so it would not be found again")
    return text


# ------------------------------------------------------------------ templates

def run_path(run: str) -> str:
    return f"{RUNS}/{run}"


def voxel_spacing_name(voxel_size: float) -> str:
    return f"{VOXEL_SPACING_PREFIX}{format_voxel_size(voxel_size)}"


def voxel_spacing_path(run: str, voxel_size: float) -> str:
    return f"{run_path(run)}/{voxel_spacing_name(voxel_size)}"


def tomogram_stem(run: str, voxel_size: float, tomo_type: str) -> str:
    return f"{voxel_spacing_path(run, voxel_size)}/{tomo_type}"


def tomogram_path(run: str, voxel_size: float, tomo_type: str) -> str:
    return tomogram_stem(run, voxel_size, tomo_type) + ZARR


def features_name(tomo_type: str, feature_type: str) -> str:
    return f"{tomo_type}_{feature_type}{FEATURES_SUFFIX}"


def features_path(run: str, voxel_size: float, tomo_type: str, feature_type: str) -> str:
    return f"{voxel_spacing_path(run, voxel_size)}/{features_name(tomo_type, feature_type)}"


def parts_name(key: PartsKey, suffix: str) -> str:
    return f"{key.user_id}_{key.session_id}_{key.object_name}{suffix}"


def picks_path(run: str, key: PartsKey) -> str:
    return f"{run_path(run)}/{PICKS}/{parts_name(key, JSON)}"


def mesh_path(run: str, key: PartsKey) -> str:
    return f"{run_path(run)}/{MESHES}/{parts_name(key, GLB)}"


def segmentation_name(key: SegmentationKey) -> str:
    suffix = MULTILABEL_SUFFIX if key.is_multilabel else ""
    return f"{format_voxel_size(key.voxel_size)}_{key.user_id}_{key.session_id}_{key.name}{suffix}{ZARR}"


def segmentation_path(run: str, key: SegmentationKey) -> str:
    return f"{run_path(run)}/{SEGMENTATION_DIRECTORIES[key.kind]}/{segmentation_name(key)}"


def filaments_path(run: str, key: PartsKey) -> str:
    return f"{run_path(run)}/{FILAMENTS}/{parts_name(key, JSON)}"


def object_path(name: str) -> str:
    return f"{OBJECTS}/{name}{ZARR}"


# ------------------------------------------------------------------ parsers

def is_hidden(name: str) -> bool:
    return name.startswith(".")


def parse_run(name: str) -> str | None:
    """A run directory's name is the run's name."""
    return None if is_hidden(name) else name


def parse_voxel_spacing(name: str) -> float | None:
    if not name.startswith(VOXEL_SPACING_PREFIX):
        return None
    text = name[len(VOXEL_SPACING_PREFIX):]
    try:
        value = float(text)
    except ValueError:
        raise MalformedName(f"{text!r} after {VOXEL_SPACING_PREFIX!r} is not a number") from None
    _exact(name, value, voxel_spacing_name, f"{VOXEL_SPACING_PREFIX}<voxel size with three decimals>")
    return value


def parse_tomogram(name: str) -> str | None:
    if not name.endswith(ZARR) or name.endswith(FEATURES_SUFFIX) or is_hidden(name):
        return None
    return name[: -len(ZARR)]


def parse_features(name: str, tomo_type: str) -> str | None:
    """The feature type of ``<tomo_type>_<feature_type>_features.zarr``; None for other tomograms' features."""
    prefix = f"{tomo_type}_"
    if not name.endswith(FEATURES_SUFFIX) or not name.startswith(prefix):
        return None
    feature_type = name[len(prefix): -len(FEATURES_SUFFIX)]
    if not feature_type:
        raise MalformedName("the features store has no feature type")
    return feature_type


def _parse_parts(name: str, suffix: str) -> PartsKey | None:
    if not name.endswith(suffix) or is_hidden(name):
        return None
    parts = name[: -len(suffix)].split("_")
    if len(parts) != 3 or not all(parts):
        raise MalformedName(f"expected <user>_<session>_<object>{suffix}, found {len(parts)} part(s)")
    return PartsKey(*parts)


def parse_picks(name: str) -> PartsKey | None:
    return _parse_parts(name, JSON)


def parse_mesh(name: str) -> PartsKey | None:
    return _parse_parts(name, GLB)


def parse_filaments(name: str) -> PartsKey | None:
    return _parse_parts(name, JSON)


def segmentation_parser(kind: str):  # type: ignore[no-untyped-def]
    """The parser of one segmentation directory: its names carry no type mark but the multilabel suffix."""
    if kind == "binary":
        return parse_segmentation

    def parse(name: str) -> SegmentationKey | None:
        key = parse_segmentation(name, allow_multilabel=False)
        if key is None:
            return None
        return key._replace(is_instance=kind == "instance", is_panoptic=kind == "panoptic")
    return parse


def parse_segmentation(name: str, allow_multilabel: bool = True) -> SegmentationKey | None:
    if not name.endswith(ZARR) or is_hidden(name):
        return None
    parts = name[: -len(ZARR)].split("_")
    if len(parts) != 4 or not all(parts):
        raise MalformedName("expected <voxel size>_<user>_<session>_<name>[-multilabel].zarr")
    size, user, session, label = parts
    try:
        voxel_size = float(size)
    except ValueError:
        raise MalformedName(f"voxel size {size!r} is not a number") from None
    multilabel = allow_multilabel and label.endswith(MULTILABEL_SUFFIX)
    key = SegmentationKey(voxel_size, user, session, label.removesuffix(MULTILABEL_SUFFIX), multilabel)
    if not key.name:
        raise MalformedName("the segmentation has no name")
    _exact(name, key, segmentation_name, "<voxel size with three decimals>_<user>_<session>_<name>.zarr")
    return key


def _exact(name: str, key: object, template: object, form: str) -> None:
    """Refuse names another spelling of the same key (``VoxelSpacing10.0``): copick would not find them."""
    try:
        canonical = template(key)  # type: ignore[operator]
    except ValueError as e:
        raise MalformedName(str(e)) from None
    if canonical != name:
        raise MalformedName(f"not in the form {form} (expected {canonical!r})")
