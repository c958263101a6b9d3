"""Defacing one volume, with its proof.

1. Segment air, head and brain; point the axes (header first, then every orientation).
2. Render the skin from the front; find the face (dlib HOG, OpenCV Haar) and its landmarks.
3. Map the face (brow to below the chin, ear to ear as the jaw line gives it) back to the
   volume and cut away everything in front of a smooth surface behind the deepest facial
   feature (a morphological minimum of the skin depth over ``feature_mm``) less ``depth_mm``:
   nose, lips, eyelids, brows and cheeks go; never a voxel of the brain mask or within
   ``brain_margin_mm`` in front of it.
4. Prove it on the output: renders from the front, both sides and two obliques must show no
   face to any detector at lowered thresholds, the 128-d embedding of the face box must have
   moved beyond dlib's same-person distance (0.6), and the brain voxels must be bit-identical.
   A failed proof escalates (deeper, wider) twice, then the volume is refused.

A volume in which no detector finds a face in any orientation is released as it is when its
anatomy has no face either (no skin in front of and below the brain); otherwise refused.
The engine keeps no state between volumes.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from radguard.deface import detect
from radguard.deface.ears import ear_mask
from radguard.deface.frame import Frame, all_frames, compose, from_affine
from radguard.deface.render import Render, View, render
from radguard.deface.segment import Segmentation, segment
from radguard.deface.volume import Mask, Modality, Volume

_SEAL_MM = 4.0
_TAPER_MM = 6.0
_MAX_CUT_MM = 60.0
_RAMP_MM = 10.0
_CAP_RADIUS_MM = 90.0
_PROOF_VIEWS = (View.FRONT, View.FRONT_LEFT, View.FRONT_RIGHT, View.LEFT, View.RIGHT)


class Status(enum.Enum):
    """What became of a volume; only DEFACED and NO_FACE may be released."""

    DEFACED = "defaced"
    NO_FACE = "no-face"
    REFUSED = "refused"


@dataclass(frozen=True)
class DefaceSettings:
    """How deep and how wide to cut, and how to look for the face."""

    depth_mm: float = 4.0  # below the deepest facial feature
    feature_mm: float = 40.0  # width over which the deepest feature is taken (nose, eyes)
    brain_margin_mm: float = 3.0  # never cut this close in front of the brain mask
    pixel_mm: float = 1.0  # render pixel size
    search_orientations: bool = True  # try all 24 orientations when the header's fails
    escalations: int = 2  # deeper and wider retries before refusing
    ears: bool = False  # also clear both pinnae (a biometric of their own)

    def __post_init__(self) -> None:
        if not (0.0 <= self.depth_mm <= 60.0):
            raise ValueError("depth_mm must be between 0 and 60")
        if not (10.0 <= self.feature_mm <= 120.0):
            raise ValueError("feature_mm must be between 10 and 120")
        if not (0.0 <= self.brain_margin_mm <= 30.0):
            raise ValueError("brain_margin_mm must be between 0 and 30")
        if not (0.25 <= self.pixel_mm <= 4.0):
            raise ValueError("pixel_mm must be between 0.25 and 4")


@dataclass
class Proof:
    """The measured evidence for one volume (JSON-ready through :meth:`to_json`)."""

    frame: str = ""
    faces_before: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faces_after: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    embedding_distance: float | None = None
    landmark_shift: float | None = None  # mean landmark move / inter-ocular distance
    brain_voxels: int = 0
    brain_voxels_changed: int = 0
    removed_voxels: int = 0
    removed_ml: float = 0.0
    depth_mm: float = 0.0
    attempts: int = 0
    ears_mm: list[float] = field(default_factory=list)  # protrusion cleared per side, 0: none
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "faces_before": self.faces_before,
            "faces_after": self.faces_after,
            "embedding_distance": _round(self.embedding_distance),
            "same_person_threshold": detect.SAME_PERSON_DISTANCE,
            "landmark_shift": _round(self.landmark_shift),
            "brain_voxels": self.brain_voxels,
            "brain_voxels_changed": self.brain_voxels_changed,
            "removed_voxels": self.removed_voxels,
            "removed_ml": round(self.removed_ml, 1),
            "depth_mm": self.depth_mm,
            "attempts": self.attempts,
            "ears_mm": [round(v, 1) for v in self.ears_mm],
            "checks": self.checks,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class Outcome:
    """The result for one volume: status, reason, the defaced stored values and the proof."""

    status: Status
    reason: str
    data: NDArray[np.generic] | None = None
    proof: Proof = field(default_factory=Proof)
    before: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    after: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, "proof": self.proof.to_json()}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


@dataclass
class _Found:
    frame: Frame
    render: Render
    face: detect.Face
    faces: list[detect.Face]


def deface_volume(
    volume: Volume, settings: DefaceSettings | None = None, head_hint: bool = False
) -> Outcome:
    """Deface ``volume`` and prove it. ``head_hint``: the header says head or neck, so an
    image where nothing can be decided is refused rather than released."""
    settings = settings or DefaceSettings()
    started = time.perf_counter()
    detect.check_models()
    values = volume.physical()
    seg = segment(values, volume.modality, volume.spacing)
    base = from_affine(volume.affine)
    found = _find_face(seg, volume.spacing, base, settings)
    if found is None:
        outcome = _no_face(seg, volume, base, head_hint)
        outcome.proof.seconds = time.perf_counter() - started
        return outcome
    outcome = _cut_and_prove(volume, values, seg, found, settings)
    outcome.proof.seconds = time.perf_counter() - started
    return outcome


def _find_face(
    seg: Segmentation, spacing: tuple[float, float, float], base: Frame, settings: DefaceSettings
) -> _Found | None:
    """The header's orientation first; then every other one (the image decides)."""
    frames = [base]
    if settings.search_orientations:
        frames += [f for f in (compose(base, t) for t in all_frames()) if f != base]
    for frame in frames:
        shot = render(frame.view(seg.head), frame.spacing(spacing), View.FRONT, settings.pixel_mm)  # type: ignore[arg-type]
        faces = detect.find_faces(shot.image)
        face = detect.best([f for f in faces if f.detector == "dlib-hog"])
        if face is not None and _plausible(face, shot):
            return _Found(frame, shot, face, faces)
    return None


