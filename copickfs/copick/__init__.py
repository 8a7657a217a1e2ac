"""copick's filesystem classes over the copickfs union, so code written for copick runs on it.

Classes, attributes and on-disk layout follow ``copick.impl.filesystem``; entities are
thin views over `copickfs.union.UnionFileSystem`.
"""

from .filaments import CopickFilamentsFSSpec
from .files import CopickMeshFSSpec, CopickPicksFSSpec
from .models import (CopickConfig, CopickConfigFSSpec, CopickFeaturesMeta, CopickFilament, CopickFilamentCurve,
                     CopickFilamentsFile, CopickLocation, CopickMeshMeta,
                     CopickPicksFile, CopickPoint, CopickRunMeta, CopickSegmentationMeta, CopickTomogramMeta,
                     CopickVoxelSpacingMeta, PickableObject, PicksFileError)
from .omezarr import write_multiscale
from .paths import MalformedName
from .root import CopickRootFSSpec
from .run import CopickRunFSSpec, CopickVoxelSpacingFSSpec
from .volumes import CopickFeaturesFSSpec, CopickObjectFSSpec, CopickSegmentationFSSpec, CopickTomogramFSSpec

__all__ = [
    "CopickConfig", "CopickConfigFSSpec", "CopickFeaturesFSSpec", "CopickFilamentsFSSpec", "CopickFeaturesMeta", "CopickLocation",
    "CopickFilament", "CopickFilamentCurve", "CopickFilamentsFile",
    "CopickMeshFSSpec", "CopickMeshMeta", "CopickObjectFSSpec", "CopickPicksFSSpec", "CopickPicksFile",
    "CopickPoint", "CopickRootFSSpec", "CopickRunFSSpec", "CopickRunMeta", "CopickSegmentationFSSpec",
    "CopickSegmentationMeta", "CopickTomogramFSSpec", "CopickTomogramMeta", "CopickVoxelSpacingFSSpec",
    "CopickVoxelSpacingMeta", "MalformedName", "PickableObject", "PicksFileError", "write_multiscale",
]
