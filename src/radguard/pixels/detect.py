"""Finding text in frames: preprocessing passes, box merging, and cine frame reuse.

Passes (policy ``pixels.passes``), each a full detection on its own view of the frame:

- ``base``: the frame as shown (grey stretched to its percentiles, or colour);
- ``local``: local contrast equalisation (CLAHE) of the grey level, for faint text;
- ``chroma``: for colour frames, max minus min channel, stretched: coloured overlays on grey
  anatomy stand out even where their brightness matches the background;
- ``invert``: the base view inverted (dark text on light backgrounds, for engines that care);
- ``flat``: white where a pixel has the exact value of a neighbour and stands out from its
  surroundings, black elsewhere: burned-in text is drawn with one ink value, speckle and
  anatomy are not, so faint text inside speckle becomes white on black.

Small frames (shorter side under 400 px) are upscaled twice before detection, so that 8-10 px
text reaches the detector's working size. Boxes found by several passes are merged; each box
is read once, on the view that found it.

Cines: identical frames reuse the result of the first one; pixels that never change over the
loop (static banners) are read once on a composite holding only those pixels; key frames
(the first, every ``keyframe_interval``-th and the last) are read in full; any other frame is
read only where it differs from the last key frame, on the pixels that stay put across its
neighbours (new or changed text is drawn, then stays; moving anatomy does not), and boxes of
the key frame that lie where nothing changed are carried over.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from radguard.pixels.engines import Box, Image, Line, OcrEngine


class Pass(enum.Enum):
    """Preprocessing passes (policy ``pixels.passes``)."""

    BASE = "base"
    LOCAL = "local"
    CHROMA = "chroma"
    INVERT = "invert"
    FLAT = "flat"
    FINE = "fine"


DEFAULT_PASSES = (Pass.BASE, Pass.FLAT, Pass.FINE, Pass.CHROMA)
_UPSCALE_BELOW = 400


@dataclass
class ScanStats:
    """Work done: how many frames were read in full, in part, or reused."""

    frames: int = 0
    full: int = 0
    partial: int = 0
    reused: int = 0
    detections: int = 0
    ocr_seconds: float = 0.0


def _grey(image: Image) -> Image:
    if image.ndim == 2:
        return image
    luma = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    out: Image = luma.astype(np.uint8)
    return out


def pass_views(image: Image, passes: tuple[Pass, ...]) -> list[tuple[Pass, Image]]:
    """The views of ``image`` that each pass detects on (chroma only where there is colour)."""
    import cv2

    views: list[tuple[Pass, Image]] = []
    for kind in passes:
        if kind is Pass.BASE:
            views.append((kind, image))
        elif kind is Pass.LOCAL:
            clahe = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8))
            local: Image = np.asarray(clahe.apply(np.ascontiguousarray(_grey(image))), np.uint8)
            views.append((kind, local))
        elif kind is Pass.INVERT:
            views.append((kind, 255 - image))
        elif kind in (Pass.FLAT, Pass.FINE):
            views.append((kind, _flat(image)))
        elif kind is Pass.CHROMA and image.ndim == 3:
            chroma = image.max(axis=2).astype(np.int16) - image.min(axis=2)
            top = int(chroma.max())
            if top >= 32:
                views.append((kind, (chroma * (255 / top)).astype(np.uint8)))
    return views


def _flat(image: Image) -> Image:
    """Pixels equal to a 4-neighbour and 6+ levels off their 9 x 9 mean, as white on black."""
    import cv2

    values = image.astype(np.int16)
    if values.ndim == 3:  # colour: any channel, keyed by the packed value
        values = (
            (image[..., 0].astype(np.int32) << 16)
            | (image[..., 1].astype(np.int32) << 8)
            | image[..., 2]
        ).astype(np.int32)
    equal = np.zeros(values.shape, bool)
    equal[1:] |= values[1:] == values[:-1]
    equal[:-1] |= values[:-1] == values[1:]
    equal[:, 1:] |= values[:, 1:] == values[:, :-1]
    equal[:, :-1] |= values[:, :-1] == values[:, 1:]
    grey = _grey(image).astype(np.float32)
    mean = cv2.blur(grey, (9, 9))
    standing = np.abs(grey - mean) >= 6.0
    flat = (equal & standing).astype(np.uint8)
    neighbours = cv2.filter2D(flat, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    kept = (flat > 0) & (neighbours >= 3)  # itself and two more: strokes, not stray pixels
    out: Image = np.where(kept, 255, 0).astype(np.uint8)
    return out


def read_frame(
    engine: OcrEngine, image: Image, passes: tuple[Pass, ...], stats: ScanStats | None = None
) -> list[Line]:
    """Every text line found in ``image`` by any pass, read once each."""
    import time

    started = time.perf_counter()
    rows, cols = image.shape[:2]
    base = 2 if min(rows, cols) < _UPSCALE_BELOW else 1
    views: list[tuple[Image, int]] = []
    for kind, view in pass_views(image, passes):
        factor = base * 2 if kind is Pass.FINE else base
        views.append(
            (_resize(view, (cols * factor, rows * factor)) if factor > 1 else view, factor)
        )
    found: list[tuple[Box, int]] = []
    for index, (view, factor) in enumerate(views):
        for box in engine.detect(view):
            found.append((box.scaled(factor) if factor > 1 else box, index))
    if stats is not None:
        stats.detections += len(views)
    merged = _merge(found)
    lines: list[Line] = []
    by_view: dict[int, list[Box]] = {}
    for box, index in merged:
        by_view.setdefault(index, []).append(box)
    for index, boxes in by_view.items():
        view, factor = views[index]
        scaled = [Box(b.x * factor, b.y * factor, b.w * factor, b.h * factor) for b in boxes]
        for box, line in zip(boxes, engine.read(view, scaled), strict=True):
            box = Box(box.x, box.y, min(box.w, cols - box.x), min(box.h, rows - box.y))
            lines.append(Line(box, line.text, line.score))
    if stats is not None:
        stats.ocr_seconds += time.perf_counter() - started
    return lines


def _resize(image: Image, size: tuple[int, int]) -> Image:
    import cv2

    out: Image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), np.uint8)
    return out


def _merge(found: list[tuple[Box, int]]) -> list[tuple[Box, int]]:
    """Boxes of the same text from several passes become one (their union)."""
    merged: list[tuple[Box, int]] = []
    for box, index in sorted(found, key=lambda f: (f[1], f[0].y, f[0].x)):
        for k, (other, other_index) in enumerate(merged):
            shared = box.overlap(other)
            if shared and shared >= 0.5 * min(box.area, other.area):
                merged[k] = (other.union(box), other_index)
                break
        else:
            merged.append((box, index))
    return merged


def read_frames(
    engine: OcrEngine,
    frames: NDArray[np.uint8],
    passes: tuple[Pass, ...],
    keyframe_interval: int = 25,
    tolerance: int = 2,
    stats: ScanStats | None = None,
) -> list[list[Line]]:
    """Text lines per frame of ``frames`` (frames, rows, cols[, 3]), reusing what can be."""
    stats = stats if stats is not None else ScanStats()
    count = int(frames.shape[0])
    stats.frames += count
    if count == 1:
        stats.full += 1
        return [read_frame(engine, frames[0], passes, stats)]
    grey = frames if frames.ndim == 3 else frames.max(axis=3)
    spread = grey.max(axis=0).astype(np.int16) - grey.min(axis=0)
    static = spread <= tolerance
    results: list[list[Line]] = [[] for _ in range(count)]
    static_lines: list[Line] = []
    if static.any() and not static.all():
        composite = np.where(static[..., None] if frames.ndim == 4 else static, frames[0], 0)
        static_lines = read_frame(engine, composite.astype(np.uint8), _masked(passes), stats)
    seen: dict[bytes, int] = {}
    key_index = 0
    key_lines: list[Line] = []
    last: _Partial | None = None
    for k in range(count):
        digest = hashlib.blake2b(frames[k].tobytes(), digest_size=16).digest()
        if digest in seen:
            results[k] = results[seen[digest]]
            stats.reused += 1
            continue
        seen[digest] = k
        is_key = k == 0 or k == count - 1 or (k - key_index) >= keyframe_interval
        if is_key:
            key_index, key_lines = k, read_frame(engine, frames[k], passes, stats)
            stats.full += 1
            results[k] = _dedupe([*static_lines, *key_lines])
            continue
        changed = np.abs(grey[k].astype(np.int16) - grey[key_index]) > tolerance
        carried = [line for line in key_lines if not changed[_slice(line.box)].any()]
        lines = [*static_lines, *carried]
        if changed.any():
            before, after = grey[k - 1], grey[k + 1]
            steady = (np.abs(grey[k].astype(np.int16) - before) <= tolerance) & (
                np.abs(grey[k].astype(np.int16) - after) <= tolerance
            )
            candidates = steady & ~static & _dilate(changed, 3) & _standing(grey[k])
            region = _region_mask(candidates)
            if region is None:
                stats.reused += 1
            elif last is not None and _similar(last, region, candidates, grey[k]):
                lines.extend(last[3])
                stats.reused += 1
            else:
                found = _read_region(engine, frames[k], region, passes, stats)
                known = [line.box for line in lines]
                found = [line for line in found if not _inside_any(line.box, known)]
                last = (region, candidates, grey[k], found)
                lines.extend(found)
                stats.partial += 1
        else:
            stats.reused += 1
        results[k] = _dedupe(lines)
    return results


def _masked(passes: tuple[Pass, ...]) -> tuple[Pass, ...]:
    """Passes worth running on a composite (black around the kept pixels: no local contrast)."""
    kept = tuple(p for p in passes if p in (Pass.BASE, Pass.CHROMA))
    return kept or passes


def _standing(grey: Image, level: float = 12.0) -> NDArray[np.bool_]:
    """Pixels at least ``level`` off their 9 x 9 mean: strokes, not flat or dark tissue."""
    import cv2

    values = grey.astype(np.float32)
    out: NDArray[np.bool_] = np.abs(values - cv2.blur(values, (9, 9))) >= level
    return out


def _read_region(
    engine: OcrEngine,
    frame: Image,
    region: NDArray[np.bool_],
    passes: tuple[Pass, ...],
    stats: ScanStats,
) -> list[Line]:
    """Read only ``region`` of ``frame``: its bounding box, black outside the region."""
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    mask = region[y0:y1, x0:x1]
    crop = frame[y0:y1, x0:x1]
    composite = np.where(mask[..., None] if crop.ndim == 3 else mask, crop, 0).astype(np.uint8)
    found = read_frame(engine, np.ascontiguousarray(composite), _masked(passes), stats)
    return [Line(line.box.shifted(x0, y0), line.text, line.score) for line in found]


def _inside_any(box: Box, known: list[Box]) -> bool:
    """Half or more of ``box`` lies in a box already read (a piece of known text)."""
    return any(box.overlap(other) >= 0.5 * max(box.area, 1) for other in known)


def _slice(box: Box) -> tuple[slice, slice]:
    return slice(box.y, box.y + box.h), slice(box.x, box.x + box.w)


def _dilate(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    import cv2

    kernel = np.ones((2 * size + 1, 2 * size + 1), np.uint8)
    out: NDArray[np.bool_] = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return out


def _region_mask(mask: NDArray[np.bool_], min_pixels: int = 12) -> NDArray[np.bool_] | None:
    """Padded boxes around text-sized clusters of ``mask`` (scattered pixels dropped)."""
    import cv2

    joined = cv2.dilate(mask.astype(np.uint8), np.ones((5, 9), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    rows, cols = mask.shape
    region = np.zeros(mask.shape, bool)
    for label in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[label])
        if h < 5 or int(mask[y : y + h, x : x + w].sum()) < min_pixels:
            continue
        b = Box(x, y, w, h).grow(6, cols, rows)
        region[b.y : b.y + b.h, b.x : b.x + b.w] = True
    return region if region.any() else None


_Partial = tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.uint8], list[Line]]


def _similar(
    last: _Partial, region: NDArray[np.bool_], steady: NDArray[np.bool_], now: NDArray[np.uint8]
) -> bool:
    """Same candidate region as the last partial read, with the same steady pixels in it."""
    old_region, old_steady, before, _ = last
    union = int((region | old_region).sum())
    if not union or int((region & old_region).sum()) < 0.95 * union:
        return False
    both = steady & old_steady
    if int(both.sum()) < 0.8 * max(int(steady.sum()), int(old_steady.sum()), 1):
        return False
    diff = np.abs(now[both].astype(np.int16) - before[both])
    return float(diff.mean()) < 2.0


def _dedupe(lines: list[Line]) -> list[Line]:
    out: list[Line] = []
    for line in lines:
        if any(o.box == line.box and o.text == line.text for o in out):
            continue
        out.append(line)
    return out
