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
    if view is View.FRONT:
        hit, found = _first_hit(head, 1, reverse=True)  # from +y (anterior) inwards
        depth, su = hit * sy, sx
        plane = depth.T[::-1, ::-1]  # rows: z top-down; cols: x from patient's right
        found2 = found.T[::-1, ::-1]
    elif view is View.LEFT:
        hit, found = _first_hit(head, 0, reverse=False)  # from -x (patient's left)
        depth, su = hit * sx, sy
        plane = depth.T[::-1, ::-1]  # cols: anterior on the viewer's left
        found2 = found.T[::-1, ::-1]
    else:
        hit, found = _first_hit(head, 0, reverse=True)  # from +x (patient's right)
        depth, su = hit * sx, sy
        plane = depth.T[::-1, :]  # cols: posterior on the viewer's left
        found2 = found.T[::-1, :]
    plane = np.ascontiguousarray(plane, np.float32)
    resized, hits = _resample(plane, np.ascontiguousarray(found2), su, sz, pixel_mm)
    image = _shade(resized, hits, pixel_mm)
    shown = np.where(hits, resized, np.float32(np.nan)).astype(np.float32)
    return Render(view, image, shown, pixel_mm, head.shape, spacing)  # type: ignore[arg-type]


def _oblique(
    head: Mask, spacing: tuple[float, float, float], view: View, pixel_mm: float
) -> Render:
    """The head turned about z on a grid of ``max(pixel_mm, 1.5)`` mm, then seen from the front."""
    from scipy import ndimage

    step = max(pixel_mm, 1.5)
    factors = [max(1, round(step / s)) for s in spacing]
    small = head[:: factors[0], :: factors[1], :: factors[2]].astype(np.uint8)
    grid = tuple(s * f for s, f in zip(spacing, factors, strict=True))
    # make the grid isotropic in x and y before turning (rotation needs square pixels)
    zoom = (grid[0] / step, grid[1] / step, 1.0)
    if not np.allclose(zoom, 1.0):
        small = ndimage.zoom(small, zoom, order=0)
    angle = _OBLIQUE_DEGREES if view is View.FRONT_LEFT else -_OBLIQUE_DEGREES
    turned = ndimage.rotate(small, angle, axes=(0, 1), reshape=True, order=0) > 0
    result = render(turned, (step, step, grid[2]), View.FRONT, pixel_mm)
    result.view = view
    return result
