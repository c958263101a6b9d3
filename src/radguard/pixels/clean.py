"""Clean Pixel Data (PS3.15 E.3.1): triage, read, decide, redact, read again, record.

``PixelCleaner.scan`` reports the text in an image without changing it; ``clean`` redacts the
lines that identify (and device layout regions), re-reads the result with the same engine and
passes, and raises :class:`Rejected` when identifying text is still read. Only then is Burned
In Annotation set to NO and the Clean Pixel Data code (113101) recorded.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from radguard.errors import Rejected
from radguard.pixels.classify import Classifier, Verdict, header_identifiers
from radguard.pixels.detect import Pass, ScanStats, read_frame, read_frames
from radguard.pixels.engines import Box, Line, OcrEngine, get_engine
from radguard.pixels.frames import Pixels, decode, display, fill_value, write_back
from radguard.settings import PixelPolicy, PixelScan, UnknownText

# PS3.3 A.8 / A.8.5: Secondary Capture SOP classes (screen saves, scanned documents...)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_ALNUM = re.compile(r"[A-Za-z0-9]")


@dataclass
class TextFound:
    """One line of text in one frame and what was decided about it."""

    frame: int
    box: Box
    text: str  # may be PHI: never logged or printed unmasked
    score: float
    verdict: Verdict
    why: str
    redacted: bool

    def public(self) -> dict[str, Any]:
        """A record safe to print: the text masked unless kept as clinical."""
        from radguard.deid.engine import mask

        shown = self.text if self.verdict is Verdict.CLINICAL else mask(self.text)
        return {
            "frame": self.frame,
            "box": [self.box.x, self.box.y, self.box.w, self.box.h],
            "text": shown,
            "score": round(self.score, 3),
            "verdict": self.verdict.value,
            "why": self.why,
            "redacted": self.redacted,
        }


@dataclass
class PixelReport:
    """What the pixel stage found and did in one file."""

    triage: str
    frames: int = 0
    found: list[TextFound] = field(default_factory=list)
    layout_regions: int = 0
    still_read: list[TextFound] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    syntax: str = ""
    seconds: float = 0.0

    @property
    def redacted(self) -> int:
        return sum(1 for f in self.found if f.redacted)

    @property
    def kept(self) -> int:
        return sum(1 for f in self.found if not f.redacted)

    def summary(self) -> str:
        return (
            f"pixels: {self.triage}; {len(self.found)} text lines in {self.frames} frames, "
            f"{self.redacted} redacted, {self.kept} kept, {self.layout_regions} layout regions"
        )


def triage(ds: Dataset, policy: PixelPolicy) -> str | None:
    """Why the pixel stage reads this file (the triage rule), or None when it does not."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if burned == "YES":
        return "Burned In Annotation is YES"
    if modality in policy.modalities:
        return f"modality {modality} often carries burned-in text"
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class.startswith(_SECONDARY_CAPTURE):
        return "secondary capture"
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if any(v in ("DERIVED", "SECONDARY") for v in image_type[:2]):
        return "derived or secondary image (Image Type)"
    if any("SCREEN" in v for v in image_type) or "ConversionType" in ds:
        return "screen capture"
    if policy.scan is PixelScan.ALL:
        return "policy scans every image (pixels.scan = 'all')"
    return None


