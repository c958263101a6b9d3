"""Ears (optional): the pinna is a biometric too, and face-only defacing leaves it.

From each side the head's surface depth is measured; a grey closing over ``window_mm`` gives
the skull-side baseline a pinna sticks out of; what sticks out by more than ``min_mm`` at
about the eyes' height and behind the face is the ear, and the voxels between the skin and
the baseline are cleared. Nothing is assumed about where the ear should be beyond that.
"""

from __future__ import annotations

import numpy as np

from radguard.deface.volume import Mask

_WINDOW_MM = 45.0
_MIN_MM = 4.0


def ear_mask(
    head: Mask,
    brain_guard: Mask,
    spacing: tuple[float, float, float],
    eye_z: float,
    face_y: float,
) -> tuple[Mask, list[float]]:
    """Head-frame voxels of both pinnae, and the protrusion (mm) found on each side.

    ``eye_z``: head-frame z index of the eyes; ``face_y``: y index of the eyes' surface.
    """
    from scipy import ndimage

    nx, ny, nz = head.shape
    sx, sy, sz = spacing
    remove = np.zeros(head.shape, bool)
    sizes: list[float] = []
    ys = np.arange(ny)[:, None]
    zs = np.arange(nz)[None, :]
    # the ear lies within 60 mm above or below the eyes, 40 mm or more behind the face
    near_ear = (np.abs(zs - eye_z) * sz < 60.0) & ((face_y - ys) * sy > 40.0)
    xs = np.arange(nx, dtype=np.float32)[:, None, None]
    for from_left in (True, False):
        view = head if from_left else head[::-1]
        hit = np.argmax(view, axis=0).astype(np.float32)  # (y, z): voxels from this side
        found = view.any(axis=0)
        depth = np.where(found, hit, np.float32(nx))
        size = (max(3, int(_WINDOW_MM / sy) | 1), max(3, int(_WINDOW_MM / sz) | 1))
        baseline = ndimage.grey_closing(depth, size=size)
        sticking = (baseline - depth) * sx > _MIN_MM
        candidates = sticking & found & near_ear
        labels, count = ndimage.label(candidates)
        if count == 0:
            sizes.append(0.0)
            continue
        areas = np.bincount(labels.ravel())
        areas[0] = 0
        pinna = labels == int(np.argmax(areas))
        pinna = ndimage.binary_dilation(pinna, iterations=2) & found
        sizes.append(float(((baseline - depth) * sx)[pinna].max()))
        index = xs if from_left else (nx - 1 - xs)
        side = pinna[None, :, :] & (index < baseline[None, :, :])
        remove |= side
    remove &= ~brain_guard
    return remove, sizes
