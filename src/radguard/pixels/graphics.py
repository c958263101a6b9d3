"""Clean Graphics (PS3.15 E.3.3): overlay bit planes and presentation-state text objects.

Overlays (groups 6000-601E) are read with the OCR engine and classifier of Clean Pixel Data:
each frame of the bit plane is drawn as white ink on black (one crop per group of ink, padded,
small text enlarged; blocks of close lines also read row by row), the lines read are judged
against the file's own identifiers (read before the header was cleaned) and the generic
patterns, and the bits under identifying lines (and unknown ones when ``pixels.unknown_text``
is ``redact``) are cleared with the policy margin. The cleaned plane is read again; the overlay
stays only when nothing identifying is read, and any failure (an undecodable plane, an engine
error, text that stays) removes the whole group with the reason noted. Overlays embedded in the
unused high bits of Pixel Data (retired) are removed: their bit is cleared in native Pixel
Data, or the file is refused.

Text objects of a Graphic Annotation Sequence (0070,0001) are judged line by line with the
same classifier: an identifying or unknown (per policy) Unformatted Text Value (0070,0006)
removes its text object; a clinical one stays. Labels of presentation states are cleaned with
the free-text cleaner. Notes returned here never quote the text read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian

from radguard.deid.text import TextCleaner
from radguard.errors import Rejected
from radguard.pixels.classify import Classifier, Verdict
from radguard.pixels.detect import Pass, read_frame, read_frames
from radguard.pixels.engines import Box, Line, OcrEngine
from radguard.settings import PixelPolicy, UnknownText

Planes = NDArray[np.bool_]  # (frames, rows, cols)

_OVERLAY_DATA = 0x3000
_PAD = 16  # black border around the cropped ink (text at an edge is still detected)
_SMALL = 256  # overlays whose shorter side is under this are drawn twice as large
_ROUNDS = 3  # read, clear, read again: at most this many reads after the first clearing


class OverlayError(Exception):
    """An overlay plane that cannot be decoded or written back (the group is removed)."""


def overlay_groups(ds: Dataset) -> list[int]:
    """Groups of ``ds`` (top level) that hold Overlay Plane attributes: 0x6000..0x601E, even."""
    groups = {int(tag) >> 16 for tag in ds.keys()}
    return sorted(g for g in groups if 0x6000 <= g <= 0x601E and not g & 1)


def _int(ds: Dataset, group: int, element: int, default: int | None = None) -> int:
    elem = ds.get((group << 16) | element)
    value = None if elem is None else elem.value
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    if value is None or value == "" or value == b"":
        if default is None:
            raise OverlayError(f"overlay {group:04X}: ({group:04X},{element:04X}) missing")
        return default
    if isinstance(value, bytes):  # still raw (not decoded): unsigned 16-bit, little endian
        return int.from_bytes(value[:2], "little")
    return int(value)


def _big_endian(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None:
        return str(syntax) == ExplicitVRBigEndian
    return ds.is_little_endian is False


def read_overlay(ds: Dataset, group: int) -> Planes:
    """The bit planes of overlay ``group`` as (frames, rows, cols) booleans (PS3.3 C.9.2/C.9.3).

    Raises :class:`OverlayError` for an embedded, truncated or inconsistent overlay.
    """
    rows, cols = _int(ds, group, 0x0010), _int(ds, group, 0x0011)
    frames = _int(ds, group, 0x0015, 1)
    bits = _int(ds, group, 0x0100, 1)
    position = _int(ds, group, 0x0102, 0)
    if bits != 1 or position != 0:
        raise OverlayError(f"overlay {group:04X}: not a 1-bit plane (bits {bits}, at {position})")
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise OverlayError(f"overlay {group:04X}: empty geometry")
    elem = ds.get((group << 16) | _OVERLAY_DATA)
    if elem is None or not isinstance(elem.value, bytes | bytearray):
        raise OverlayError(f"overlay {group:04X}: no Overlay Data")
    data = np.frombuffer(bytes(elem.value), np.uint8)
    if _big_endian(ds) and elem.VR == "OW":  # 16-bit words in the syntax's byte order
        data = data[: len(data) // 2 * 2].reshape(-1, 2)[:, ::-1].ravel()
    count = rows * cols * frames
    if data.size * 8 < count:
        raise OverlayError(f"overlay {group:04X}: Overlay Data shorter than its geometry")
    bitsarray = np.unpackbits(data, bitorder="little")[:count]
    planes: Planes = bitsarray.reshape(frames, rows, cols).astype(bool)
    return planes


def write_overlay(ds: Dataset, group: int, planes: Planes) -> None:
    """Store ``planes`` as the Overlay Data of ``group`` (packed, padded to even, syntax order)."""
    packed = np.packbits(planes.astype(np.uint8).ravel(), bitorder="little")
    if packed.size % 2:
        packed = np.append(packed, np.uint8(0))
    elem = ds[(group << 16) | _OVERLAY_DATA]
    if _big_endian(ds) and elem.VR == "OW":
        packed = packed.reshape(-1, 2)[:, ::-1].ravel()
    elem.value = packed.tobytes()


def remove_overlay(ds: Dataset, group: int) -> None:
    """Delete every attribute of overlay ``group``."""
    for tag in [t for t in ds.keys() if int(t) >> 16 == group]:
        del ds[tag]


@dataclass
class OverlayResult:
    """What became of one overlay group (safe to print: no text read is kept here)."""

    group: int
    kept: bool
    frames: int = 0
    cleared: int = 0  # text areas whose bits were cleared
    clinical: int = 0  # text areas read and kept as clinical
    reason: str = ""

    def note(self) -> str:
        what = f"overlay {self.group:04X}"
        if not self.kept:
            return f"graphics: {what} removed: {self.reason}"
        return (
            f"graphics: {what} cleaned and kept: {self.frames} frame(s), {self.cleared} text "
            f"area(s) cleared, {self.clinical} clinical area(s) kept, nothing identifying read "
            "after cleaning"
        )


@dataclass
class OverlayRead:
    """A line read in one overlay frame: where (plane coordinates) and what was decided.

    The text itself is not kept (it may be PHI); a verifier re-reading released overlays uses
    ``GraphicsCleaner.read`` and counts identifying verdicts.
    """

    frame: int
    box: Box
    verdict: Verdict
    clear: bool


class GraphicsCleaner:
    """Cleans overlay planes with one OCR engine (the pixel stage's; create once, reuse)."""

    def __init__(self, policy: PixelPolicy, engine: OcrEngine) -> None:
        self.policy = policy
        self.engine = engine

    def classifier(self, identifiers: Iterable[str]) -> Classifier:
        """The pixel stage's classifier for one file's identifiers."""
        return Classifier(tuple(identifiers), self.policy.keep, self.policy.builtin_keep)

    def clean_overlay(self, ds: Dataset, group: int, classifier: Classifier) -> OverlayResult:
        """Clean overlay ``group`` of ``ds`` in place, or remove it; never raises."""
        try:
            result = self._clean(ds, group, classifier)
        except Exception as error:  # noqa: BLE001 - fail closed: any failure removes the overlay
            result = OverlayResult(group, False, reason=f"could not be cleaned ({_why(error)})")
        if not result.kept:
            remove_overlay(ds, group)
        return result

    def _clean(self, ds: Dataset, group: int, classifier: Classifier) -> OverlayResult:
        planes = read_overlay(ds, group)
        result = OverlayResult(group, True, frames=int(planes.shape[0]))
        if not planes.any():
            return result  # no ink: nothing to read
        found = self.read(planes, classifier)
        result.clinical = _regions(
            [r for r in found if r.verdict is Verdict.CLINICAL and not r.clear]
        )
        to_clear = [r for r in found if r.clear]
        for _ in range(_ROUNDS):
            if not to_clear:
                break
            result.cleared += _regions(to_clear)
            self._clear(planes, to_clear)
            again = self.read(planes, classifier)
            if any(r.verdict is Verdict.IDENTIFYING for r in again):
                return OverlayResult(
                    group, False, reason="identifying text still read after clearing its bits"
                )
            to_clear = [r for r in again if r.clear]
        if to_clear:
            return OverlayResult(
                group, False, reason="text to clear still read after clearing its bits"
            )
        write_overlay(ds, group, planes)
        return result

    def read(self, planes: Planes, classifier: Classifier) -> list[OverlayRead]:
        """Text lines in every frame of ``planes``, judged (two renderings, lines united).

        A detected box that spans several rows of ink (small lines close together are often
        found as one block) is also read row by row, each row on its own enlarged crop.
        """
        rows, cols = int(planes.shape[1]), int(planes.shape[2])
        found: list[OverlayRead] = []
        for window in _windows(planes):
            y0, y1, x0, x1 = window
            # small overlays, and windows too large for the detector's own enlarging, are
            # drawn twice as large: 8-10 px text must reach the detector's working size
            large = min(y1 - y0, x1 - x0) + 2 * _PAD >= 400
            factor = 2 if min(rows, cols) < _SMALL or large else 1
            for bold in (False, True):
                views = _render(planes, window, factor, bold)
                per_frame = read_frames(
                    self.engine, views, (Pass.BASE,), self.policy.keyframe_interval, tolerance=0
                )
                for frame, lines in enumerate(per_frame):
                    mapped: list[tuple[Box, Line]] = []
                    for line in lines:
                        box = _to_plane(line.box, window, factor, rows, cols)
                        mapped.append((box, line))
                        mapped.extend(self._bands(planes[frame], box, bold))
                    found.extend(self._judge(frame, mapped, classifier))
        return found

    def _bands(self, plane: NDArray[np.bool_], box: Box, bold: bool) -> list[tuple[Box, Line]]:
        """Each row of ink inside ``box`` read on its own (nothing when there is one row)."""
        inside = plane[box.y : box.y + box.h, box.x : box.x + box.w]
        if inside.size == 0:
            return []
        ink_rows: list[bool] = [bool(v) for v in np.asarray(inside.any(axis=1)).ravel()]
        bands: list[tuple[int, int]] = []
        start = -1
        for y, ink in enumerate([*ink_rows, False]):
            if ink and start < 0:
                start = y
            elif not ink and start >= 0:
                if y - start >= 3:
                    bands.append((start, y))
                start = -1
        if len(bands) < 2:
            return []
        rows, cols = plane.shape
        out: list[tuple[Box, Line]] = []
        for top, bottom in bands:
            y0, y1 = max(0, box.y + top - 1), min(rows, box.y + bottom + 1)
            window = (y0, y1, box.x, box.x + box.w)
            view = _render(plane[None], window, 2, bold)[0]
            for line in read_frame(self.engine, view, (Pass.BASE,)):
                out.append((_to_plane(line.box, window, 2, rows, cols), line))
        return out

    def _judge(
        self, frame: int, lines: list[tuple[Box, Line]], classifier: Classifier
    ) -> list[OverlayRead]:
        policy = self.policy
        out: list[OverlayRead] = []
        texts: list[tuple[Box, str]] = []
        for box, line in lines:
            if not any(ch.isalnum() for ch in line.text):
                continue
            texts.append((box, line.text))
            verdict = classifier.decide(line.text).verdict
            identifying = verdict is Verdict.IDENTIFYING
            redact_unknown = policy.unknown_text is UnknownText.REDACT
            if line.score < policy.min_score and not identifying and not redact_unknown:
                continue  # an unsure read that matches nothing: strokes of a graphic
            if line.score < policy.min_score and not identifying:
                verdict = Verdict.UNKNOWN  # a bit plane has no speckle: unsure text is text
            clear = (
                policy.redact_all
                or identifying
                or (verdict is Verdict.UNKNOWN and policy.unknown_text is UnknownText.REDACT)
            )
            out.append(OverlayRead(frame, box, verdict, clear))
        # Pieces of one row read apart are judged together too (a surname ... a given name).
        for row in _rows(texts):
            if len(row) < 2:
                continue
            if classifier.decide(" ".join(t for _, t in row)).verdict is Verdict.IDENTIFYING:
                box = row[0][0]
                for other, _ in row[1:]:
                    box = box.union(other)
                out.append(OverlayRead(frame, box, Verdict.IDENTIFYING, True))
        return out

    def _clear(self, planes: Planes, reads: list[OverlayRead]) -> None:
        rows, cols = int(planes.shape[1]), int(planes.shape[2])
        for read in reads:
            b = read.box.grow(self.policy.margin, cols, rows)
            if b.w > 0 and b.h > 0:
                planes[read.frame, b.y : b.y + b.h, b.x : b.x + b.w] = False


def _regions(reads: list[OverlayRead]) -> int:
    """How many separate areas ``reads`` cover (reads of one line by several passes: one)."""
    areas: list[tuple[int, Box]] = []
    for read in reads:
        for k, (frame, box) in enumerate(areas):
            if frame == read.frame and box.overlap(read.box):
                areas[k] = (frame, box.union(read.box))
                break
        else:
            areas.append((read.frame, read.box))
    return len(areas)


def _rows(items: list[tuple[Box, str]]) -> list[list[tuple[Box, str]]]:
    """Boxes that share a text row and sit close together, left to right."""
    rows: list[list[tuple[Box, str]]] = []
    for box, text in sorted(items, key=lambda item: (item[0].x, item[0].y)):
        for row in rows:
            last = row[-1][0]
            shared = min(last.y + last.h, box.y + box.h) - max(last.y, box.y)
            gap = box.x - (last.x + last.w)
            if shared >= 0.5 * min(last.h, box.h) and gap <= 1.5 * max(last.h, box.h):
                row.append((box, text))
                break
        else:
            rows.append([(box, text)])
    return rows


_Window = tuple[int, int, int, int]  # y0, y1, x0, x1 in plane coordinates


def _windows(planes: Planes, most: int = 16) -> list[_Window]:
    """Windows around groups of ink (text lines and blocks), each read on its own crop.

    Reading each group on a small crop lets the detector enlarge small text; when there are
    more than ``most`` groups (drawings, contours) one window around all the ink is read.
    """
    import cv2

    ink = planes.any(axis=0)
    if not ink.any():
        return []
    rows, cols = ink.shape
    joined = cv2.dilate(np.asarray(ink, np.uint8), np.ones((9, 25), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    windows: list[_Window] = []
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label][:4])
        windows.append((max(0, y - 4), min(rows, y + h + 4), max(0, x - 4), min(cols, x + w + 4)))
    if len(windows) <= most:
        return windows
    ys, xs = np.nonzero(ink)
    y0, y1 = max(0, int(ys.min()) - 4), min(rows, int(ys.max()) + 5)
    x0, x1 = max(0, int(xs.min()) - 4), min(cols, int(xs.max()) + 5)
    return [(y0, y1, x0, x1)]


def _render(planes: Planes, window: _Window, factor: int, bold: bool) -> NDArray[np.uint8]:
    """Frames of the window as white ink on black, padded, enlarged ``factor`` times."""
    import cv2

    y0, y1, x0, x1 = window
    crop = planes[:, y0:y1, x0:x1]
    frames, h, w = crop.shape
    canvas = np.zeros((frames, h + 2 * _PAD, w + 2 * _PAD), np.uint8)
    canvas[:, _PAD : _PAD + h, _PAD : _PAD + w] = np.where(crop, 255, 0)
    out = []
    for frame in canvas:
        image = frame
        if factor > 1:
            size = (image.shape[1] * factor, image.shape[0] * factor)
            image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
        if bold:
            image = cv2.dilate(image, np.ones((2, 2), np.uint8))
        out.append(image)
    return np.ascontiguousarray(np.stack(out))


def _to_plane(box: Box, window: _Window, factor: int, rows: int, cols: int) -> Box:
    """A box read on a rendering, in the coordinates of the overlay plane (clipped)."""
    y0, _, x0, _ = window
    left = math.floor(box.x / factor) - _PAD + x0
    top = math.floor(box.y / factor) - _PAD + y0
    right = math.ceil((box.x + box.w) / factor) - _PAD + x0
    bottom = math.ceil((box.y + box.h) / factor) - _PAD + y0
    left, top = max(0, left), max(0, top)
    right, bottom = min(cols, right), min(rows, bottom)
    return Box(left, top, max(0, right - left), max(0, bottom - top))


def _why(error: BaseException) -> str:
    """An error's kind and message without quoted values (decoders quote what they choke on)."""
    import re

    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(error).replace("\n", " "))[:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# -- the stage -------------------------------------------------------------------------------


def clean_overlays(
    ds: Dataset,
    held: Iterable[int],
    identifiers: Iterable[str],
    policy: PixelPolicy,
    engine: Callable[[], OcrEngine] | None,
) -> list[str]:
    """Settle every overlay group of ``ds``: clean the ``held`` ones, remove all others.

    ``held`` are the groups the header engine kept for Clean Graphics; ``engine`` gives the
    OCR engine (None, or one that fails to load: the held overlays are removed). Groups not
    held (embedded overlays, stray attributes) are removed, their bit cleared in Pixel Data.
    Returns notes without PHI; raises :class:`Rejected` only for embedded overlay bits that
    cannot be cleared.
    """
    held_set = set(held)
    notes: list[str] = []
    groups = overlay_groups(ds)
    cleaner: GraphicsCleaner | None = None
    classifier: Classifier | None = None
    failure = ""
    if held_set.intersection(groups):
        if engine is None:
            failure = "no OCR engine to read it"
        else:
            try:
                cleaner = GraphicsCleaner(policy, engine())
                classifier = cleaner.classifier(identifiers)
            except Exception as error:  # noqa: BLE001 - fail closed: the overlays go
                failure = f"OCR engine unavailable ({_why(error)})"
    for group in groups:
        if group in held_set and (group << 16 | _OVERLAY_DATA) in ds:
            if cleaner is None or classifier is None:
                remove_overlay(ds, group)
                notes.append(f"graphics: overlay {group:04X} removed: {failure}")
                continue
            notes.append(cleaner.clean_overlay(ds, group, classifier).note())
            continue
        notes.append(_remove_unheld(ds, group))
    return notes


def _remove_unheld(ds: Dataset, group: int) -> str:
    """Remove a group that was not cleaned; clear its bit when it lies in Pixel Data."""
    what = f"overlay {group:04X}"
    embedded = (group << 16 | _OVERLAY_DATA) not in ds and (group << 16 | 0x0102) in ds
    if not embedded:
        remove_overlay(ds, group)
        return f"graphics: {what} removed (not cleaned)"
    try:
        position = _int(ds, group, 0x0102)
    except (OverlayError, TypeError, ValueError):
        position = -1
    remove_overlay(ds, group)
    if "PixelData" not in ds:
        return f"graphics: {what} removed (embedded overlay without Pixel Data)"
    _clear_pixel_bit(ds, position, what)
    return f"graphics: {what} removed: embedded overlay bit {position} cleared in Pixel Data"


def _clear_pixel_bit(ds: Dataset, position: int, what: str) -> None:
    """Clear bit ``position`` of every native pixel sample, when it is not an image bit."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        allocated = int(ds.BitsAllocated)
        stored = int(ds.BitsStored)
        high = int(ds.get("HighBit", stored - 1))
    except (AttributeError, TypeError, ValueError) as error:
        raise Rejected(f"graphics: {what} embedded in Pixel Data of unknown layout") from error
    if high - stored + 1 <= position <= high:
        return  # the bit is part of the image itself: nothing separate to clear
    if syntax is not None and syntax.is_compressed:
        raise Rejected(f"graphics: {what} embedded in compressed Pixel Data cannot be cleared")
    if allocated not in (8, 16, 32) or not 0 <= position < allocated:
        raise Rejected(f"graphics: {what} embedded at bit {position} cannot be cleared")
    order = ">" if _big_endian(ds) else "<"
    dtype = np.dtype(f"{order}u{allocated // 8}")
    raw = bytes(ds.PixelData)
    usable = len(raw) // dtype.itemsize * dtype.itemsize
    values = np.frombuffer(raw[:usable], dtype).copy()
    values &= dtype.type(~(1 << position) & ((1 << allocated) - 1))
    ds.PixelData = values.tobytes() + raw[usable:]


# -- presentation states ---------------------------------------------------------------------

# Labels of presentation states and their annotations: cleaned as free text (Clean Graphics).
_LABELS = {
    0x00700080: "CS",  # Content Label
    0x00700081: "LO",  # Content Description
    0x00700068: "LO",  # Graphic Layer Description (in Graphic Layer Sequence)
    0x00700207: "LO",  # Graphic Group Label (in Graphic Group Sequence)
    0x00700208: "ST",  # Graphic Group Description
}
_GRAPHIC_ANNOTATION = 0x00700001
_TEXT_OBJECTS = 0x00700008
_GRAPHIC_OBJECTS = 0x00700009
_UNFORMATTED_TEXT = 0x00700006


def has_graphics(ds: Dataset) -> bool:
    """True when ``ds`` holds overlays or graphic annotations that Clean Graphics looks at."""
    return _GRAPHIC_ANNOTATION in ds or bool(overlay_groups(ds))


def clean_annotations(
    ds: Dataset,
    identifiers: Iterable[str],
    policy: PixelPolicy,
    text_patterns: tuple[str, ...] = (),
) -> list[str]:
    """Judge each text object of the Graphic Annotation Sequence; clean annotation labels.

    Run on the original header (before the engine): identifying or unknown-per-policy text
    objects are removed, clinical ones stay (the engine then cleans what stays, as option C
    says). Any failure removes every text object. Returns notes without PHI.
    """
    ids = tuple(identifiers)
    if _GRAPHIC_ANNOTATION not in ds and not any(tag in ds for tag in _LABELS):
        return []
    try:
        notes = _judge_text_objects(ds, ids, policy)
        notes.extend(_clean_labels(ds, TextCleaner(ids, text_patterns)))
        return notes
    except Exception as error:  # noqa: BLE001 - fail closed: every text object goes
        removed = _drop_all_text_objects(ds)
        return [
            f"graphics: annotation text could not be judged ({_why(error)}): "
            f"Graphic Annotation Sequence removed ({removed} text object(s))"
        ]


def _judge_text_objects(ds: Dataset, ids: tuple[str, ...], policy: PixelPolicy) -> list[str]:
    if _GRAPHIC_ANNOTATION not in ds:
        return []
    classifier = Classifier(ids, policy.keep, policy.builtin_keep)
    kept = removed = 0
    reasons: dict[str, int] = {}
    items = list(ds[_GRAPHIC_ANNOTATION].value or [])
    survivors = []
    for item in items:
        if _TEXT_OBJECTS in item:
            stay = []
            for text_object in item[_TEXT_OBJECTS].value or []:
                verdict = _text_verdict(text_object, classifier)
                drop = (
                    policy.redact_all
                    or verdict is Verdict.IDENTIFYING
                    or (verdict is Verdict.UNKNOWN and policy.unknown_text is UnknownText.REDACT)
                )
                if drop:
                    removed += 1
                    reasons[verdict.value] = reasons.get(verdict.value, 0) + 1
                else:
                    kept += 1
                    stay.append(text_object)
            if stay:
                item[_TEXT_OBJECTS].value = Sequence(stay)
            else:
                del item[_TEXT_OBJECTS]  # Type 1C: absent rather than empty
        graphics = _GRAPHIC_OBJECTS in item and len(item[_GRAPHIC_OBJECTS].value or [])
        if _TEXT_OBJECTS in item or graphics or 0x00700209 in item:  # or Compound Graphics
            survivors.append(item)
    if survivors:
        ds[_GRAPHIC_ANNOTATION].value = Sequence(survivors)
    else:
        del ds[_GRAPHIC_ANNOTATION]
    if not kept and not removed:
        return []
    why = ", ".join(f"{n} {v}" for v, n in sorted(reasons.items()))
    return [
        f"graphics: {kept + removed} text object(s) judged: {removed} removed"
        + (f" ({why})" if why else "")
        + f", {kept} kept as clinical"
    ]


def _text_verdict(text_object: Dataset, classifier: Classifier) -> Verdict:
    """The most identifying verdict over the whole text and each of its lines."""
    value = text_object.get(_UNFORMATTED_TEXT)
    text = "" if value is None or value.value is None else str(value.value)
    pieces = [text, *text.replace("\r", "\n").split("\n")]
    verdicts = {classifier.decide(piece).verdict for piece in pieces if piece.strip()}
    for verdict in (Verdict.IDENTIFYING, Verdict.UNKNOWN):
        if verdict in verdicts:
            return verdict
    return Verdict.CLINICAL


def _clean_labels(ds: Dataset, cleaner: TextCleaner) -> list[str]:
    """Labels anywhere in the presentation state cleaned of identifiers (CS: replaced)."""
    changed = 0
    stack = [ds]
    while stack:
        current = stack.pop()
        for elem in current:
            if elem.VR == "SQ":
                stack.extend(elem.value or [])
                continue
            tag = int(elem.tag)
            if tag not in _LABELS or not isinstance(elem.value, str) or not elem.value:
                continue
            if not cleaner.find(elem.value):
                continue
            if _LABELS[tag] == "CS":
                elem.value = "CLEANED"  # CS allows no cleaning marks
            else:
                elem.value = cleaner.clean(elem.value)
            changed += 1
    return [f"graphics: {changed} annotation label(s) cleaned"] if changed else []


def _drop_all_text_objects(ds: Dataset) -> int:
    """The whole Graphic Annotation Sequence removed; the number of text objects it held."""
    element = ds.get(_GRAPHIC_ANNOTATION)
    if element is None:
        return 0
    removed = sum(
        len(item[_TEXT_OBJECTS].value or [])
        for item in element.value or []
        if _TEXT_OBJECTS in item
    )
    del ds[_GRAPHIC_ANNOTATION]
    return removed
