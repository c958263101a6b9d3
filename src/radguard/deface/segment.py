"""Air, head and brain from intensities and morphology (CT by Hounsfield units, MR by signal).

The head is the largest connected body of tissue above an air threshold (-300 HU on CT; a
share of the Otsu threshold of the foreground on MR and PET). The brain mask is what defacing
must never touch, so it errs on the large side: on CT, soft tissue (-10..100 HU) enclosed
by bone (> 250 HU); on MR and PET, the largest body of tissue left after an erosion that cuts
it from the scalp, grown back and filled. Both are computed on a grid of about 2 mm, then
brought back to the full grid, which keeps a 256^3 volume within a second or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from radguard.deface.volume import FloatArray, Mask, Modality

_CT_AIR_HU = -300.0
_CT_BONE_HU = 250.0
_CT_BRAIN_HU = (-10.0, 100.0)
_GRID_MM = 2.0


@dataclass
class Segmentation:
    """Masks in the array's own order, and the threshold that separates air from skin."""

    head: Mask
    brain: Mask
    air_threshold: float


def otsu(values: NDArray[np.floating], bins: int = 256) -> float:
    """Otsu's threshold of a sample of values."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return low
    hist, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(hist * centres)
    between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(centres[int(np.argmax(between))])


def air_threshold(values: FloatArray, modality: Modality) -> float:
    """The value above which a voxel is tissue rather than air."""
    if modality is Modality.CT:
        return _CT_AIR_HU
    sample = values[::3, ::3, ::3].ravel()
    sample = sample[np.isfinite(sample)]
    positive = sample[sample > np.percentile(sample, 1)]
    if positive.size < 100:
        return float(np.max(sample, initial=0.0))
    cap = float(np.percentile(positive, 99.5))
    threshold = otsu(np.minimum(positive, cap))
    return 0.35 * threshold


def _factors(spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    f = [max(1, round(_GRID_MM / s)) for s in spacing]
    return f[0], f[1], f[2]


def _coarse(mask: Mask, factors: tuple[int, int, int]) -> Mask:
    a, b, c = factors
    result: Mask = mask[::a, ::b, ::c]
    return result


def _fine(coarse: Mask, factors: tuple[int, int, int], shape: tuple[int, ...]) -> Mask:
    out = coarse
    for axis, f in enumerate(factors):
        if f > 1:
            out = np.repeat(out, f, axis=axis)
    result: Mask = out[: shape[0], : shape[1], : shape[2]]
    return result


def _largest(mask: Mask) -> Mask:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    result: Mask = labels == int(np.argmax(sizes))
    return result


def _ball(radius: int) -> Mask:
    r = np.arange(-radius, radius + 1)
    result: Mask = (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2) <= (
        radius * radius
    )
    return result


def segment(
    values: FloatArray, modality: Modality, spacing: tuple[float, float, float]
) -> Segmentation:
    """Head and brain masks of a volume in physical units."""
    from scipy import ndimage

    threshold = air_threshold(values, modality)
    factors = _factors(spacing)
    grid = tuple(s * f for s, f in zip(spacing, factors, strict=True))
    coarse_values = values[:: factors[0], :: factors[1], :: factors[2]]
    tissue = coarse_values > threshold
    head_coarse = ndimage.binary_fill_holes(_largest(tissue))
    head = _fine(head_coarse, factors, values.shape) & (values > threshold)
    step = float(np.mean(grid))
    if modality is Modality.CT:
        low, high = _CT_BRAIN_HU
        bone = coarse_values > _CT_BONE_HU
        candidates = (coarse_values >= low) & (coarse_values <= high) & head_coarse & ~bone
        cut = max(1, round(4.0 / step))
    else:
        tissue_level = otsu(coarse_values[head_coarse]) if head_coarse.any() else threshold
        candidates = (coarse_values > 0.6 * tissue_level) & head_coarse
        cut = max(1, round(8.0 / step))
    core = ndimage.binary_erosion(candidates, structure=_ball(cut))
    brain_coarse = _largest(core)
    volume_ml = float(brain_coarse.sum()) * float(np.prod(grid)) / 1000.0
    if volume_ml < 150.0:  # no brain-sized body: protect nothing here, decide elsewhere
        brain_coarse = np.zeros_like(brain_coarse)
    else:
        grown = ndimage.binary_dilation(brain_coarse, structure=_ball(cut + 1)) & (
            candidates | ndimage.binary_dilation(brain_coarse)
        )
        brain_coarse = ndimage.binary_fill_holes(grown)
    brain = _fine(brain_coarse, factors, values.shape)
    return Segmentation(head, brain, threshold)