def _plausible(face: detect.Face, shot: Render) -> bool:
    """A face box on a head: 80-260 mm wide, and mostly over tissue."""
    left, top, width, height = face.box
    size_mm = width * shot.pixel_mm
    depth = shot.depth[max(top, 0) : top + height, max(left, 0) : left + width]
    covered = float(np.isfinite(depth).mean()) if depth.size else 0.0
    return 70.0 <= size_mm <= 260.0 and covered > 0.8


def _no_face(seg: Segmentation, volume: Volume, base: Frame, head_hint: bool) -> Outcome:
    """No detector sees a face: is there anatomy of a face in the field of view?"""
    spacing = base.spacing(volume.spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    head = base.view(seg.head)
    brain = base.view(seg.brain)
    proof = Proof(frame=_frame_name(base))
    head_ml = float(seg.head.sum()) * voxel_ml
    if not brain.any():
        if head_ml < 200.0:
            return Outcome(Status.NO_FACE, "no head in the field of view", proof=proof)
        if head_hint:
            return Outcome(
                Status.REFUSED,
                "header says head or neck, but neither a face nor a brain was found: "
                "cannot decide whether a face is present",
                proof=proof,
            )
        return Outcome(
            Status.NO_FACE, "no brain and no face found in the field of view", proof=proof
        )
    xs, ys, zs = np.nonzero(brain)
    z_low = int(zs.min() - 60.0 / spacing[2])
    z_mid = int((zs.min() + zs.max()) // 2)
    front = np.full((head.shape[0], head.shape[2]), -1, np.int64)
    has = brain.any(axis=1)
    front[has] = head.shape[1] - 1 - np.argmax(brain[:, ::-1, :], axis=1)[has]
    limit = int(np.percentile(ys, 99)) + int(5.0 / spacing[1])
    zone = head[xs.min() : xs.max() + 1, limit:, max(z_low, 0) : max(z_mid, 0)]
    area_cm2 = float(zone.any(axis=1).sum()) * spacing[0] * spacing[2] / 100.0
    if area_cm2 >= 20.0:
        return Outcome(
            Status.REFUSED,
            f"tissue covers {area_cm2:.0f} cm2 in front of and below the brain (a face may be "
            "there) but no detector found a face in any orientation: cannot deface with proof",
            proof=proof,
        )
    return Outcome(
        Status.NO_FACE,
        f"no face in the field of view (no detector found one; {area_cm2:.0f} cm2 of tissue "
        "in front of and below the brain)",
        proof=proof,
    )


def _frame_name(frame: Frame) -> str:
    names = "xyz"
    return ",".join(
        ("-" if flip else "+") + names[axis]
        for axis, flip in zip(frame.axes, frame.flips, strict=True)
    )


def _region(
    found: _Found, points: NDArray[np.float64], grow: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Head-frame (x range, z range) of the face: jaw line sideways, brow to below the chin."""
    jaw, brows, chin = points[0:17], points[17:27], points[8]
    height = max(float(chin[1] - brows[:, 1].min()), 1.0)
    width = max(float(jaw[:, 0].max() - jaw[:, 0].min()), 1.0)
    left = float(jaw[:, 0].min()) - (0.08 + grow) * width
    right = float(jaw[:, 0].max()) + (0.08 + grow) * width
    top = float(brows[:, 1].min()) - (0.12 + grow) * height
    bottom = float(chin[1]) + (0.25 + grow) * height
    x, z = found.render.to_volume(np.array([top, bottom]), np.array([left, right]))
    return (float(min(x)), float(max(x))), (float(min(z)), float(max(z)))


def _removal(
    head: Mask,
    brain: Mask,
    spacing: tuple[float, float, float],
    xr: tuple[float, float],
    zr: tuple[float, float],
    depth_mm: float,
    settings: DefaceSettings,
) -> tuple[Mask, Mask]:
    """Head-frame voxels to clear (in the face region, in front of the cut surface and in
    front of the brain's front plus the margin) and to seal: air in a thin layer behind the
    cut (sinuses, nasal cavity, orbits) becomes tissue, so the new surface is the smooth cut
    itself rather than cavities that would draw eyes and a nose again."""
    from scipy import ndimage

    nx, ny, nz = head.shape
    sx, sy, sz = spacing
    hit = np.argmax(head[:, ::-1, :], axis=1)
    found = head.any(axis=1)
    surface = np.where(found, (ny - 1 - hit).astype(np.float32), np.float32(np.inf))
    size = (max(3, int(settings.feature_mm / sx) | 1), max(3, int(settings.feature_mm / sz) | 1))
    deepest = ndimage.minimum_filter(surface, size=size, mode="nearest")
    deepest = np.where(np.isfinite(deepest), deepest, np.float32(ny))
    cut = ndimage.gaussian_filter(deepest, (6.0 / sx, 6.0 / sz)) - depth_mm / sy
    box = np.zeros((nx, nz), bool)
    x0, x1 = max(int(np.floor(xr[0])), 0), min(int(np.ceil(xr[1])) + 1, nx)
    z0, z1 = max(int(np.floor(zr[0])), 0), min(int(np.ceil(zr[1])) + 1, nz)
    box[x0:x1, z0:z1] = True
    cut = _dome(cut, box & found, spacing)
    brain_front = np.full((nx, nz), -1.0, np.float32)
    has = brain.any(axis=1)
    brain_front[has] = ny - 1 - np.argmax(brain[:, ::-1, :], axis=1)[has]
    margin = settings.brain_margin_mm
    reach = (max(1, int(2 * margin / sx) | 1), max(1, int(2 * margin / sz) | 1))
    guard = ndimage.maximum_filter(brain_front, size=reach) + margin / sy
    # never deeper than the nose is long (plus the asked depth) below the skin itself: at the
    # head's outline the deepest nearby surface is far back, and the cut must not follow it
    shallow = (
        np.where(np.isfinite(surface), surface, np.float32(ny)) - (_MAX_CUT_MM + depth_mm) / sy
    )
    limit = np.maximum(np.maximum(cut, guard), shallow)
    # where the guard lifts the cut (the brain's front), a cliff would draw lines: ramp the
    # low side up instead (the cut only ever gets shallower here, never deeper)
    reach_px = (max(3, int(_RAMP_MM / sx) | 1), max(3, int(_RAMP_MM / sz) | 1))
    lifted = ndimage.gaussian_filter(
        ndimage.grey_dilation(limit, size=reach_px), (_RAMP_MM / 2 / sx, _RAMP_MM / 2 / sz)
    )
    limit = np.maximum(limit, lifted)
    region = box & found & (surface > limit)  # columns where the cut reaches the skin
    # taper the cut into the skin at the region's border: a step there would draw a face-
    # shaped outline that detectors pick up
    ramp = ndimage.distance_transform_edt(region, sampling=(sx, sz))
    weight = np.clip(ramp / _TAPER_MM, 0.0, 1.0).astype(np.float32)
    safe_surface = np.where(found, surface, limit)
    limit = np.where(region, safe_surface - weight * (safe_surface - limit), limit)
    ys = np.arange(ny, dtype=np.float32)[None, :, None]
    remove: Mask = region[:, None, :] & (ys > limit[:, None, :])
    seal_from = np.maximum(np.minimum(limit - _SEAL_MM / sy, safe_surface), guard)
    seal: Mask = (
        region[:, None, :] & (ys <= limit[:, None, :]) & (ys > seal_from[:, None, :]) & ~head
    )
    return remove, seal


def _dome(
    cut: NDArray[np.float32], where: Mask, spacing: tuple[float, float, float]
) -> NDArray[np.float32]:
    """A smooth convex cap under the face: a quadratic fitted to the cut surface, bent at
    least as much as a skull's back (radius about 90 mm), then set back until it lies behind
    95% of the cut. A plain cap reads like the back of a head to a detector; a flat plateau
    inside the head's outline reads like a face."""
    ix, iz = np.nonzero(where)
    if ix.size < 50:
        return cut
    sx, sy, sz = spacing
    xc, zc = float(ix.mean()), float(iz.mean())
    hx, hz = max(float(ix.std()), 1.0), max(float(iz.std()), 1.0)

    def design(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
        u, v = (a - xc) / hx, (b - zc) / hz
        return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)

    points = design(ix.astype(np.float64), iz.astype(np.float64))
    coef, *_ = np.linalg.lstsq(points, cut[ix, iz].astype(np.float64), rcond=None)
    coef[3] = min(coef[3], -((hx * sx) ** 2) / (2 * _CAP_RADIUS_MM) / sy)
    coef[5] = min(coef[5], -((hz * sz) ** 2) / (2 * _CAP_RADIUS_MM) / sy)
    gx, gz = np.meshgrid(np.arange(cut.shape[0]), np.arange(cut.shape[1]), indexing="ij")
    cap = design(gx.astype(np.float64), gz.astype(np.float64)) @ coef
    cap -= max(float(np.percentile((cap - cut)[where], 95)), 0.0)
    result: NDArray[np.float32] = np.where(where, np.minimum(cap, cut), cut).astype(np.float32)
    return result


def _cut_and_prove(
    volume: Volume, values: NDArray[np.float32], seg: Segmentation, found: _Found, s: DefaceSettings
) -> Outcome:
    frame = found.frame
    spacing = frame.spacing(volume.spacing)
    head_h = frame.view(seg.head)
    shot = found.render
    before_points = detect.landmarks(shot.image, found.face.box)
    eye_y, eye_z = _eyes(head_h, shot, before_points)
    if volume.modality is not Modality.CT:
        _trim_brain(frame.view(seg.brain), head_h, spacing, eye_y, eye_z)
    brain_h = frame.view(seg.brain)
    before_embedding = detect.embedding(shot.image, found.face.box)
    before = {View.FRONT.value: shot.image}
    proof = Proof(frame=_frame_name(frame))
    proof.faces_before[View.FRONT.value] = [f.to_json() for f in found.faces]
    boxes: dict[str, list[tuple[int, int, int, int]]] = {"front": [found.face.box]}
    for view in _PROOF_VIEWS[1:]:
        image = render(head_h, spacing, view, s.pixel_mm).image
        before[view.value] = image
        faces = _faces_in(image, view, sensitive=False)
        proof.faces_before[view.value] = [f.to_json() for f in faces]
    fill = np.broadcast_to(volume.fill_value()[None, None, :], volume.data.shape)
    tissue = np.broadcast_to(
        volume.stored_value(_tissue_level(values, seg))[None, None, :], volume.data.shape
    )
    brain_stored = seg.brain
    near = _dilate(seg.head)
    reason = ""
    for attempt in range(s.escalations + 1):
        grow = 0.3 * attempt
        depth = s.depth_mm + 8.0 * attempt
        xr, zr = _region(found, before_points, grow)
        remove_h, seal_h = _removal(head_h, brain_h, spacing, xr, zr, depth, s)
        if s.ears:
            ears_h, proof.ears_mm = ear_mask(head_h, brain_h, spacing, eye_z, eye_y)
            remove_h |= ears_h
        remove = np.ascontiguousarray(frame.unview(remove_h))
        seal = np.ascontiguousarray(frame.unview(seal_h))
        data = volume.data.copy()
        data[remove] = fill[remove]
        data[seal] = tissue[seal]
        remove |= seal
        after_values = _physical(volume, data)
        after_head = frame.view((after_values > seg.air_threshold) & (near | remove))
        after: dict[str, NDArray[np.uint8]] = {}
        proof.faces_after = {}
        for view in _PROOF_VIEWS:
            image = render(after_head, spacing, view, s.pixel_mm).image  # type: ignore[arg-type]
            after[view.value] = image
            proof.faces_after[view.value] = [
                f.to_json() for f in _faces_in(image, view, sensitive=True)
            ]
        front_after = after[View.FRONT.value]
        distance = float(
            np.linalg.norm(detect.embedding(front_after, found.face.box) - before_embedding)
        )
        after_points = detect.landmarks(front_after, found.face.box)
        eyes = float(np.linalg.norm(before_points[36:42].mean(0) - before_points[42:48].mean(0)))
        proof.landmark_shift = float(
            np.linalg.norm(after_points - before_points, axis=1).mean() / max(eyes, 1.0)
        )
        proof.embedding_distance = distance
        proof.brain_voxels = int(brain_stored.sum())
        proof.brain_voxels_changed = int(
            np.count_nonzero(volume.data[brain_stored] != data[brain_stored])
        )
        proof.removed_voxels = int(np.count_nonzero(seg.head[remove]))  # tissue cleared
        proof.removed_ml = proof.removed_voxels * float(np.prod(volume.spacing)) / 1000.0
        proof.depth_mm = depth
        proof.attempts = attempt + 1
        proof.checks = {
            "face_found_before": True,
            "no_face_after": not _still_a_face(proof.faces_after, found.face.box),
            "embedding_moved": distance > detect.SAME_PERSON_DISTANCE,
            "brain_unchanged": proof.brain_voxels_changed == 0
            and not bool((remove & brain_stored).any()),
            "tissue_removed": proof.removed_voxels > 0,
        }
        if proof.passed:
            return Outcome(
                Status.DEFACED,
                f"face removed and proven (embedding distance {distance:.2f}, "
                f"{proof.removed_ml:.0f} ml cleared, brain unchanged)",
                data,
                proof,
                before,
                after,
                boxes,
            )
        failed = [name for name, ok in proof.checks.items() if not ok]
        reason = "proof failed after {} attempt(s): {}".format(attempt + 1, ", ".join(failed))
        if not proof.checks["brain_unchanged"]:
            break  # never escalate towards the brain
    return Outcome(Status.REFUSED, reason, None, proof, before, after, boxes)


def _eyes(head: Mask, shot: Render, points: NDArray[np.float64]) -> tuple[float, float]:
    """Head-frame (y, z) of the eyes' surface, from the landmarks on the front render."""
    eyes = points[36:48]
    x, z = shot.to_volume(eyes[:, 1], eyes[:, 0])
    nx, ny, nz = head.shape
    xi = np.clip(np.rint(x).astype(int), 0, nx - 1)
    zi = np.clip(np.rint(z).astype(int), 0, nz - 1)
    column = head[xi, :, zi]
    front = np.where(column.any(axis=1), ny - 1 - np.argmax(column[:, ::-1], axis=1), ny - 1)
    return float(np.median(front)), float(np.median(z))


def _trim_brain(
    brain: Mask, head: Mask, spacing: tuple[float, float, float], eye_y: float, eye_z: float
) -> None:
    """MR/PET brain masks grown by intensity can leak into the face; below the brows, the
    brain lies at least 20 mm behind the eyes' surface, and 25 mm below the eyes at least
    60 mm behind it (anatomy), so the mask is cut there.
    ``brain`` is a head-frame view of the mask: it is trimmed in place."""
    _, ny, nz = head.shape
    below = int(np.clip(eye_z + 10.0 / spacing[2], 0, nz))
    behind = int(np.clip(eye_y - 20.0 / spacing[1], 0, ny))
    brain[:, behind:, :below] = False
    # well below the eyes (the temporal lobes end about 20 mm under them) no brain lies within
    # 60 mm of the eyes' surface: jaw and cheek muscles there are not brain
    low = int(np.clip(eye_z - 25.0 / spacing[2], 0, nz))
    far = int(np.clip(eye_y - 60.0 / spacing[1], 0, ny))
    brain[:, far:, :low] = False


def _still_a_face(after: dict[str, list[dict[str, Any]]], box: tuple[int, int, int, int]) -> bool:
    """The gate: dlib's HOG (at its lowered threshold) in any view at a size this head's
    face could have, or both Haar cascades where the face was. Haar alone fires on plain
    skull and brain renders (measured), so a lone Haar box elsewhere is recorded in the
    proof but does not fail it."""
    smallest = 0.6 * box[2]  # this head's face cannot shrink: smaller boxes are other things
    if any(
        f["detector"] == "dlib-hog" and f["box"][2] >= smallest
        for faces in after.values()
        for f in faces
    ):
        return True
    front = after.get(View.FRONT.value, [])
    agreeing = {f["detector"] for f in front if _iou(tuple(f["box"]), box) >= 0.5}
    return {"haar", "haar-alt2"} <= agreeing


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _faces_in(image: NDArray[np.uint8], view: View, sensitive: bool) -> list[detect.Face]:
    """Faces in one render. The lowered threshold applies where a face shows (front and the
    obliques); from the sides the frontal model at that threshold answers to ears and cut
    edges (measured on pydeface's template), so there it runs at its own threshold."""
    if view in (View.LEFT, View.RIGHT):
        return detect.find_profiles(image) + detect.find_faces(image)
    return detect.find_faces(image, sensitive)


def _tissue_level(values: NDArray[np.float32], seg: Segmentation) -> float:
    """A plain soft-tissue value for the seal: the head's median, at least above the air
    threshold."""
    sample = values[::4, ::4, ::4][seg.head[::4, ::4, ::4]]
    level = float(np.median(sample)) if sample.size else seg.air_threshold + 1.0
    return max(level, seg.air_threshold + 0.1 * abs(seg.air_threshold) + 1.0)


def _physical(volume: Volume, data: NDArray[np.generic]) -> NDArray[np.float32]:
    return Volume(data, volume.affine, volume.modality, volume.slope, volume.intercept).physical()


def _dilate(mask: Mask) -> Mask:
    """The head mask grown by a few voxels: the after-render sees anything near the head."""
    from scipy import ndimage

    result: Mask = ndimage.binary_dilation(mask[::2, ::2, ::2], iterations=2)
    for axis in range(3):
        result = np.repeat(result, 2, axis=axis)
    out: Mask = result[: mask.shape[0], : mask.shape[1], : mask.shape[2]] | mask
    return out
