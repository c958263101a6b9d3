"""Surface renders of the skin, the way an attacker would make them.

A ray is cast through every column of the head mask (in the head frame: x right, y anterior,
z superior); where it first meets tissue gives a depth map, and the depth map's normals lit
from the viewer and a little above give a grey image a face detector can read. Renders are
resampled to square pixels of ``pixel_mm``. Views: ``front`` (looking at the face), ``left``
and ``right`` (from the patient's left and right), and two obliques 40 degrees either side
of the front, cast through the head turned about its vertical axis.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from radguard.deface.volume import Mask

_OBLIQUE_DEGREES = 40.0


class View(enum.Enum):
    FRONT = "front"
    LEFT = "left"
    RIGHT = "right"
    FRONT_LEFT = "front-left"
    FRONT_RIGHT = "front-right"


@dataclass
class Render:
    """A grey image, the surface depth behind each pixel (mm from the viewer, NaN: no hit)
    and the pixel size; pixel (row, col) covers head-frame coordinates given by
    :meth:`to_volume` for axis-aligned views."""

    view: View
    image: NDArray[np.uint8]
    depth: NDArray[np.float32]
    pixel_mm: float
    shape: tuple[int, int, int]  # head-frame volume shape the render was cast through
    spacing: tuple[float, float, float]

    def to_volume(
        self, rows: NDArray[np.float64], cols: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Front view only: image pixel (row, col) to head-frame indices (x, z)."""
        if self.view is not View.FRONT:
            raise ValueError("only the front view maps back to the volume")
        nx, _, nz = self.shape
        sx, _, sz = self.spacing
        x = (nx - 1) - cols * self.pixel_mm / sx
        z = (nz - 1) - rows * self.pixel_mm / sz
        return x, z


def _first_hit(mask: Mask, axis: int, reverse: bool) -> tuple[NDArray[np.float32], Mask]:
    """Index (from the viewer's side) of the first tissue voxel along ``axis``."""
    m = np.flip(mask, axis=axis) if reverse else mask
    hit = np.argmax(m, axis=axis).astype(np.float32)
    found: Mask = np.any(m, axis=axis)
    return hit, found


def _shade(depth: NDArray[np.float32], found: Mask, pixel_mm: float) -> NDArray[np.uint8]:
    """Lambert shading of the depth map's surface, light from the viewer and above."""
    from scipy import ndimage

    filled = np.where(found, depth, np.float32(np.nanmax(depth, initial=0.0) + 20.0))
    smooth = ndimage.gaussian_filter(filled, 0.8)
    gr, gc = np.gradient(smooth, pixel_mm)
    norm = np.sqrt(gr * gr + gc * gc + 1.0)
    light = np.array([-0.35, 0.0, 1.0])  # rows grow downwards: negative row = from above
    light /= np.linalg.norm(light)
    lit = (gr * light[0] + gc * light[1] + light[2]) / norm  # normal (dd/dr, dd/dc, 1)
    grey = 0.12 + 0.88 * np.clip(lit, 0.0, 1.0)
    grey[~found] = 0.0
    image: NDArray[np.uint8] = np.rint(grey * 255.0).astype(np.uint8)
    return image


def _resample(
    plane: NDArray[np.float32], found: Mask, su: float, sv: float, pixel_mm: float
) -> tuple[NDArray[np.float32], Mask]:
    """A (rows=v, cols=u) plane with spacings (sv, su) to square pixels of ``pixel_mm``."""
    import cv2

    rows = max(1, round(plane.shape[0] * sv / pixel_mm))
    cols = max(1, round(plane.shape[1] * su / pixel_mm))
    if (rows, cols) == plane.shape:
        return plane, found
    depth = np.asarray(cv2.resize(plane, (cols, rows), interpolation=cv2.INTER_LINEAR), np.float32)
    hit = cv2.resize(found.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
    return depth, hit


def render(
    head: Mask, spacing: tuple[float, float, float], view: View, pixel_mm: float = 1.0
) -> Render:
    """Render the head-frame mask ``head`` from ``view``."""
    sx, sy, sz = spacing
    if view in (View.FRONT_LEFT, View.FRONT_RIGHT):
        return _oblique(head, spacing, view, pixel_mm)
    if view is View.FRONT:  # from +y (anterior) inwards; the patient's right on the left
        hit, found = _first_hit(head, 1, reverse=True)
        depth, su = hit * sy, sx
    elif view is View.LEFT:  # from -x (the patient's left); anterior on the viewer's left
        hit, found = _first_hit(head, 0, reverse=False)
        depth, su = hit * sx, sy
    else:  # from +x (the patient's right); posterior on the viewer's left
        hit, found = _first_hit(head, 0, reverse=True)
        depth, su = hit * sx, sy
    return _finish(view, depth, found, su, sz, pixel_mm, head.shape, spacing)  # type: ignore[arg-type]


def _finish(
    view: View,
    depth: NDArray[np.float32],
    found: Mask,
    su: float,
    sz: float,
    pixel_mm: float,
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
) -> Render:
    """Depth (across, up) in mm to an upright image: rows top-down, the viewer's left first."""
    if view is View.RIGHT:
        plane, seen = depth.T[::-1, :], found.T[::-1, :]
    else:
        plane, seen = depth.T[::-1, ::-1], found.T[::-1, ::-1]
    plane = np.ascontiguousarray(plane, np.float32)
    resized, hits = _resample(plane, np.ascontiguousarray(seen), su, sz, pixel_mm)
    image = _shade(resized, hits, pixel_mm)
    shown = np.where(hits, resized, np.float32(np.nan)).astype(np.float32)
    return Render(view, image, shown, pixel_mm, shape, spacing)


def _oblique(
    head: Mask, spacing: tuple[float, float, float], view: View, pixel_mm: float
) -> Render:
    """The head turned about its vertical axis, slice by slice (OpenCV's nearest-neighbour
    warp onto square pixels of ``pixel_mm``), each slice's first hit taken at once."""
    import cv2

    nx, ny, nz = head.shape
    sx, sy, sz = spacing
    angle = np.deg2rad(_OBLIQUE_DEGREES if view is View.FRONT_LEFT else -_OBLIQUE_DEGREES)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    size = int(np.ceil(np.hypot(nx * sx, ny * sy) / pixel_mm)) + 1
    cx, cy = (nx - 1) * sx / 2, (ny - 1) * sy / 2
    cu = cw = (size - 1) * pixel_mm / 2
    p = pixel_mm
    # destination (col w, row u) -> source (col y, row x): u = x cos - y sin, w = x sin + y cos
    matrix = np.array(
        [
            [cos * p / sy, -sin * p / sy, (cy + sin * cu - cos * cw) / sy],
            [sin * p / sx, cos * p / sx, (cx - cos * cu - sin * cw) / sx],
        ]
    )
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    slices = np.ascontiguousarray(np.moveaxis(head, 2, 0)).view(np.uint8)
    hit = np.zeros((size, nz), np.float32)
    found = np.zeros((size, nz), bool)
    for k in range(nz):
        turned = cv2.warpAffine(slices[k], matrix, (size, size), flags=flags)[:, ::-1]
        hit[:, k] = np.argmax(turned, axis=1)
        found[:, k] = turned.any(axis=1)
    return _finish(view, hit * p, found, p, sz, pixel_mm, head.shape, spacing)  # type: ignore[arg-type]
