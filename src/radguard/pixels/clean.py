"""Clean Pixel Data (PS3.15 E.3.1): triage, read, decide, redact, read again, record.

``PixelCleaner.scan`` reports the text in an image without changing it; ``clean`` redacts the
lines that identify (and device layout regions), re-reads the result with the same engine and
passes, and raises :class:`Rejected` when identifying text is still read. Only then is Burned
In Annotation set to NO and the Clean Pixel Data code (113101) recorded.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from radguard.errors import Rejected
from radguard.pixels.classify import (
    CLINICAL_VOCABULARY,
    MONTHS,
    Classifier,
    Decision,
    Verdict,
    census_names,
    header_identifiers,
    reads_as_name,
)
from radguard.pixels.detect import (
    ALNUM,
    GLYPH_ROW,
    GLYPH_SHARE,
    Pass,
    ScanStats,
    find_text,
    fused_view,
    glyph_row,
    ink,
    ink_pieces,
    ink_row,
    read_boxes,
    read_frames,
    resize,
    segments,
    spelled_boxes,
    upscale_factor,
)
from radguard.pixels.engines import Box, Image, Line, OcrEngine, get_engine, rows_of
from radguard.pixels.frames import Pixels, decode, display, fill_value, write_back
from radguard.pixels.lexicon import Speller
from radguard.settings import PixelPolicy, PixelScan, UnknownText

# PS3.3 A.8 / A.8.5: Secondary Capture SOP classes (screen saves, scanned documents...)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_ALNUM = ALNUM
_UNREADABLE_GLYPHS = GLYPH_ROW  # glyph-shaped ink strokes that make an unreadable box text
_SHORTEST = 3  # letters and digits a line needs to be redacted as unknown text
_SHORT_BOX = 2.5  # ...in a box no wider than this many heights
_WIDE = 4.0  # a box this many heights wide has room for a word: unreadable there is text
_TOO_SHORT = "too short to identify"
_UNREAD = "nothing read"
_SURE = 0.8  # confidence a reading of part of a line needs to keep that part as a label
# ...and a second reading of a whole line to keep it where it reads every letter read first
# (the recognizer's beam readings score their probability relative to the best times its
# confidence: SAG at 0.72 where SA was read; not SEC0 at 0.75 where the name SECO was)
_SURE_SECOND = 0.7
_JOINED_MARK = re.compile(r"\s*([:/.\-])\s*")  # a clock's or date's mark with the spaces of a cut
_SLIVER = 3  # pixels a re-read piece may reach out of a kept line and still be part of it
_ALONG_SLIVER = 7  # ...along its row at most (a sixth of the kept box's height)
_ALONG = 1.0  # line heights an identifying line's paint reaches further along its row
_REST = 1.35  # ...or characters' widths per character of its header value not read
_SECOND_LOW = 0.5  # confidence a longer second reading needs to overrule a short label
_AGREE = 0.9  # confidence each of two agreeing second readings needs (see _second_opinion)
_GRAZE = 0.4  # share of the lower box that boxes on rows above and below may overlap by
_READ_WHOLE = "read whole in the box of a kept label"
_WHOLE_SHARE = 0.75  # share of a line's box inside a kept label's for that to stand for it
_PARTS_WIDE = 3.0  # a painted box this many heights wide may hold rows side by side
_SURE_LABEL = 0.9  # confidence of a label whose glyphs, standing apart, no paint goes over
_BAND_SLACK = 0.4  # a glyph band's height added above and below it (accents, descenders)


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
    # the line's second readings, which its verdict may rest on (PHI like ``text``), and
    # the pieces of ink in its box (``Line.pieces``)
    others: tuple[tuple[str, float], ...] = ()
    pieces: int = 0
    # the width of the line ``text`` was read on, where ``box`` is only a strip of it (a
    # line cut around the labels kept in it); 0: the box's own
    span: int = 0
    # kept as clinical only by its spelling (Line.spelled), not by any reading of it
    spelled: bool = False

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
        self.engine = (
            engine if engine is not None else get_engine(policy.engine.value, policy.reader.value)
        )
        self.passes = tuple(Pass(p) for p in policy.passes)

    def _classifier(self, identifiers: tuple[str, ...]) -> Classifier:
        return Classifier(identifiers, self.policy.keep, self.policy.builtin_keep)

    def _speller(self, classifier: Classifier) -> Speller | None:
        """What spells a misread label in clinical words, for this file's rules (the
        spelling must be a label to them); none without the built-in vocabulary."""
        if not (self.policy.spell_labels and self.policy.builtin_keep):
            return None
        return Speller(
            lambda text: classifier.decide(text).verdict is Verdict.CLINICAL,
            CLINICAL_VOCABULARY,
            census_names(),
            classifier.words | MONTHS,  # a date's month misread is a rival too (12 FES 80)
        )

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
            # in doubt: neither identifying nor clinical, or nothing read at all
            doubt=lambda text: (
                not _ALNUM.search(text) or classifier.decide(text).verdict is Verdict.UNKNOWN
            ),
            spell=self._speller(classifier),
        )
        found = []
        size = (int(views.shape[2]), int(views.shape[1]))
        for frame, lines in enumerate(per_frame):
            found.extend(self._judge(frame, lines, classifier, size, views[frame]))
        return found

    def _judge(
        self,
        frame: int,
        lines: list[Line],
        classifier: Classifier,
        size: tuple[int, int],
        view: Image | None = None,
        earlier: tuple[TextFound, ...] = (),
    ) -> list[TextFound]:
        """Every line decided, then rows of pieces. Boxes dropped as no text (nothing read)
        still join rows: when the row identifies they are painted with it (the detector may
        cut a line where it crosses anatomy; the rest of it reads as nothing). Identifying
        lines are painted a line height further each way along their row, short of kept
        lines there (``size``: the frame's columns and rows), and kept off the glyphs of kept
        lines above and below where ``view`` (the frame as read) shows them apart. Lines
        whose ink all lies in the box of a kept label (read now, or ``earlier``: kept in an
        earlier read) are kept with it (:func:`_read_whole`)."""
        items: list[TextFound] = []
        unread: list[TextFound] = []
        for line in lines:
            item = self._decide(frame, line, classifier)
            if item is not None:
                parts = self._parts(item, line, classifier, view) if view is not None else None
                items.extend(parts or self._split(item, line, classifier, view) or [item])
            else:
                unread.append(
                    TextFound(frame, line.box, "", line.score, Verdict.UNKNOWN, _UNREAD, False)
                )
        if view is not None:
            items = _read_whole(items, view, earlier)
        items = _around_kept(items, classifier, self.policy.margin, earlier, view)
        found = items + self._rows(frame, items + unread, classifier)
        kept = [f.box for f in found if not f.redacted]
        found = [
            _reach_along(f, kept, size[0], classifier.unread(f.text))
            if f.verdict is Verdict.IDENTIFYING
            else f
            for f in found
        ]
        if view is None:
            return found
        labels = [f.box for f in found if not f.redacted and f.text]
        if not labels:
            return found
        return [
            replace(f, box=b)
            for f in found
            for b in (
                _off_labels(f.box, labels, view, self.policy.margin, _descends(f.text))
                if f.redacted
                else [f.box]
            )
        ]

    def _rows(self, frame: int, items: list[TextFound], classifier: Classifier) -> list[TextFound]:
        """Pieces of one text row read apart ('(207)' ... '2643'): judged together, and when
        the row identifies, the extent of its pieces that are not clinical labels (and the
        gaps between them) is painted."""
        rows = rows_of(items, lambda f: f.box, reach=1.5)
        extra: list[TextFound] = []
        for row in rows:
            if len(row) < 2:
                continue
            text = " ".join(f.text for f in row if f.text)
            decision = classifier.decide(text)
            if decision.verdict is not Verdict.IDENTIFYING:
                # pieces of a clock or a date read apart ('10' ':32'): joined at the mark
                decision = classifier.decide(_JOINED_MARK.sub(r"\1", text))
            if decision.verdict is not Verdict.IDENTIFYING:
                continue
            # a clinical label that happens to share the row keeps its pixels (not one only its
            # spelling made a label: read as it was, it may be the row's surname); a letter or
            # two right next to the rest is more likely its end, cut off by the detector
            others = [f for f in row if f.verdict is not Verdict.CLINICAL or f.spelled]
            painted = [
                f
                for f in row
                if f.verdict is not Verdict.CLINICAL
                or f.spelled
                or (len(_ALNUM.findall(f.text)) < _SHORTEST and _beside(f.box, others))
            ] or row
            score = min(f.score for f in row)
            why = f"row {decision.why}"
            span = max(f.box.x + f.box.w for f in row) - min(f.box.x for f in row)
            extra.extend(
                TextFound(frame, box, text, score, Verdict.IDENTIFYING, why, True, span=span)
                for box in _row_paint(painted)
            )
        return extra

    def _decide(self, frame: int, line: Line, classifier: Classifier) -> TextFound | None:
        unsure = line.score < self.policy.min_score
        replaced = False
        if (unsure or not _ALNUM.search(line.text)) and line.glyphs < _UNREADABLE_GLYPHS:
            # nothing read, or nothing surely, where the ink is not a row of glyphs (that is
            # painted as unreadable below, whatever a second reading says): a second reading
            # that identifies, or one that made something out surely enough, is the line's
            # reading ('Dr Egan' read sure by the other recognizer where the first made out
            # 'ee 5mn' unsure; not a clinical one: a piece of an identifying row must not
            # keep its pixels)
            readable = [
                (t, p)
                for t, p in line.others
                if _ALNUM.search(t)
                and p >= self.policy.min_score
                and (p > line.score or not _ALNUM.search(line.text))
                and classifier.decide(t).verdict is not Verdict.CLINICAL
            ]
            readable = [
                (t, p)
                for t, p in line.others
                if classifier.decide(t).verdict is Verdict.IDENTIFYING
            ] or readable
            if readable:
                text, score = max(readable, key=lambda other: other[1])
                rest = tuple(o for o in line.others if o != (text, score))
                if _ALNUM.search(line.text):  # the first reading stays a second one
                    rest += ((line.text, line.score),)
                replaced = bool(_ALNUM.search(line.text))
                line = replace(line, text=text, score=score, others=rest)
        unreadable = not _ALNUM.search(line.text) or line.score < self.policy.min_score
        # a box with room for a word where a few characters were made out (ink or no ink)
        wide = line.box.w >= _WIDE * max(line.box.h, 1) and len(_ALNUM.findall(line.text)) >= 3
        if unreadable and (line.glyphs >= _UNREADABLE_GLYPHS or wide):
            # ink shaped like a row of glyphs that the engine cannot read: fail closed
            decision = Decision(Verdict.UNKNOWN, f"unreadable text ({line.glyphs} glyph strokes)")
            redact = self.policy.redact_all or self.policy.unknown_text is UnknownText.REDACT
            return TextFound(
                frame, line.box, line.text, line.score, decision.verdict, decision.why, redact
            )
        if not _ALNUM.search(line.text):
            return None
        decision = classifier.decide(line.text)
        if decision.verdict is not Verdict.IDENTIFYING and (line.others or line.spelled):
            decision = _second_opinion(decision, line, classifier, settle=not replaced)
        identifying = decision.verdict is Verdict.IDENTIFYING
        if line.score < self.policy.min_score and not identifying:
            return None  # an unsure read of something that matches nothing: speckle, edges
        longest = max(
            [len(_ALNUM.findall(line.text))]
            + [len(_ALNUM.findall(t)) for t, p in line.others if p >= self.policy.min_score]
        )
        small = line.glyphs < _UNREADABLE_GLYPHS and line.box.w <= _SHORT_BOX * line.box.h
        if decision.verdict is Verdict.UNKNOWN and longest < _SHORTEST and small:
            # one or two characters in a box no bigger identify no one (rows of pieces are
            # judged together, and painted when the row identifies)
            decision = Decision(Verdict.CLINICAL, _TOO_SHORT)
        redact = (
            self.policy.redact_all
            or identifying
            or (
                decision.verdict is Verdict.UNKNOWN
                and self.policy.unknown_text is UnknownText.REDACT
            )
        )
        return TextFound(
            frame,
            line.box,
            line.text,
            line.score,
            decision.verdict,
            decision.why,
            redact,
            line.others,
            line.pieces,
            spelled=decision.spelled,
        )

    def _parts(
        self, item: TextFound, line: Line, classifier: Classifier, view: Image
    ) -> list[TextFound] | None:
        """A painted line whose box holds rows of glyphs of different heights side by side
        (:func:`detect.segments`: a big probe name and a small label in one detector box,
        a label and a date), each row read on its own: the rows read as sure clinical
        labels that account for their ink and hold no name are kept, the rest of the box
        painted as the whole was. An unknown line is cut so only when no reading of it
        identifies or holds a name (a row that identifies makes the whole line
        identifying); an identifying line only when a painted row identifies on its own
        (the identifier lies where the paint goes). None when the line stands whole."""
        box = line.box
        read = getattr(self.engine, "read", None)
        if (
            read is None
            or not item.redacted
            or self.policy.redact_all
            or item.verdict is Verdict.CLINICAL
            or box.w < _PARTS_WIDE * box.h
        ):
            return None
        area, crop, strokes = _local_ink(view, box)
        cut = segments(strokes, box.shifted(-area.x, -area.y), area.w)
        if len(cut) < 2:
            return None
        fused, factor = fused_view(crop, strokes), upscale_factor(*view.shape[:2])
        if factor > 1:  # read as the frame was first read: small frames enlarged
            fused = resize(fused, (area.w * factor, area.h * factor))
        boxes = [part.enlarged(factor) for part, _, _ in cut]
        lines = read(fused, boxes)
        verdicts = [classifier.decide(found.text) for found in lines]
        # an identifying row with a wide gap in it: a label beside a date ('R  05/16/2022')
        cut, lines, verdicts = self._wide_gaps(
            cut, lines, verdicts, strokes, fused, factor, classifier
        )
        boxes = [part.enlarged(factor) for part, _, _ in cut]
        read_as = [found.text for found in lines]  # the readings, before any spelling
        # a row read as neither, spelled as the recognizer supports (J.12-5: L.12-5)
        for k, text in self._spell_parts(fused, boxes, verdicts, classifier).items():
            why = f"clinical label (spelling the recognizer supports: {text})"
            verdicts[k] = Decision(Verdict.CLINICAL, why, spelled=True)
            lines[k] = replace(lines[k], text=text)
        identifying = [v for v in verdicts if v.verdict is Verdict.IDENTIFYING]
        if item.verdict is Verdict.UNKNOWN and identifying:  # a part identifies: the line does
            item = replace(item, verdict=Verdict.IDENTIFYING, why=f"a part {identifying[0].why}")
        elif item.verdict is Verdict.UNKNOWN and not _no_name(*_readings(item, line), classifier):
            return None
        kept: dict[int, TextFound] = {}  # by part
        for k, ((_, keep, pieces), found, verdict) in enumerate(
            zip(cut, lines, verdicts, strict=True)
        ):
            sure = found.score >= _SURE and verdict.verdict is Verdict.CLINICAL
            if (
                sure
                and len(_ALNUM.findall(found.text)) + 1 >= pieces
                and not reads_as_name(found.text)
                and not reads_as_name(read_as[k])
                and not _joins_identifier(read_as, k, classifier)
                and _set_apart(strokes, keep)
                and not _lone_small(found.text)
            ):
                why = f"{verdict.why} (read as a row of its own)"
                label = TextFound(
                    item.frame,
                    keep.shifted(area.x, area.y),
                    found.text,
                    found.score,
                    Verdict.CLINICAL,
                    why,
                    False,
                    spelled=verdict.spelled,
                )
                kept[k] = label
        if not kept:
            return [item] if identifying else None
        painted = [v for k, v in enumerate(verdicts) if k not in kept]
        if item.verdict is Verdict.IDENTIFYING and not any(
            v.verdict is Verdict.IDENTIFYING for v in painted
        ):
            return None
        labels = list(kept.values())
        paint = _around_all(box, [k.box for k in labels], self.policy.margin)
        return labels + [replace(item, box=b, span=box.w) for b in paint]

    def _wide_gaps(
        self,
        cut: list[tuple[Box, Box, int]],
        lines: list[Line],
        verdicts: list[Decision],
        strokes: NDArray[np.bool_],
        image: Image,
        factor: int,
        classifier: Classifier,
    ) -> tuple[list[tuple[Box, Box, int]], list[Line], list[Decision]]:
        """Rows (of :meth:`_parts`) read as identifying whose glyphs leave a gap of half
        their height or more (:func:`_widest_gap`), cut there and each side read on its own;
        kept cut only where a side reads as a sure clinical label (a laterality marker
        beside a date, of about its height, in one row). Which sides are kept is for the
        rules on rows: a side that makes an identifier with the other is not."""
        splits: dict[int, list[tuple[Box, Box, int]]] = {}
        for k, ((read_box, keep, _), verdict) in enumerate(zip(cut, verdicts, strict=True)):
            if verdict.verdict is not Verdict.IDENTIFYING:
                continue
            gap = _widest_gap(strokes, keep)
            if gap is not None:
                splits[k] = _cut_at(read_box, keep, gap, strokes)
        if not splits:
            return cut, lines, verdicts
        halves = [half for k in splits for half in splits[k]]
        read = self.engine.read(image, [b.enlarged(factor) for b, _, _ in halves])
        out_cut: list[tuple[Box, Box, int]] = []
        out_lines: list[Line] = []
        out_verdicts: list[Decision] = []
        by_half = iter(zip(halves, read, strict=True))
        for k, part in enumerate(cut):
            if k not in splits:
                out_cut.append(part)
                out_lines.append(lines[k])
                out_verdicts.append(verdicts[k])
                continue
            pair = [next(by_half), next(by_half)]
            decided = [classifier.decide(found.text) for _, found in pair]
            if not any(
                found.score >= _SURE and d.verdict is Verdict.CLINICAL
                for (_, found), d in zip(pair, decided, strict=True)
            ):
                out_cut.append(part)
                out_lines.append(lines[k])
                out_verdicts.append(verdicts[k])
                continue
            out_cut += [half for half, _ in pair]
            out_lines += [found for _, found in pair]
            out_verdicts += decided
        return out_cut, out_lines, out_verdicts

    def _spell_parts(
        self, image: Image, boxes: list[Box], verdicts: list[Decision], classifier: Classifier
    ) -> dict[int, str]:
        """The clinical spellings (:class:`lexicon.Speller`) of the rows read as neither
        identifying nor clinical, by row: weighed on the recognizer's output for each, as
        lines are (:func:`detect.read_boxes`)."""
        doubt = [k for k, v in enumerate(verdicts) if v.verdict is Verdict.UNKNOWN]
        line_probs = getattr(self.engine, "line_probs", None)
        speller = self._speller(classifier)
        if not doubt or line_probs is None or speller is None:
            return {}
        charset, per_box = line_probs(image, [boxes[k] for k in doubt])
        spelled = zip(doubt, spelled_boxes(speller, charset, per_box), strict=True)
        return {k: text for k, text in spelled if text}

    def _split(
        self, item: TextFound, line: Line, classifier: Classifier, view: Image | None = None
    ) -> list[TextFound] | None:
        """A line painted as neither identifying nor clinical whose reading within its row of
        glyphs (``Line.tight``: the box narrowed left and right, above and below) is a sure
        clinical label that accounts for every piece of ink there: that part kept, the rest
        of the box painted as the whole was (the detector and the growing over cut strokes
        took in speckle and edges, read as '12 cm wewh"'). Never where any reading of the
        line identifies or holds a name, nor where (``view`` given) glyph-high ink lies right
        beside the row (:func:`_set_apart`: the row is part of a word). None when the line
        stands as it is."""
        if (
            line.tight is None
            or item.verdict is not Verdict.UNKNOWN
            or not item.redacted
            or self.policy.redact_all
        ):
            return None
        box, text, score, pieces = line.tight
        decision = classifier.decide(text)
        spelled = line.tight_spelled
        if (
            decision.verdict is not Verdict.CLINICAL
            and spelled
            and classifier.decide(spelled).verdict is Verdict.CLINICAL
        ):  # the recognizer supports a clinical spelling of it (lexicon.Speller)
            why = f"clinical label (spelling the recognizer supports: {spelled})"
            text, decision = spelled, Decision(Verdict.CLINICAL, why, spelled=True)
        if score < _SURE or decision.verdict is not Verdict.CLINICAL:
            return None
        if len(_ALNUM.findall(text)) + 1 < pieces:
            return None  # ink the reading did not account for: it may be anything
        if not _no_name(*_readings(item, line), classifier):
            return None  # a name read is not overruled by a reading that is a label
        if view is not None:  # a row of glyphs cut from a word is no label (KREPA: PA)
            area, _, strokes = _local_ink(view, line.box)
            if not _set_apart(strokes, box.shifted(-area.x, -area.y)):
                return None
        why = f"{decision.why} (read within its glyphs)"
        label = TextFound(
            item.frame, box, text, score, decision.verdict, why, False, spelled=decision.spelled
        )
        paint = _around(line.box, box, self.policy.margin)
        return [label] + [replace(item, box=b, span=line.box.w) for b in paint]

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
        changed = list(painted)  # every box painted so far (with its margin)
        # Read again where paint went (the rest of every frame is the pixels just read, and
        # nothing read there identified); paint what shows; twice at most.
        for attempt in range(3 if painted else 0):
            again = self._reread(
                ds, pixels, classifier, report.stats, painted, report.found, changed
            )
            still = [f for f in again if f.verdict is Verdict.IDENTIFYING]
            more = [f for f in again if f.redacted]
            if not more:
                break
            if attempt == 2:  # a third round: paint what it found and stop there; only
                # identifying text refuses the file (unknown text is painted, not read again)
                report.found.extend(more)
                self._paint(pixels, [(f.frame, f.box) for f in more], fill)
                break
            report.found.extend(more)
            self._paint(pixels, [(f.frame, f.box) for f in more], fill)
            painted = [(f.frame, f.box.grow(self.policy.margin, *_size(pixels))) for f in more]
            changed += painted
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
        known: list[TextFound],
        changed: list[tuple[int, Box]],
    ) -> list[TextFound]:
        """Read the surroundings of painted boxes (frame -1: every frame) once more: the
        paint may have cut a line in two, or left a character outside it. The surroundings
        of one frame are detected together (stacked in one image); a box where a kept line
        was read, away from the paint, keeps that reading. Consecutive frames painted alike
        (a banner painted in every frame of a cine) are read together: their first and last
        frames, every ``keyframe_interval``-th, and the pixels that stay put over the run
        (what was static text is there; moving anatomy is not). ``changed``: every box
        painted so far, this round's included."""
        started = time.perf_counter()
        views = display(ds, pixels)
        count, rows, cols = int(views.shape[0]), int(views.shape[1]), int(views.shape[2])
        factor = upscale_factor(rows, cols)
        by_frame: dict[int, list[Box]] = {}
        by_paint: dict[int, list[Box]] = {}
        for frame, box in painted:
            side, up = max(8, int(1.5 * box.h)), max(8, box.h // 2)
            around = Box(box.x - side, box.y - up, box.w + 2 * side, box.h + 2 * up)
            around = _clip(around, cols, rows)
            for f in range(count) if frame < 0 else (frame,):
                by_frame.setdefault(f, []).append(around)
                by_paint.setdefault(f, []).append(box)
        for boxes in (*by_frame.values(), *by_paint.values()):
            boxes.sort(key=lambda b: (b.y, b.x, b.h, b.w))
        kept: dict[int, list[TextFound]] = {}
        for item in known:
            if not item.redacted:
                kept.setdefault(item.frame, []).append(item)
        cache: dict[bytes, list[Line]] = {}
        found: list[TextFound] = []
        for run in _runs(by_frame):
            regions = _union_all(by_frame[run[0]])
            first = views[run[0]]
            images = [(first, kept.get(run[0], []))]
            images += [(views[f], []) for f in _samples(run, self.policy.keyframe_interval)]
            if len(run) > 1:  # the pixels that stay put over the run: what was static text
                stack = views[run[0] : run[-1] + 1]
                spread = stack.max(axis=0).astype(np.int16) - stack.min(axis=0)
                if spread.ndim == 3:
                    spread = spread.max(axis=2)
                still_mask = spread <= (8 if pixels.lossy else 2)
                mask = still_mask[..., None] if first.ndim == 3 else still_mask
                images.append((np.where(mask, first, 0).astype(np.uint8), []))
            lines: list[Line] = []
            for image, known_here in images:
                crops = [image[r.y : r.y + r.h, r.x : r.x + r.w] for r in regions]
                digest = hashlib.blake2b(digest_size=16)
                for region, crop in zip(regions, crops, strict=True):
                    digest.update(repr(region).encode())
                    digest.update(np.ascontiguousarray(crop).tobytes())
                for item in known_here:
                    digest.update(repr((item.box, item.text, item.others)).encode())
                key = digest.digest()
                if key in cache:
                    stats.reused += 1
                else:
                    touched = [b for f, b in changed if f in (-1, run[0])]
                    cache[key] = self._read_regions(
                        regions, crops, by_paint[run[0]], known_here, stats, factor, touched
                    )
                lines.extend(cache[key])
            for frame in run:
                labels = tuple(kept.get(frame, []))
                found.extend(
                    self._judge(frame, lines, classifier, (cols, rows), views[frame], labels)
                )
        stats.ocr_seconds += time.perf_counter() - started
        return found

    def _read_regions(
        self,
        regions: list[Box],
        crops: list[Any],
        paint: list[Box],
        kept: list[TextFound],
        stats: ScanStats,
        factor: int,
        touched: list[Box],
    ) -> list[Line]:
        """Detect on the crops stacked with black gaps (enlarged as their frame was on the
        first read), map boxes back, read the new ones (a box in the place of a kept line,
        or whose unpainted part lies inside one, keeps that line's reading)."""
        gap = 24
        width = max(c.shape[1] for c in crops)
        height = sum(c.shape[0] for c in crops) + gap * (len(crops) - 1)
        mosaic = np.zeros((height, width, *crops[0].shape[2:]), np.uint8)
        tops = []
        y = 0
        for crop in crops:
            mosaic[y : y + crop.shape[0], : crop.shape[1]] = crop
            tops.append(y)
            y += crop.shape[0] + gap
        found = find_text(self.engine, mosaic, self.passes, factor=factor)
        stats.detections += found.detections
        placed: list[tuple[Box, Box]] = []  # (as found, upscaled; in the frame)
        for work_box in found.boxes:
            box = found.to_image(work_box)  # in the mosaic
            k = max(
                range(len(crops)),
                key=lambda n: box.overlap(Box(0, tops[n], crops[n].shape[1], crops[n].shape[0])),
            )
            inside = _clip(box.shifted(0, -tops[k]), crops[k].shape[1], crops[k].shape[0])
            if inside.w > 0 and inside.h > 0:
                placed.append((work_box, inside.shifted(regions[k].x, regions[k].y)))
        lines: list[Line] = []
        unread: list[tuple[Box, Box]] = []
        for work_box, in_frame in placed:
            bare = _unpainted(in_frame, touched) if kept else None
            same = next(
                (f for f in kept if _same_place(f.box, in_frame, paint) or _within(bare, f.box)),
                None,
            )
            if same is not None:
                reading = Line(in_frame, same.text, same.score, 0, same.others, same.pieces)
                lines.append(reading)
            else:
                unread.append((work_box, in_frame))
        read = read_boxes(found, self.engine, [w for w, _ in unread])
        lines.extend(
            replace(line, box=in_frame) for (_, in_frame), line in zip(unread, read, strict=True)
        )
        return lines

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


def _row_paint(painted: list[TextFound]) -> list[Box]:
    """Where an identifying row of pieces is painted: each piece (identifying now, so
    painted a line height further along the row), and the gaps between them at the height
    of the pieces read as text; pieces where nothing was read (a line the detector cut
    where it crosses anatomy) within half that height above and below. Not the rectangle
    around them all: a piece grown tall over speckle would paint the labels above and
    below the row."""
    pieces = sorted(painted, key=lambda f: f.box.x)
    read = [f.box for f in pieces if f.text] or [f.box for f in pieces]
    top, bottom = min(b.y for b in read), max(b.y + b.h for b in read)
    slack = (bottom - top) // 2
    boxes: list[Box] = []
    for f in pieces:
        box = f.box
        if not f.text:
            y0, y1 = max(box.y, top - slack), min(box.y + box.h, bottom + slack)
            box = Box(box.x, y0, box.w, max(1, y1 - y0)) if y1 > y0 else box
        boxes.append(box)
    for a, b in itertools.pairwise(pieces):
        left, right = a.box.x + a.box.w, b.box.x
        if right > left:
            boxes.append(Box(left, top, right - left, bottom - top))
    return boxes or [read[0]]


def _joins_identifier(texts: list[str], k: int, classifier: Classifier) -> bool:
    """Part ``k``'s reading makes an identifier with its neighbours' that they do not make
    without it ('145 PORTAL' + 'DR': a street address; a title before a name)."""
    before, after = texts[max(0, k - 1) : k], texts[k + 1 : k + 2]
    for left, right in ((before, []), ([], after), (before, after)):
        if not left and not right:
            continue
        joined = " ".join([*left, texts[k], *right])
        if classifier.decide(joined).verdict is not Verdict.IDENTIFYING:
            continue
        rest = " ".join([*left, *right])
        if classifier.decide(rest).verdict is not Verdict.IDENTIFYING:
            return True
    return False


def _widest_gap(strokes: NDArray[np.bool_], keep: Box) -> tuple[int, int] | None:
    """The widest gap between the glyphs of the row in ``keep`` (pieces 40% of the glyphs'
    height or more, in their band), as its first and last-plus-one columns, where it is
    half that height wide or more; else None."""
    row = glyph_row(strokes, keep)
    if row.glyphs < 2:
        return None
    band = row.end - row.top
    pieces = ink_pieces(np.ascontiguousarray(strokes[row.top : row.end, keep.x : keep.x + keep.w]))
    tall = sorted(
        (int(x), int(x + w)) for x, _, w, h, _ in pieces if h >= max(3, GLYPH_SHARE * band)
    )
    best: tuple[int, int] | None = None
    reach = tall[0][1] if tall else 0  # the right end of the glyphs so far
    for x0, x1 in tall[1:]:
        wide = x0 - reach >= max(3, band / 2)
        if wide and (best is None or x0 - reach > best[1] - best[0]):
            best = (keep.x + reach, keep.x + x0)
        reach = max(reach, x1)
    return best


def _cut_at(
    read: Box, keep: Box, gap: tuple[int, int], strokes: NDArray[np.bool_]
) -> list[tuple[Box, Box, int]]:
    """A row (its box to read, its box to keep) cut in the middle of ``gap``: each side's
    boxes and the pieces of ink in its kept box that a reading must account for (40% of the
    row's glyph height or more)."""
    row = glyph_row(strokes, keep)
    least = max(3, GLYPH_SHARE * (row.end - row.top))
    middle = (gap[0] + gap[1]) // 2
    out = []
    for x0, x1 in ((read.x, middle), (middle, read.x + read.w)):
        k0, k1 = max(x0, keep.x), min(x1, keep.x + keep.w)
        side = Box(k0, keep.y, k1 - k0, keep.h)
        region = strokes[side.y : side.y + side.h, side.x : side.x + side.w]
        pieces = ink_pieces(np.ascontiguousarray(region))
        count = int((pieces[:, 3] >= least).sum()) if len(pieces) else 0
        out.append((Box(x0, read.y, x1 - x0, read.h), side, count))
    return out


def _lone_small(text: str) -> bool:
    """One lower-case letter alone: cut from a row, the end of a word (the y of Sally, apart
    from the rest in a wide font), not a marker (markers are capitals: R, L, A, P)."""
    letters = _ALNUM.findall(text)
    return len(letters) == 1 and letters[0].islower()


def _set_apart(strokes: NDArray[np.bool_], keep: Box) -> bool:
    """A row of glyphs cut from a box (``keep``: the box kept for it, in ``strokes``'
    coordinates) stands apart from the ink beside it: no piece reaching 40% of its glyphs'
    height or more into its band (an ascender beside a y) and not wholly in the kept box
    reaches into that box or lies within half that height of its glyphs. A row cut from a
    word is no label of its own (the surname PREI cut into PRE and I; KREPA read as PA within
    its glyphs, E reaching into its box; the y of Sally)."""
    row = glyph_row(strokes, keep)
    row = row if row.glyphs else ink_row(strokes, keep)  # letters run together: tall pieces
    top, bottom = (row.top, row.end) if row.glyphs else (keep.y, keep.y + keep.h)
    band = bottom - top
    gap = max(3, band // 2)
    pieces = ink_pieces(strokes)
    if not len(pieces):
        return True
    x, y, w, h = pieces[:, 0], pieces[:, 1], pieces[:, 2], pieces[:, 3]
    inside = np.minimum(y + h, bottom) - np.maximum(y, top)
    tall = inside >= max(3, GLYPH_SHARE * band)  # a glyph reaching well into the band
    left, right = keep.x, keep.x + keep.w
    own = tall & (x >= left) & (x + w <= right)
    if not own.any():
        return True
    first, last = int(x[own].min()), int((x + w)[own].max())  # the row's glyphs
    others = tall & ~own
    crosses = others & (x < right) & (x + w > left)  # partly in the kept box
    near = others & (x + w > first - gap) & (x < last + gap)
    return not (crosses | near).any()


def _around_all(whole: Box, parts: list[Box], margin: int) -> list[Box]:
    """``whole`` but ``parts`` (inside it, side by side), as boxes that, painted with
    ``margin``, reach the edges of each part and not into it: beside the parts the box's
    full height, above and below each part its width. A strip no wider than ``margin`` at
    an edge of ``whole`` is still painted (1 px wide), and so is a gap between two parts
    too narrow to clear both (1 px in its middle)."""
    parts = sorted(parts, key=lambda b: b.x)
    end_x, end_y = whole.x + whole.w, whole.y + whole.h
    boxes = []
    first, last = parts[0], parts[-1]
    if first.x > whole.x:
        boxes.append(Box(whole.x, whole.y, max(1, first.x - margin - whole.x), whole.h))
    for a, b in itertools.pairwise(parts):
        gap_start, gap_end = a.x + a.w, b.x
        if gap_end > gap_start:
            start, stop = gap_start + margin, gap_end - margin
            if stop > start:
                boxes.append(Box(start, whole.y, stop - start, whole.h))
            else:
                boxes.append(Box((gap_start + gap_end) // 2, whole.y, 1, whole.h))
    if end_x > last.x + last.w:
        start = min(last.x + last.w + margin, end_x - 1)
        boxes.append(Box(start, whole.y, end_x - start, whole.h))
    for part in parts:
        if part.y > whole.y:
            boxes.append(Box(part.x, whole.y, part.w, max(1, part.y - margin - whole.y)))
        if end_y > part.y + part.h:
            start = min(part.y + part.h + margin, end_y - 1)
            boxes.append(Box(part.x, start, part.w, end_y - start))
    return boxes


def _around(whole: Box, part: Box, margin: int) -> list[Box]:
    """``whole`` but ``part`` (inside it): :func:`_around_all` for one part."""
    return _around_all(whole, [part], margin)


def _off_labels(
    box: Box, labels: list[Box], view: Image, margin: int, descends: bool = True
) -> list[Box]:
    """``box`` (to be painted, with ``margin``) trimmed, over the columns of a kept label on
    the row above or below whose box it grazes (detector boxes are padded, and grown over
    speckle), so that its paint stays off the label's glyphs. The paint still covers the
    painted line's glyph band in ``view`` with room for accents above and descenders below;
    below, the room gives way to the label only where the line's reading has no descending
    character (``descends`` False) and the label's columns show no ink between the two rows
    (a faint tail the ink finder misses is still painted when the reading has its letter).
    It reaches no further than ``margin`` past the label's glyphs: the rows trimmed off are the
    label's own and a strip too low for a glyph, in the label's columns only (where the
    re-read after painting keeps the label's reading). Where the painted line's glyphs are
    not made out, the box stands whole (the label is lost)."""
    end = box.x + box.w
    cuts: list[tuple[int, int, int, int]] = []  # columns over a label, and the rows painted
    for label in labels:
        if label.x >= end or label.x + label.w <= box.x:
            continue
        shared = min(label.y + label.h, box.y + box.h) - max(label.y, box.y)
        if shared <= 0 or shared > _GRAZE * min(label.h, box.h):
            continue
        area, _, strokes = _local_ink(view, box.union(label))
        own, theirs = box.shifted(-area.x, -area.y), label.shifted(-area.x, -area.y)
        painted = glyph_row(strokes, own)
        outside = strokes.copy()  # the label's glyphs as seen outside the painted box
        outside[own.y : own.y + own.h, own.x : own.x + own.w] = False
        # a sure label's letters run together in small text: its tall ink pieces stand in
        kept = glyph_row(outside, theirs)
        kept = kept if kept.glyphs else ink_row(outside, theirs)
        if painted.glyphs < 2 or not kept.glyphs:
            return [box]  # the painted line's glyphs are not made out: no trimming at all
        ink_top, ink_end = _banded(painted.top, painted.end)
        top, bottom = box.y, box.y + box.h
        x0, x1 = max(box.x, label.x), min(end, label.x + label.w)
        columns = slice(x0 - area.x, x1 - area.x)
        if label.y < box.y:  # the label above: the paint starts below its glyphs
            top = max(top, area.y + min(math.floor(ink_top), kept.end + margin))
            strip = (box.y, top)
        else:  # below: the paint ends above them
            clear = not descends and not strokes[painted.end : kept.top, columns].any()
            room = painted.end if clear else ink_end
            bottom = min(bottom, area.y + max(math.ceil(room), kept.top - margin))
            strip = (bottom, box.y + box.h)
        trimmed = strokes[strip[0] - area.y : strip[1] - area.y, x0 - area.x : x1 - area.x]
        if strip[1] - strip[0] > margin + 1 and trimmed.any():
            return [box]  # ink in more rows than a margin's: it may be a row of text
        cuts.append((x0, x1, top, bottom))
    if not cuts:
        return [box]
    edges = sorted({box.x, end, *(c[0] for c in cuts), *(c[1] for c in cuts)})
    pieces: list[Box] = []
    for x0, x1 in itertools.pairwise(edges):
        top, bottom = box.y, box.y + box.h
        for c0, c1, c_top, c_bottom in cuts:
            if c0 <= x0 and x1 <= c1:
                top, bottom = max(top, c_top), min(bottom, c_bottom)
        if bottom <= top:
            return [box]
        last = pieces[-1] if pieces else None
        if last is not None and (last.y, last.h) == (top, bottom - top):
            pieces[-1] = Box(last.x, top, x1 - last.x, bottom - top)
        else:
            pieces.append(Box(x0, top, x1 - x0, bottom - top))
    return pieces


# characters that reach below the baseline in common fonts (J and Q in some)
_DESCENDERS = frozenset("gjpqyJQ,;()[]{}|@$_µ")


def _descends(text: str) -> bool:
    """The reading may reach below its row's glyph band: a descending character in it, or
    nothing read (unknown, so assumed)."""
    return not text.strip() or any(ch in _DESCENDERS for ch in text)


def _read_whole(
    items: list[TextFound], view: Image, earlier: tuple[TextFound, ...] = ()
) -> list[TextFound]:
    """Lines to be painted as unknown text that are a worse reading of a kept clinical
    label's ink: the passes find one line twice, in boxes padded differently, and read one
    worse ('GAWRK MRV' in a box inside that of 'LIVER TRV', 'ERS 28' beside 'fPS 28'). Kept
    with it when the line's box lies mostly (``_WHOLE_SHARE``) in the label's, every piece
    of ink in it (3 px high or more) lies in the label's box, there are 2 such pieces at
    least (ink too faint to be seen does not pass for none) and no more than the label's
    characters and one, and its reading is no longer than the label's by more than one
    character. Labels are those read as such (now, or ``earlier``: kept in an earlier
    read), not lines kept as too short to identify nor kept by this rule. A line so kept
    carries the label's reading, not its own (reports show clinical text unmasked). Lines with an
    identifying reading, or whose verdict is not unknown, stand as they are."""
    labels = _read_labels((*earlier, *items))
    if not labels:
        return items
    out = []
    for item in items:
        if item.verdict is Verdict.UNKNOWN and item.redacted:
            read = len(_ALNUM.findall(item.text))
            for label in labels:
                chars = len(_ALNUM.findall(label.text))
                if (
                    item.box.overlap(label.box) >= _WHOLE_SHARE * item.box.area
                    and read <= chars + 1
                    and _ink_inside(item.box, label.box, view, chars + 1)
                ):
                    # it stands for the label: its own reading (which matched nothing, and
                    # is kept out of reports as clinical text would not be) is dropped
                    item = replace(
                        item,
                        text=label.text,
                        score=label.score,
                        verdict=Verdict.CLINICAL,
                        why=_READ_WHOLE,
                        redacted=False,
                        others=(),
                    )
                    break
        out.append(item)
    return out


def _read_labels(found: tuple[TextFound, ...]) -> list[TextFound]:
    """The lines of ``found`` kept as read as clinical labels: not those kept as too short to
    identify, nor for the label whose box they lie in (:func:`_read_whole`)."""
    return [
        f
        for f in found
        if f.verdict is Verdict.CLINICAL
        and not f.redacted
        and _ALNUM.search(f.text)
        and f.why not in (_TOO_SHORT, _READ_WHOLE)
    ]


def _around_kept(
    items: list[TextFound],
    classifier: Classifier,
    margin: int,
    earlier: tuple[TextFound, ...] = (),
    view: Image | None = None,
) -> list[TextFound]:
    """Lines to be painted as unknown text over a kept clinical label, painted around it
    instead, where no reading of the line identifies and none read at ``_SECOND_LOW`` or
    more holds a name:
    - around the label's box, where the line's reading is the label's and a character or two
      besides and the label's box lies mostly (``_WHOLE_SHARE``) in the line's (a second
      box over a big ``R`` that took in a bright band of speckle below it, read ``T R``): the
      label's box, read surely as the label alone, is where its pixels stay;
    - around the label's glyphs, where ``view`` (the frame as read) shows them apart from
      every other piece of ink, no more pieces than twice the label's characters and one,
      and the label was read at ``_SURE_LABEL`` or more (twin boxes over ``LIVER TRV`` read
      as speckle and letters, ``SL TVFR TRV``, or unreadable).
    The rest of the line's box is painted as the whole would have been. Labels are those read
    as such now, or ``earlier`` (kept in an earlier read: the re-read after painting finds
    such boxes)."""
    labels = _read_labels((*earlier, *items))
    if not labels:
        return items
    out: list[TextFound] = []
    for item in items:
        keep: Box | None = None
        near = [f for f in labels if item.box.overlap(f.box)]
        if near and item.verdict is Verdict.UNKNOWN and item.redacted:
            readings = [item.text] + [t for t, _ in item.others]
            surer = [t for t, p in item.others if p >= _SECOND_LOW]
            if _no_name(readings, [item.text, *surer], classifier):
                label = next((f for f in near if _holds_label(item, f)), None)
                keep = label.box if label is not None else None
                if keep is None and view is not None:
                    for other in near:
                        if (keep := _glyphs_apart(item.box, other, view)) is not None:
                            break
        if keep is None:
            out.append(item)
            continue
        box, theirs = item.box, keep
        x0, y0 = max(box.x, theirs.x), max(box.y, theirs.y)
        x1 = min(box.x + box.w, theirs.x + theirs.w)
        y1 = min(box.y + box.h, theirs.y + theirs.h)
        out += [
            replace(item, box=b, span=box.w)
            for b in _around(box, Box(x0, y0, x1 - x0, y1 - y0), margin)
        ]
    return out


def _glyphs_apart(box: Box, label: TextFound, view: Image) -> Box | None:
    """The box of ``label``'s glyphs (1 px around them) where ``box`` reaches into it, the
    label was read at ``_SURE_LABEL`` or more, and its glyphs stand apart in ``view``: 1 to
    twice its characters + 1 pieces of ink (3 px high or more; thin strokes break: a V at cap
    10 is two pieces) reach into that box, each lying wholly in it; else None."""
    if label.score < _SURE_LABEL or not box.overlap(label.box):
        return None
    area, _, strokes = _local_ink(view, box.union(label.box))
    theirs = label.box.shifted(-area.x, -area.y)
    row = glyph_row(strokes, theirs)
    row = row if row.glyphs else ink_row(strokes, theirs)
    if not row.glyphs:
        return None
    rows, cols = strokes.shape
    x0, y0 = max(0, row.left - 1), max(0, row.top - 1)
    x1, y1 = min(cols, row.right + 1), min(rows, row.end + 1)
    glyphs = Box(x0 + area.x, y0 + area.y, x1 - x0, y1 - y0)
    if not box.overlap(glyphs):
        return None
    pieces = ink_pieces(strokes)
    x, y, w, h = pieces[:, 0], pieces[:, 1], pieces[:, 2], pieces[:, 3]
    touch = (x < x1) & (x + w > x0) & (y < y1) & (y + h > y0) & (h >= 3)
    inside = (x >= x0) & (x + w <= x1) & (y >= y0) & (y + h <= y1)
    if not 1 <= touch.sum() <= 2 * len(_ALNUM.findall(label.text)) + 1 or (touch & ~inside).any():
        return None
    return glyphs


def _readings(item: TextFound, line: Line) -> tuple[list[str], list[str]]:
    """A painted line's readings, and those that must hold no name: as decided, as first
    read, and the others (those read at ``_SECOND_LOW`` or more for names)."""
    surer = [t for t, p in line.others if p >= _SECOND_LOW]
    return [item.text, line.text] + [t for t, _ in line.others], [line.text, *surer]


def _no_name(readings: list[str], named: list[str], classifier: Classifier) -> bool:
    """None of ``readings`` identifies (unsure ones count too), and none of ``named`` holds
    a name: a line cut or painted around a label never overrules a reading that may be a
    name's."""
    if any(classifier.decide(t).verdict is Verdict.IDENTIFYING for t in readings):
        return False
    return not any(map(reads_as_name, named))


def _holds_label(item: TextFound, label: TextFound) -> bool:
    """``item``'s box holds most of ``label``'s, and its reading is the label's words and
    under :data:`_SHORTEST` characters besides."""
    if item.box.overlap(label.box) < _WHOLE_SHARE * label.box.area:
        return False
    words, theirs = item.text.split(), label.text.split()
    starts = [
        k for k in range(len(words) - len(theirs) + 1) if words[k : k + len(theirs)] == theirs
    ]
    if not starts or len(words) == len(theirs):
        return False
    rest = words[: starts[0]] + words[starts[0] + len(theirs) :]
    return len(_ALNUM.findall(" ".join(rest))) < _SHORTEST


def _ink_inside(box: Box, label: Box, view: Image, most: int) -> bool:
    """``box`` holds 2 to ``most`` pieces of ink 3 px high or more, all inside ``label``."""
    area, _, strokes = _local_ink(view, box.union(label))
    own, theirs = box.shifted(-area.x, -area.y), label.shifted(-area.x, -area.y)
    inside = np.zeros(strokes.shape, bool)
    inside[own.y : own.y + own.h, own.x : own.x + own.w] = True
    pieces = ink_pieces(strokes & inside)
    pieces = pieces[pieces[:, 3] >= 3]
    if not 2 <= len(pieces) <= most:
        return False
    x, y, w, h = pieces[:, 0], pieces[:, 1], pieces[:, 2], pieces[:, 3]
    return bool(
        (
            (x >= theirs.x)
            & (y >= theirs.y)
            & (x + w <= theirs.x + theirs.w)
            & (y + h <= theirs.y + theirs.h)
        ).all()
    )


def _local_ink(view: Image, region: Box) -> tuple[Box, Image, NDArray[np.bool_]]:
    """The ink (:func:`detect.ink`) around ``region``: the crop of ``view`` 12 px wider each
    way (the ink's local background reaches that far), where it lies, and its strokes."""
    rows, cols = int(view.shape[0]), int(view.shape[1])
    area = _clip(region.grow(12, cols, rows), cols, rows)
    crop = np.ascontiguousarray(view[area.y : area.y + area.h, area.x : area.x + area.w])
    return area, crop, ink(crop)


def _banded(top: int, end: int) -> tuple[float, float]:
    """A glyph band's rows with ``_BAND_SLACK`` of its height more above and below."""
    slack = _BAND_SLACK * (end - top)
    return top - slack, end + slack


def _beside(box: Box, others: list[TextFound]) -> bool:
    """``box`` is within two thirds of a line height of one of ``others`` on its row."""
    for other in others:
        o = other.box
        gap = max(o.x - (box.x + box.w), box.x - (o.x + o.w))
        if gap <= 0.66 * max(o.h, box.h):
            return True
    return False


def _second_opinion(
    first: Decision, line: Line, classifier: Classifier, settle: bool = True
) -> Decision:
    """A reading checked against the line's second readings: identifying if any of them
    identifies; an unknown one clinical if a confident second reading is a clinical label,
    or the recognizer supports a spelling of it in clinical words (``Line.spelled``)
    (``settle`` False: never clinical; the reading replaced an unsure one)."""
    verdicts = [(classifier.decide(text), score) for text, score in line.others]
    for decision, _ in verdicts:
        if decision.verdict is Verdict.IDENTIFYING:
            return Decision(Verdict.IDENTIFYING, f"second reading {decision.why}")

    def longer_unknown(text: str) -> bool:
        """A sure second reading that is no label saw more than two characters more than
        ``text``: the engine read part of the line; the longer reading is trusted."""
        most = len(_ALNUM.findall(text)) + 2
        return any(
            decision.verdict is Verdict.UNKNOWN
            and score >= _SECOND_LOW
            and len(_ALNUM.findall(other)) > most
            for (other, score), (decision, _) in zip(line.others, verdicts, strict=True)
        )

    if first.verdict is Verdict.CLINICAL and longer_unknown(line.text):
        # a short clinical reading ('R') where another reading sees a longer unknown text
        return Decision(Verdict.UNKNOWN, "readings disagree (a longer reading is no label)")
    named = [line.text] + [t for t, p in line.others if p >= _SECOND_LOW]
    if first.verdict is not Verdict.UNKNOWN or not settle or any(map(reads_as_name, named)):
        return first  # a name read is not overruled by a reading that is a label
    spelled = line.spelled
    if (
        spelled
        and classifier.decide(spelled).verdict is Verdict.CLINICAL
        and not longer_unknown(spelled)  # more of the box read as no label: more of a name
    ):
        # the spelling is shown (a label by the file's rules, as the kept reading is)
        why = f"clinical label (spelling the recognizer supports: {spelled})"
        return Decision(Verdict.CLINICAL, why, spelled=True)
    length = len(_ALNUM.findall(line.text))
    sure: dict[str, int] = {}  # sure clinical second readings, by their characters
    for (text, _), (decision, score) in zip(line.others, verdicts, strict=True):
        if decision.verdict is not Verdict.CLINICAL or score < _SURE_SECOND:
            continue
        if score < _SURE and not _letters_within(line.text, text):
            continue  # less sure: only where it reads every letter read first (SA as SAG)
        # a clinical second reading that saw as much as the first (not a piece of it)
        if len(_ALNUM.findall(text)) >= length:
            return Decision(Verdict.CLINICAL, "clinical label (second reading)")
        if score > line.score and score >= _AGREE:
            chars = "".join(_ALNUM.findall(text)).upper()
            sure[chars] = sure.get(chars, 0) + 1
    # ...or two surer ones that agree, where the first saw one character more at an end
    # ('PABDOMEN' where both read 'ABDOMEN': speckle the box took in), in a box with no
    # more pieces of ink than they read and two (one character identifies no one, and two
    # readings are rarely wrong alike)
    read = "".join(_ALNUM.findall(line.text)).upper()
    agree = [c for c, n in sure.items() if n >= 2 and len(c) >= 3 and 0 < line.pieces <= len(c) + 2]
    if any(chars in (read[1:], read[:-1]) for chars in agree):
        return Decision(Verdict.CLINICAL, "clinical label (two second readings agree)")
    return first


def _letters_within(first: str, second: str) -> bool:
    """``first`` has letters, each of them in ``second`` in order (case aside): the second
    reading adds to the first rather than reading its letters otherwise (a name's O read as
    0); a first reading of digits alone (a piece of an ID) is never so vouched for."""
    letters = re.sub(r"[^A-Z]", "", first.upper())
    rest = iter(re.sub(r"[^A-Z]", "", second.upper()))
    return bool(letters) and all(letter in rest for letter in letters)


def _size(pixels: Pixels) -> tuple[int, int]:
    """(columns, rows) of the frames."""
    return int(pixels.array.shape[2]), int(pixels.array.shape[1])


def _clip(box: Box, cols: int, rows: int) -> Box:
    x0, y0 = max(0, box.x), max(0, box.y)
    x1, y1 = min(cols, box.x + box.w), min(rows, box.y + box.h)
    return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _runs(by_frame: dict[int, list[Box]]) -> list[list[int]]:
    """Consecutive frames painted alike (the same boxes), in order."""
    runs: list[list[int]] = []
    for frame in sorted(by_frame):
        if runs and runs[-1][-1] == frame - 1 and by_frame[runs[-1][-1]] == by_frame[frame]:
            runs[-1].append(frame)
        else:
            runs.append([frame])
    return runs


def _samples(run: list[int], interval: int) -> list[int]:
    """Frames of a run read in full besides its first: every ``interval``-th and the last."""
    picked = run[interval::interval] + run[-1:]
    return [f for f in dict.fromkeys(picked) if f != run[0]]


def _same_place(box: Box, other: Box, paint: list[Box]) -> bool:
    """``other`` is where ``box`` was read (most of each lies in the other) and no paint
    touches it: its pixels, and so its reading, are unchanged."""
    shared = box.overlap(other)
    if shared < 0.8 * max(box.area, other.area, 1):
        return False
    grown = other.grow(2, 1 << 30, 1 << 30)
    return not any(grown.overlap(p) for p in paint)


def _reach_along(
    found: TextFound, kept: list[Box], cols: int, unread: tuple[int, int] = (0, 0)
) -> TextFound:
    """An identifying line with its box reaching ``_ALONG`` line heights further left and
    right, short of the kept lines there: where text crosses from a flat border into
    speckle the detector often stops a character or two short ('Aug-2024' of
    '04-Aug-2024'), and neither that piece nor the box's edge reads as anything alone.
    Further where the header value it matches goes on (``unread``: characters missing
    before and after it, :meth:`Classifier.unread`), at the width of the characters read,
    a third more for the separators folded away (the width of the whole line read, where
    the box is a strip of it: ``TextFound.span``)."""
    box = found.box
    along = max(2, int(_ALONG * box.h))
    width = max(found.span, box.w) / max(len(found.text.strip()), 1)
    left, right = (max(along, math.ceil(_REST * n * width)) for n in unread)
    x0, x1 = max(0, box.x - left), min(cols, box.x + box.w + right)
    for other in kept:
        shared = min(other.y + other.h, box.y + box.h) - max(other.y, box.y)
        if shared < 0.5 * min(other.h, box.h):
            continue  # not on this row (a line above or below touching it)
        if other.x + other.w <= box.x:
            x0 = max(x0, min(other.x + other.w, box.x))
        elif other.x >= box.x + box.w:
            x1 = min(x1, max(other.x, box.x + box.w))
        else:  # a kept line overlapping this one: no reach toward the side it lies on
            if other.x < box.x:
                x0 = max(x0, box.x)
            if other.x + other.w > box.x + box.w:
                x1 = min(x1, box.x + box.w)
    return replace(found, box=Box(x0, box.y, max(1, x1 - x0), box.h))


def _unpainted(box: Box, touched: list[Box]) -> Box | None:
    """The extent of what paint (``touched``) left of ``box``; None when nothing is left."""
    if box.w <= 0 or box.h <= 0:
        return None
    bare = np.ones((box.h, box.w), bool)
    for p in touched:
        x0, y0 = max(p.x - box.x, 0), max(p.y - box.y, 0)
        x1, y1 = min(p.x + p.w - box.x, box.w), min(p.y + p.h - box.y, box.h)
        if x1 > x0 and y1 > y0:
            bare[y0:y1, x0:x1] = False
    ys, xs = np.nonzero(bare)
    if not len(ys):
        return None
    x0, y0 = box.x + int(xs.min()), box.y + int(ys.min())
    return Box(x0, y0, box.x + int(xs.max()) + 1 - x0, box.y + int(ys.max()) + 1 - y0)


def _within(bare: Box | None, kept: Box) -> bool:
    """``bare`` (what paint left of a re-read box, :func:`_unpainted`) lies inside ``kept``
    but for slivers no glyph fits in (``_SLIVER`` pixels): a piece of a line already read
    whole, its unpainted pixels as they were then (the mosaic's detector cuts kept labels
    into pieces, or takes paint in, and reads them worse; along the row the slivers may be
    a sixth of the kept box's height wide). It holds nothing new to read;
    what the kept reading itself missed is no business of the re-read (it looks only near
    paint). None (all paint) is read as anything else."""
    if bare is None:
        return False
    # along the row the detector's padding varies more with the box's height: a sixth of
    # it, 7 px at most, a sliver of one glyph at most (one character identifies no one)
    along = max(_SLIVER, min(kept.h // 6, _ALONG_SLIVER))
    return (
        bare.x >= kept.x - along
        and bare.x + bare.w <= kept.x + kept.w + along
        and bare.y >= kept.y - _SLIVER
        and bare.y + bare.h <= kept.y + kept.h + _SLIVER
    )


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
