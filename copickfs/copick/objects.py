"""`CopickRootFSSpec.new_object`: a pickable object added to the project's config, with copick's rules."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .models import PickableObject
from .paths import MULTILABEL_SUFFIX, check_name
from .volumes import CopickObjectFSSpec

if TYPE_CHECKING:
    from .root import CopickRootFSSpec

log = logging.getLogger("copickfs.copick")
DEFAULT_COLOR = (100, 100, 100, 255)


def new_object(root: CopickRootFSSpec, name: str, is_particle: bool, exist_ok: bool,
               **fields: Any) -> CopickObjectFSSpec:
    """A new object (label: the next free one; colour: copick's grey), or the existing one updated with ``exist_ok``.

    As copick: an existing name without ``exist_ok`` and a label already taken raise ValueError;
    a name ending in a segmentation type suffix only warns, since its store names would be ambiguous.
    """
    check_name(name, "object name")
    if name.endswith(MULTILABEL_SUFFIX):
        log.warning("Object name '%s' ends in a segmentation type suffix (%s); its segmentation store names will be "
                    "ambiguous.", name, MULTILABEL_SUFFIX)
    existing = root.get_object(name)
    if existing is not None:
        if not exist_ok:
            raise ValueError(f"Object name {name} already exists.")
        updated = {**existing.meta.model_dump(), "is_particle": is_particle,
                   **{key: value for key, value in fields.items() if value}}
        validated = PickableObject.model_validate(updated)
        for field in PickableObject.model_fields:
            setattr(existing.meta, field, getattr(validated, field))
        return existing
    labels = {o.label for o in root.config.pickable_objects if o.label is not None}
    label = fields.pop("label")
    if label is not None and label in labels:
        raise ValueError(f"Object label {label} already exists.")
    meta = PickableObject(name=name, is_particle=is_particle, label=label if label is not None else
                          max(labels, default=0) + 1, color=fields.pop("color") or DEFAULT_COLOR,
                          **{k: v for k, v in fields.items() if k != "metadata"}, metadata=fields.get("metadata") or {})
    root.config.pickable_objects.append(meta)
    created = CopickObjectFSSpec(root, meta, read_only=False)
    root.pickable_objects.append(created)
    return created
