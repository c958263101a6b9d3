"""Pixel content: analytic anatomical phantoms sampled on any image plane.

Each phantom is a set of ellipsoids and cylinders in patient coordinates (LPS, millimetres:
+x left, +y posterior, +z head). A slice is made by sampling tissue labels at the centres of
its pixels, computed from ImagePositionPatient, ImageOrientationPatient and PixelSpacing, so
every series of a study (same Frame of Reference) shows the same anatomy in the same place,
whatever its orientation. Labels become CT numbers (HU), MR signal per weighting, or X-ray
line integrals (radiographs). The head has a face: nose, brow, lips, chin, cheeks and ears
over a skin layer, fat, a skull shell and a brain with ventricles, for defacing tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Points = NDArray[np.float32]  # (..., 3) patient coordinates in mm
Labels = NDArray[np.uint8]
Mask = NDArray[np.bool_]


class Tissue(enum.IntEnum):
    """Tissue labels of the phantoms."""

    AIR = 0
    SKIN = 1
    FAT = 2
    SOFT = 3
    BONE = 4
    CSF = 5
    GRAY = 6
    WHITE = 7
    EYE = 8
    LUNG = 9
    BLOOD = 10
    LIVER = 11
    TABLE = 12


# CT numbers (HU) per tissue.
HU = np.array([-1000, 30, -95, 42, 1100, 8, 38, 27, 12, -840, 45, 58, 250], dtype=np.float32)
# MR signal (arbitrary units, 12-bit) per tissue and weighting.
MR_SIGNAL = {
    "T1": np.array([0, 420, 980, 460, 40, 160, 520, 760, 180, 20, 300, 600, 0], np.float32),
    "T2": np.array([0, 380, 640, 420, 30, 1500, 860, 560, 1400, 20, 700, 300, 0], np.float32),
    "FLAIR": np.array([0, 400, 700, 450, 30, 90, 780, 520, 150, 20, 500, 350, 0], np.float32),
}
# Linear attenuation (1/mm) per tissue for radiographs.
_MU = np.array([0, 0.02, 0.017, 0.02, 0.05, 0.02, 0.02, 0.02, 0.02, 0.004, 0.021, 0.021, 0])


def _ellipsoid(p: Points, center: tuple[float, float, float], radii: tuple[float, ...]) -> Mask:
    total = np.zeros(p.shape[:-1], np.float32)
    for axis in range(3):
        d = (p[..., axis] - np.float32(center[axis])) * np.float32(1.0 / radii[axis])
        total += d * d
    result: Mask = total <= 1.0
    return result


def _cylinder(
    p: Points, center: tuple[float, float], radii: tuple[float, float], z: tuple[float, float]
) -> Mask:
    dx = (p[..., 0] - np.float32(center[0])) * np.float32(1.0 / radii[0])
    dy = (p[..., 1] - np.float32(center[1])) * np.float32(1.0 / radii[1])
    result: Mask = (dx * dx + dy * dy <= 1.0) & (p[..., 2] >= z[0]) & (p[..., 2] <= z[1])
    return result


def _shrunk(radii: tuple[float, ...], by: float) -> tuple[float, ...]:
    return tuple(max(r - by, 0.5) for r in radii)


# Head parts relative to the head centre: (centre, radii). Face is anterior (-y).
_CRANIUM = ((0.0, 0.0, 15.0), (74.0, 92.0, 98.0))
_FACE = ((0.0, -18.0, -45.0), (60.0, 76.0, 62.0))
_FEATURES = (
    ((0.0, -96.0, -18.0), (11.0, 20.0, 26.0)),  # nose
    ((0.0, -86.0, 22.0), (50.0, 12.0, 9.0)),  # brow ridge
    ((0.0, -82.0, -88.0), (24.0, 14.0, 14.0)),  # chin
    ((0.0, -92.0, -58.0), (22.0, 9.0, 7.0)),  # lips
    ((38.0, -72.0, -28.0), (22.0, 18.0, 20.0)),  # cheeks
    ((-38.0, -72.0, -28.0), (22.0, 18.0, 20.0)),
    ((74.0, 6.0, 0.0), (9.0, 16.0, 26.0)),  # ears
    ((-74.0, 6.0, 0.0), (9.0, 16.0, 26.0)),
)


@dataclass(frozen=True)
class Head:
    """A head with a face, centred at ``center`` and scaled by ``scale``."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def _inside(self, p: Points, by: float) -> Mask:
        parts = [_CRANIUM, _FACE, *_FEATURES]
        inside = _cylinder(p, (0.0, 12.0), (48.0 - by, 52.0 - by), (-400.0, -40.0))
        for center, radii in parts:
            inside |= _ellipsoid(p, center, _shrunk(radii, by))
        return inside

    def labels(self, points: Points) -> Labels:
        """Tissue labels at ``points`` (..., 3)."""
        p = (points - np.asarray(self.center, np.float32)) / np.float32(self.scale)
        out = np.zeros(p.shape[:-1], np.uint8)
        inside = self._inside(p, 0.0)
        out[inside] = Tissue.SKIN
        out[self._inside(p, 3.5)] = Tissue.FAT
        out[self._inside(p, 8.0)] = Tissue.SOFT
        (cc, cr), (fc, fr) = _CRANIUM, _FACE
        # The cranial cavity sits above the skull base and, in front, above the orbits: the
        # eyes lie in front of the skull, not inside it.
        vault = (p[..., 2] > -25.0) & ((p[..., 2] > 16.0) | (p[..., 1] > -50.0))
        outer = _ellipsoid(p, cc, _shrunk(cr, 5.0))
        skull = outer & ~_ellipsoid(p, cc, _shrunk(cr, 11.0))
        base = outer & (p[..., 2] > -31.0) & (p[..., 2] <= -25.0) & (p[..., 1] > -50.0)
        roof = outer & (p[..., 2] > 10.0) & (p[..., 2] <= 16.0) & (p[..., 1] <= -50.0)
        wall = outer & (p[..., 1] > -56.0) & (p[..., 1] <= -50.0) & (p[..., 2] > -31.0)
        roof |= wall & (p[..., 2] <= 16.0)  # behind the orbits: the cavity is closed in front
        jaw = _ellipsoid(p, fc, _shrunk(fr, 7.0)) & ~_ellipsoid(p, fc, _shrunk(fr, 12.0))
        out[(skull & vault) | base | roof | (jaw & (p[..., 2] < -62.0))] = Tissue.BONE
        intracranial = _ellipsoid(p, cc, _shrunk(cr, 11.0)) & vault
        out[intracranial] = Tissue.CSF
        brain_c, brain_r = (0.0, 4.0, 22.0), (61.0, 76.0, 80.0)
        brain = _ellipsoid(p, brain_c, brain_r) & intracranial
        out[brain] = Tissue.GRAY
        out[_ellipsoid(p, brain_c, _shrunk(brain_r, 7.0)) & intracranial] = Tissue.WHITE
        for side in (-9.0, 9.0):
            out[_ellipsoid(p, (side, 2.0, 28.0), (6.0, 24.0, 13.0)) & brain] = Tissue.CSF
        for side in (-32.0, 32.0):
            out[_ellipsoid(p, (side, -70.0, 4.0), (16.0, 16.0, 16.0)) & inside] = Tissue.FAT
            out[_ellipsoid(p, (side, -70.0, 4.0), (12.0, 12.0, 12.0))] = Tissue.EYE
        out[_ellipsoid(p, (0.0, -72.0, -20.0), (10.0, 18.0, 20.0))] = Tissue.AIR  # nasal cavity
        out[_ellipsoid(p, (0.0, -78.0, 30.0), (14.0, 7.0, 8.0))] = Tissue.AIR  # frontal sinus
        return out


