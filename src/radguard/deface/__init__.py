"""Clean Recognizable Visual Features (PS3.15 E.3.2): deface head CT, MR and PET, with proof.

``deface_volume(volume)`` finds the face on surface renders, cuts it away (never a voxel of
the brain mask), and proves on the output that no detector finds it, that its embedding moved
beyond the same-person distance and that the brain is bit-identical. ``deface_path`` does it
for DICOM series folders and NIfTI files; ``write_report`` shows the renders in HTML.
"""

from radguard.deface.detect import SAME_PERSON_DISTANCE, DetectorUnavailable, check_models
from radguard.deface.engine import DefaceSettings, Outcome, Proof, Status, deface_volume
from radguard.deface.io import read_nifti, read_series, write_nifti, write_series
from radguard.deface.report import write_report
from radguard.deface.series import SeriesResult, deface_path, deface_series
from radguard.deface.volume import Modality, Volume, VolumeError

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
