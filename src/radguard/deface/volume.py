"""Volumes: stored voxel values plus the geometry that places them in the patient.

A :class:`Volume` keeps the values exactly as stored (dtype, per-slice rescale), so that a
defaced volume is written back bit-exact everywhere it was not changed. Arrays are indexed
``(i, j, k)``: column, row, slice for DICOM; the file's own axes for NIfTI. ``affine`` maps a
voxel index to RAS millimetres (NIfTI's convention; DICOM's LPS is flipped on reading).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from radguard.errors import RadguardError

FloatArray = NDArray[np.float32]
Mask = NDArray[np.bool_]


class Modality(enum.Enum):
    """How intensities are read: Hounsfield units, or relative signal."""

    CT = "CT"
    MR = "MR"
    PT = "PT"

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        if isinstance(value, Modality):
            return value
        text = value.strip().upper()
        if text in ("PET", "NM"):
            return cls.PT
        try:
            return cls(text)
        except ValueError:
            raise RadguardError(f"cannot deface modality {value!r} (CT, MR or PT)") from None


class VolumeError(RadguardError):
    """Input that cannot be assembled into one volume (the reason says why)."""


@dataclass
class Volume:
    """Stored values, geometry and the rescale that turns stored values into physical ones.

    ``slope`` and ``intercept`` have one entry per slice (axis 2): PET series rescale each
    slice differently; NIfTI and most CT/MR have the same value everywhere.
    """

    data: NDArray[np.generic]
    affine: NDArray[np.float64]
    modality: Modality
    slope: NDArray[np.float64] = field(default_factory=lambda: np.ones(1))
    intercept: NDArray[np.float64] = field(default_factory=lambda: np.zeros(1))

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise VolumeError(f"a volume needs 3 dimensions, got shape {self.data.shape}")
        if min(self.data.shape) < 1:
            raise VolumeError("empty volume")
        if self.affine.shape != (4, 4) or abs(np.linalg.det(self.affine[:3, :3])) < 1e-9:
            raise VolumeError("volume geometry (affine) is missing or degenerate")
        k = self.data.shape[2]
        self.slope = np.broadcast_to(np.asarray(self.slope, np.float64), (k,)).copy()
        self.intercept = np.broadcast_to(np.asarray(self.intercept, np.float64), (k,)).copy()

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])

    def physical(self) -> FloatArray:
        """Values in physical units (HU for CT) as float32."""
        values = self.data.astype(np.float32)
        values *= self.slope.astype(np.float32)[None, None, :]
        values += self.intercept.astype(np.float32)[None, None, :]
        return values

    def fill_value(self) -> NDArray[np.generic]:
        """Per-slice stored value for "nothing here": air (-1000 HU) on CT, zero signal else."""
        return self.stored_value(-1000.0 if self.modality is Modality.CT else 0.0)

    def stored_value(self, target: float) -> NDArray[np.generic]:
        """Per-slice stored value closest to the physical value ``target``."""
        slope = np.where(self.slope == 0, 1.0, self.slope)
        stored = np.rint((target - self.intercept) / slope)
        if np.issubdtype(self.data.dtype, np.integer):
            info = np.iinfo(self.data.dtype)  # type: ignore[type-var]
            low = max(float(info.min), float(self.data.min()))
            stored = np.clip(stored, low, info.max)
        else:
            stored = (target - self.intercept) / slope
        result: NDArray[np.generic] = stored.astype(self.data.dtype)
        return result
