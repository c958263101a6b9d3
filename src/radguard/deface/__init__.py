"""Clean Recognizable Visual Features (PS3.15 E.3.2): deface head CT, MR and PET, with proof.

``deface_volume(volume)`` finds the face on surface renders, cuts it away (never a voxel of
the brain mask), and proves on the output that no detector finds it, that its embedding moved
beyond the same-person distance and that the brain is bit-identical. ``deface_path`` does it
for DICOM series folders and NIfTI files; ``write_report`` shows the renders in HTML.

Names load on first use, so that ``radguard --help`` does not import the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radguard.deface.detect import SAME_PERSON_DISTANCE, DetectorUnavailable, check_models
    from radguard.deface.engine import DefaceSettings, Outcome, Proof, Status, deface_volume
    from radguard.deface.io import read_nifti, read_series, write_nifti, write_series
    from radguard.deface.report import write_report
    from radguard.deface.series import SeriesResult, deface_path, deface_series
    from radguard.deface.volume import Modality, Volume, VolumeError

_WHERE = {
    "SAME_PERSON_DISTANCE": "detect",
    "DetectorUnavailable": "detect",
    "check_models": "detect",
    "DefaceSettings": "engine",
    "Outcome": "engine",
    "Proof": "engine",
    "Status": "engine",
    "deface_volume": "engine",
    "read_nifti": "io",
    "read_series": "io",
    "write_nifti": "io",
    "write_series": "io",
    "write_report": "report",
    "SeriesResult": "series",
    "deface_path": "series",
    "deface_series": "series",
    "Modality": "volume",
    "Volume": "volume",
    "VolumeError": "volume",
}

__all__ = [
    "SAME_PERSON_DISTANCE",
    "DefaceSettings",
    "DetectorUnavailable",
    "Modality",
    "Outcome",
    "Proof",
    "SeriesResult",
    "Status",
    "Volume",
    "VolumeError",
    "check_models",
    "deface_path",
    "deface_series",
    "deface_volume",
    "read_nifti",
    "read_series",
    "write_nifti",
    "write_report",
    "write_series",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'radguard.deface' has no attribute {name!r}")
    return getattr(importlib.import_module(f"radguard.deface.{module}"), name)