@dataclass(frozen=True)
class Chest:
    """A supine chest on a CT table, centred at ``center`` and scaled by ``scale``."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    table: bool = True

    BODY = (155.0, 105.0)

    def outlines(self, z: float) -> dict[str, tuple[float, float, float, float]]:
        """Structure outlines at height ``z`` as ellipses (cx, cy, rx, ry) in mm, for contours.

        BODY is the skin surface; LUNG_R / LUNG_L the lungs (patient right is -x).
        """
        s = self.scale
        cx, cy, cz = self.center
        local = (z - cz) / s
        found: dict[str, tuple[float, float, float, float]] = {}
        if local <= 130.0:
            found["BODY"] = (cx, cy, self.BODY[0] * s, self.BODY[1] * s)
        for name, side in (("LUNG_R", -68.0), ("LUNG_L", 68.0)):
            t = 1.0 - ((local - 20.0) / 120.0) ** 2
            if t > 0.05:
                r = float(np.sqrt(t))
                found[name] = (cx + side * s, cy + 5.0 * s, 52.0 * s * r, 72.0 * s * r)
        return found

    def labels(self, points: Points) -> Labels:
        """Tissue labels at ``points`` (..., 3)."""
        p = (points - np.asarray(self.center, np.float32)) / np.float32(self.scale)
        out = np.zeros(p.shape[:-1], np.uint8)
        a, b = self.BODY
        body = _cylinder(p, (0, 0), (a, b), (-400, 130)) | _cylinder(
            p, (0, 10), (50, 50), (129, 400)
        )
        out[body] = Tissue.SKIN
        out[_cylinder(p, (0, 0), (a - 2, b - 2), (-400, 130))] = Tissue.FAT
        out[_cylinder(p, (0, 10), (48, 48), (129, 400))] = Tissue.SOFT
        muscle = _cylinder(p, (0, 0), (a - 14, b - 14), (-400, 130))
        out[muscle] = Tissue.SOFT
        ring = _cylinder(p, (0, 0), (a - 16, b - 16), (-400, 110)) & ~_cylinder(
            p, (0, 0), (a - 22, b - 22), (-400, 110)
        )
        ribs = ring & (np.mod(p[..., 2], 25.0) < 8.0) & (p[..., 1] < 60)
        for side in (-68.0, 68.0):
            out[_ellipsoid(p, (side, 5.0, 20.0), (52.0, 72.0, 120.0)) & muscle] = Tissue.LUNG
        out[_ellipsoid(p, (-50.0, 0.0, -150.0), (100.0, 85.0, 70.0)) & muscle] = Tissue.LIVER
        out[_ellipsoid(p, (18.0, -25.0, -40.0), (52.0, 45.0, 55.0))] = Tissue.BLOOD
        out[_cylinder(p, (22.0, 30.0), (12.0, 12.0), (-150.0, 60.0))] = Tissue.BLOOD
        out[ribs] = Tissue.BONE
        out[_cylinder(p, (0.0, 72.0), (18.0, 16.0), (-400.0, 140.0))] = Tissue.BONE
        out[_cylinder(p, (0.0, 98.0), (20.0, 5.0), (-400.0, 140.0))] = Tissue.BONE
        out[_cylinder(p, (0.0, 89.0), (6.0, 5.0), (-400.0, 140.0))] = Tissue.CSF
        out[_cylinder(p, (0.0, -92.0), (13.0, 6.0), (-120.0, 80.0))] = Tissue.BONE  # sternum
        if self.table:
            flat = (p[..., 1] >= 118.0) & (p[..., 1] <= 128.0) & (np.abs(p[..., 0]) < 210.0)
            out[flat & (out == Tissue.AIR)] = Tissue.TABLE
        return out


def plane_points(
    position: tuple[float, float, float],
    orientation: tuple[float, ...],
    spacing: tuple[float, float],
    rows: int,
    cols: int,
) -> Points:
    """Patient coordinates of pixel centres (PS3.3 C.7.6.2.1.1), shape (rows, cols, 3).

    ``spacing`` is PixelSpacing: (between rows, between columns).
    """
    row_dir = np.asarray(orientation[:3], np.float32)  # direction of increasing column
    col_dir = np.asarray(orientation[3:], np.float32)  # direction of increasing row
    r = np.arange(rows, dtype=np.float32)[:, None, None] * np.float32(spacing[0])
    c = np.arange(cols, dtype=np.float32)[None, :, None] * np.float32(spacing[1])
    points: Points = np.asarray(position, np.float32) + c * row_dir + r * col_dir
    return points


def ct_stored(labels: Labels, rng: np.random.Generator, noise: float = 6.0) -> NDArray[np.uint16]:
    """Stored CT values (HU + 1024, 12 bits) with a little quantum noise."""
    hu = HU[labels] + rng.normal(0.0, noise, labels.shape).astype(np.float32)
    stored: NDArray[np.uint16] = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
    return stored


def mr_stored(
    labels: Labels, weighting: str, rng: np.random.Generator, noise: float = 12.0
) -> NDArray[np.uint16]:
    """Stored MR signal (12 bits) for a weighting (T1, T2, FLAIR) with Rician-like noise."""
    signal = MR_SIGNAL[weighting][labels]
    noisy = np.hypot(
        signal + rng.normal(0.0, noise, labels.shape), rng.normal(0, noise, labels.shape)
    )
    stored: NDArray[np.uint16] = np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)
    return stored


def radiograph(
    chest: Chest, rows: int, cols: int, spacing: float, center_z: float
) -> NDArray[np.uint16]:
    """A PA chest projection (bone bright, 12 bits): line integrals along y, 2x upsampled."""
    half_r, half_c = (rows + 1) // 2, (cols + 1) // 2
    step = 2.0 * spacing
    xs = (np.arange(half_c, dtype=np.float32) - half_c / 2) * step
    zs = center_z - (np.arange(half_r, dtype=np.float32) - half_r / 2) * step
    ys = np.linspace(-140.0, 140.0, 48, dtype=np.float32)
    grid = np.stack(np.meshgrid(zs, ys, xs, indexing="ij"), axis=-1)[..., ::-1]  # (z, y, x)->xyz
    path = (_MU[chest.labels(grid)] * float(ys[1] - ys[0])).sum(axis=1)
    image = np.clip(path / 6.0, 0.0, 1.0) * 3800.0 + 120.0
    full = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)[:rows, :cols]
    stored: NDArray[np.uint16] = np.rint(full).astype(np.uint16)
    return stored


def ultrasound(rows: int, cols: int, frame: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """One B-mode frame: a sector with speckle, a liver-like texture, a cyst and a diaphragm.

    Values stay below 230 so that burned-in text drawn at full brightness stands out.
    """
    r = np.arange(rows, dtype=np.float32)[:, None]
    c = np.arange(cols, dtype=np.float32)[None, :]
    apex_r, apex_c = 6.0, cols / 2.0
    depth = np.hypot(r - apex_r, c - apex_c)
    angle = np.arctan2(c - apex_c, r - apex_r)
    sector = (np.abs(angle) < 0.62) & (depth < rows * 0.93) & (depth > 10)
    breath = 4.0 * np.sin(frame * 0.7)
    tissue = 95.0 + 25.0 * np.sin(depth / 9.0 + angle * 4.0)
    cyst = ((c - apex_c - 20.0) / 22.0) ** 2 + ((r - rows * 0.5 - breath) / 15.0) ** 2 <= 1.0
    tissue = np.where(cyst, 12.0, tissue)
    diaphragm = np.abs(depth - rows * 0.78 - breath - 6.0 * np.cos(angle * 3.0)) < 2.5
    tissue = np.where(diaphragm, 205.0, tissue)
    speckle = rng.rayleigh(0.8, (rows, cols)).astype(np.float32)
    image = np.where(sector, np.clip(tissue * speckle, 0.0, 228.0), 0.0)
    return np.rint(image).astype(np.uint8)