class PixelCleaner:
    """Reads, decides and redacts burned-in text with one OCR engine (create once, reuse)."""

    def __init__(self, policy: PixelPolicy, engine: OcrEngine | None = None) -> None:
        self.policy = policy
        self.engine = engine if engine is not None else get_engine(policy.engine.value)
        self.passes = tuple(Pass(p) for p in policy.passes)

    def _classifier(self, identifiers: tuple[str, ...]) -> Classifier:
        return Classifier(identifiers, self.policy.keep, self.policy.builtin_keep)

    def _read(
        self, ds: Dataset, pixels: Pixels, classifier: Classifier, stats: ScanStats
    ) -> list[TextFound]:
        views = display(ds, pixels)
        per_frame = read_frames(
            self.engine,
            views,
            self.passes,
            self.policy.keyframe_interval,
            tolerance=8 if pixels.lossy else 2,
            stats=stats,
        )
        found = []
        for frame, lines in enumerate(per_frame):
            decided = [self._decide(frame, line, classifier) for line in lines]
            items = [item for item in decided if item is not None]
            found.extend(items)
            found.extend(self._rows(frame, items, classifier))
        return found

    def _rows(self, frame: int, items: list[TextFound], classifier: Classifier) -> list[TextFound]:
        """Pieces of one text row read apart ('(207)' ... '2643'): judged together, and when
        the row identifies, the extent of its pieces that are not clinical labels (and the
        gaps between them) is painted."""
        rows: list[list[TextFound]] = []
        for item in sorted(items, key=lambda f: (f.box.x, f.box.y)):
            box = item.box
            for row in rows:
                last = row[-1].box
                shared = min(last.y + last.h, box.y + box.h) - max(last.y, box.y)
                gap = box.x - (last.x + last.w)
                if shared >= 0.5 * min(last.h, box.h) and gap <= 1.5 * max(last.h, box.h):
                    row.append(item)
                    break
            else:
                rows.append([item])
        extra = []
        for row in rows:
            if len(row) < 2:
                continue
            text = " ".join(f.text for f in row)
            decision = classifier.decide(text)
            if decision.verdict is not Verdict.IDENTIFYING:
                continue
            # a clinical label that happens to share the row keeps its pixels
            painted = [f for f in row if f.verdict is not Verdict.CLINICAL] or row
            box = painted[0].box
            for member in painted[1:]:
                box = box.union(member.box)
            score = min(f.score for f in row)
            why = f"row {decision.why}"
            extra.append(TextFound(frame, box, text, score, Verdict.IDENTIFYING, why, True))
        return extra

    def _decide(self, frame: int, line: Line, classifier: Classifier) -> TextFound | None:
        if not _ALNUM.search(line.text):
            return None
        decision = classifier.decide(line.text)
        identifying = decision.verdict is Verdict.IDENTIFYING
        if line.score < self.policy.min_score and not identifying:
            return None  # an unsure read of something that matches nothing: speckle, edges
        redact = (
            self.policy.redact_all
            or identifying
            or (
                decision.verdict is Verdict.UNKNOWN
                and self.policy.unknown_text is UnknownText.REDACT
            )
        )
        return TextFound(
            frame, line.box, line.text, line.score, decision.verdict, decision.why, redact
        )

    def scan(self, ds: Dataset, identifiers: tuple[str, ...] | None = None) -> PixelReport:
        """What text is where and what would be done with it (``ds`` is not changed)."""
        started = time.perf_counter()
        report = PixelReport(triage=triage(ds, self.policy) or "not triaged (read on request)")
        pixels = decode(ds)
        report.frames = pixels.frames
        ids = identifiers if identifiers is not None else header_identifiers(ds)
        report.found = self._read(ds, pixels, self._classifier(ids), report.stats)
        report.layout_regions = len(self._layout_regions(ds, pixels))
        report.seconds = time.perf_counter() - started
        return report

    def clean(self, ds: Dataset, identifiers: tuple[str, ...] | None = None) -> PixelReport:
        """Redact identifying text in every frame; raises Rejected if any is still read."""
        started = time.perf_counter()
        report = PixelReport(triage=triage(ds, self.policy) or "not triaged (read on request)")
        pixels = decode(ds)
        report.frames = pixels.frames
        ids = identifiers if identifiers is not None else header_identifiers(ds)
        classifier = self._classifier(ids)
        report.found = self._read(ds, pixels, classifier, report.stats)
        fill = fill_value(ds, pixels)
        regions = self._layout_regions(ds, pixels)
        report.layout_regions = len(regions)
        self._paint(pixels, [(f.frame, f.box) for f in report.found if f.redacted], fill)
        self._paint(pixels, [(-1, box) for box in regions], fill, grow=False)
        still: list[TextFound] = []
        painted = [
            (f.frame, f.box.grow(self.policy.margin, *_size(pixels)))
            for f in report.found
            if f.redacted
        ]
        painted += [(-1, box) for box in regions]
        # Read again where paint went (the rest of every frame is the pixels just read, and
        # nothing read there identified); paint what shows; twice at most.
        for attempt in range(3 if painted else 0):
            again = self._reread(ds, pixels, classifier, report.stats, painted)
            still = [f for f in again if f.verdict is Verdict.IDENTIFYING]
            more = [f for f in again if f.redacted]
            if not more or attempt == 2:
                break
            report.found.extend(more)
            self._paint(pixels, [(f.frame, f.box) for f in more], fill)
            painted = [(f.frame, f.box.grow(self.policy.margin, *_size(pixels))) for f in more]
        report.still_read = still
        if still:
            raise Rejected(
                f"identifying text is still read in the pixels after redaction "
                f"({len(still)} lines, first in frame {still[0].frame}): not released"
            )
        if report.redacted or report.layout_regions:
            report.syntax = write_back(ds, pixels)
        _record(ds)
        report.seconds = time.perf_counter() - started
        return report

    def _reread(
        self,
        ds: Dataset,
        pixels: Pixels,
        classifier: Classifier,
        stats: ScanStats,
        painted: list[tuple[int, Box]],
    ) -> list[TextFound]:
        """Read the surroundings of painted boxes (frame -1: every frame) once more: the
        paint may have cut a line in two, or left a character outside it. Identical
        surroundings (a static banner painted in every frame of a cine) are read once."""
        views = display(ds, pixels)
        count, rows, cols = int(views.shape[0]), int(views.shape[1]), int(views.shape[2])
        by_frame: dict[int, list[Box]] = {}
        for frame, box in painted:
            reach = max(8, box.h)
            around = Box(box.x - 2 * reach, box.y - reach, box.w + 4 * reach, box.h + 2 * reach)
            around = _clip(around, cols, rows)
            for f in range(count) if frame < 0 else (frame,):
                by_frame.setdefault(f, []).append(around)
        cache: dict[bytes, list[Line]] = {}
        found: list[TextFound] = []
        for frame, boxes in sorted(by_frame.items()):
            lines: list[Line] = []
            for region in _union_all(boxes):
                crop = np.ascontiguousarray(
                    views[frame, region.y : region.y + region.h, region.x : region.x + region.w]
                )
                key = hashlib.blake2b(crop.tobytes(), digest_size=16).digest() + bytes(
                    str(crop.shape), "ascii"
                )
                if key not in cache:
                    cache[key] = read_frame(self.engine, crop, self.passes, stats)
                else:
                    stats.reused += 1
                lines.extend(
                    Line(line.box.shifted(region.x, region.y), line.text, line.score)
                    for line in cache[key]
                )
            decided = [self._decide(frame, line, classifier) for line in lines]
            items = [item for item in decided if item is not None]
            found.extend(items)
            found.extend(self._rows(frame, items, classifier))
        return found

    def _layout_regions(self, ds: Dataset, pixels: Pixels) -> list[Box]:
        rows, cols = int(pixels.array.shape[1]), int(pixels.array.shape[2])
        manufacturer = str(ds.get("Manufacturer", "") or "")
        model = str(ds.get("ManufacturerModelName", "") or "")
        boxes: list[Box] = []
        for layout in self.policy.layouts:
            if layout.matches(manufacturer, model, rows, cols):
                boxes.extend(Box(*r).grow(0, cols, rows) for r in layout.regions)
        return boxes

    def _paint(
        self,
        pixels: Pixels,
        boxes: list[tuple[int, Box]],
        fill: tuple[float, ...],
        grow: bool = True,
    ) -> None:
        """Fill ``boxes`` (frame -1: every frame) in every sample with ``fill``."""
        array = pixels.array
        rows, cols = int(array.shape[1]), int(array.shape[2])
        value = np.asarray(fill, dtype=np.float64).astype(array.dtype)
        for frame, box in boxes:
            b = box.grow(self.policy.margin if grow else 0, cols, rows)
            if b.w <= 0 or b.h <= 0:
                continue
            target = slice(None) if frame < 0 else frame
            array[target, b.y : b.y + b.h, b.x : b.x + b.w, :] = value


def _size(pixels: Pixels) -> tuple[int, int]:
    """(columns, rows) of the frames."""
    return int(pixels.array.shape[2]), int(pixels.array.shape[1])


def _clip(box: Box, cols: int, rows: int) -> Box:
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(cols, box.x + box.w), min(rows, box.y + box.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _union_all(boxes: list[Box]) -> list[Box]:
    """Overlapping boxes joined until none overlap."""
    out: list[Box] = []
    for box in boxes:
        while True:
            hit = next((k for k, o in enumerate(out) if o.overlap(box) > 0), None)
            if hit is None:
                break
            box = box.union(out.pop(hit))
        out.append(box)
    return out


def _record(ds: Dataset) -> None:
    """Burned In Annotation NO and the Clean Pixel Data option code (PS3.15 E.1.1, CID 7050)."""
    ds.BurnedInAnnotation = "NO"
    items = ds.get("DeidentificationMethodCodeSequence")
    if items is None:
        ds.DeidentificationMethodCodeSequence = []
        items = ds.DeidentificationMethodCodeSequence
    if not any(str(item.get("CodeValue", "")) == "113101" for item in items):
        code = Dataset()
        code.CodeValue = "113101"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Clean Pixel Data Option"
        items.append(code)
