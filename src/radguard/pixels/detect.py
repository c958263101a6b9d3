"""Finding text in frames: one fused detection, ink-guided fine re-detection, cine reuse.

Burned-in text is drawn by the device with one ink value per line, on top of anatomy, speckle
or a flat border; the detector is trained on ordinary pictures of text. Passes (policy
``pixels.passes``):

- ``fused`` (default): one detection on the grey level (max over channels, at 70%) with the
  **ink** drawn over it in white. Ink is a pixel equal to a 4-neighbour (same value in every
  channel) and at least 6 levels brighter than its 9 x 9 mean, in a stroke of 3 or more such
  pixels: speckle and anatomy are rarely flat, text always is, so faint text inside speckle
  becomes bright strokes, while text on a flat border keeps its shape (the background around
  it is darker than the mean, so it is not ink).
- ``fine`` (default): clusters of ink the first detection left uncovered (small or faint text)
  are cut out, upscaled two or three times and detected again; every box is then grown over
  the ink strokes it cuts, so the whole of each glyph is inside it.
- ``base``, ``flat``, ``local``, ``chroma``, ``invert``: extra full detections on other views
  (the frame as shown; ink alone; CLAHE; colour saturation; inverted), for unusual material.

Small frames (shorter side under 400 px) are upscaled twice before detection. Boxes found by
several passes are merged. Each box is read on the fused view (faint text in speckle reads
better there); a weak read is read again on the frame as shown and the better read is kept.

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
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from radguard.pixels.engines import Box, Image, Line, OcrEngine, ctc_greedy


class Pass(enum.Enum):
    """Detection passes (policy ``pixels.passes``)."""

    FUSED = "fused"
    FINE = "fine"
    BASE = "base"
    LOCAL = "local"
    CHROMA = "chroma"
    INVERT = "invert"
    FLAT = "flat"


DEFAULT_PASSES = (Pass.FUSED, Pass.FINE)
_UPSCALE_BELOW = 400
_WEAK = 0.6  # reads below this confidence are tried again on the other view
_ONE_GLYPH = 1.3  # boxes narrower than this many heights are single glyphs, not read...
_ONE_GLYPH_HEIGHT = 24  # ...unless taller than this (pixels of the frame)
ALNUM = re.compile(r"[A-Za-z0-9]")  # a letter or digit: something was read
_STALE_PIXELS = 4  # changed ink pixels in a key frame's line box that make it read again...
_STALE_SHARE = 0.1  # ...and this share of the ink in the box at least
GLYPH_ROW = 3  # glyph-shaped ink strokes that make a box read as nothing a row of text
_ROW_GLYPHS = 3  # glyph-shaped pieces in a row that make changing ink text to read
_MAX_ROWS = 12  # rows of changing glyphs beyond which a frame is read in full...
_MAX_PAIRS = 2_000_000  # ...as when its changing ink holds this many candidate pairs
_BUSY_INK = 0.06  # share of ink pixels above which a frame is also read as shown
_TIGHT_ROOM = 0.3  # a row of glyphs' height kept above and below it when a line is narrowed
GLYPH_SHARE = 0.4  # ...and the share of it a piece of ink needs to be counted as a glyph
_SEGMENTS = 6  # rows of glyphs side by side a detector box is cut into at most...
_SEGMENT_LEAST = 8  # ...each kept box this many pixels high at least (rows of specks: none)


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
    """Luma of a colour frame (the frame itself when grey)."""
    if image.ndim == 2:
        return image
    luma = image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114
    out: Image = luma.astype(np.uint8)
    return out


def brightest(image: Image) -> Image:
    """Max over channels: coloured ink is bright in at least one of them."""
    if image.ndim == 2:
        return image
    out: Image = np.ascontiguousarray(image.max(axis=2))
    return out


def ink(image: Image, level: float = 6.0) -> NDArray[np.bool_]:
    """Pixels of flat, bright strokes: equal to a 4-neighbour (every channel), ``level`` or
    more above the local background (white top-hat, 11 x 11), with at least two such pixels
    around them, outside straight runs of 41 px or more, in a connected piece no more than
    about eight times longer than wide."""
    import cv2

    if image.ndim == 3:
        values = (
            (image[..., 0].astype(np.int32) << 16)
            | (image[..., 1].astype(np.int32) << 8)
            | image[..., 2]
        )
    else:
        values = image.astype(np.int32)
    equal = np.zeros(values.shape, bool)
    equal[1:] |= values[1:] == values[:-1]
    equal[:-1] |= values[:-1] == values[1:]
    equal[:, 1:] |= values[:, 1:] == values[:, :-1]
    equal[:, :-1] |= values[:, :-1] == values[:, 1:]
    # white top-hat: how far a pixel stands above the background left when every bright
    # structure narrower than 11 px is opened away (the flat ground around text is not ink)
    bright = np.ascontiguousarray(brightest(image))
    kernel = np.ones((11, 11), np.uint8)
    above = np.asarray(cv2.morphologyEx(bright, cv2.MORPH_TOPHAT, kernel))
    # and at least half as far above it as the brightest stroke nearby: the soft gaps and
    # fringes of bright text (anti-aliasing, lossy compression) are not ink
    nearby = np.asarray(cv2.dilate(above, np.ones((5, 5), np.uint8)))
    standing = (above >= level) & (above.astype(np.uint16) * 2 >= nearby)
    flat = (equal & standing).astype(np.uint8)
    neighbours = cv2.filter2D(flat, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    kept = ((flat > 0) & (neighbours >= 3)).astype(np.uint8)
    # long straight runs and thin bands (borders, rulers, grids, flat anatomy edges) are not
    # strokes of glyphs: runs of 41 px or more go first, then pieces far longer than wide
    across = np.asarray(cv2.morphologyEx(kept, cv2.MORPH_OPEN, np.ones((1, 41), np.uint8)))
    down = np.asarray(cv2.morphologyEx(kept, cv2.MORPH_OPEN, np.ones((41, 1), np.uint8)))
    kept = np.where((across > 0) | (down > 0), np.uint8(0), kept).astype(np.uint8)
    count, labels, table, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
    w, h = table[:, cv2.CC_STAT_WIDTH], table[:, cv2.CC_STAT_HEIGHT]
    glyph_like = (w <= 8 * h + 8) & (h <= 8 * w + 8)
    glyph_like[0] = False
    out: NDArray[np.bool_] = glyph_like[labels] if count > 1 else kept > 0
    return out


def fused_view(image: Image, strokes: NDArray[np.bool_] | None = None) -> Image:
    """The grey level at 70% with the ink strokes drawn over it in white."""
    strokes = ink(image) if strokes is None else strokes
    dimmed = (brightest(image).astype(np.uint16) * 7 // 10).astype(np.uint8)
    out: Image = np.where(strokes, np.uint8(255), dimmed).astype(np.uint8)
    return out


def pass_views(image: Image, passes: tuple[Pass, ...]) -> list[tuple[Pass, Image]]:
    """The views of ``image`` the full-frame passes detect on (chroma only where there is
    colour; ``fine`` is not a full-frame view)."""
    import cv2

    views: list[tuple[Pass, Image]] = []
    for kind in passes:
        if kind is Pass.FUSED:
            views.append((kind, fused_view(image)))
        elif kind is Pass.BASE:
            views.append((kind, image))
        elif kind is Pass.LOCAL:
            clahe = cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8))
            local: Image = np.asarray(clahe.apply(np.ascontiguousarray(_grey(image))), np.uint8)
            views.append((kind, local))
        elif kind is Pass.INVERT:
            views.append((kind, 255 - image))
        elif kind is Pass.FLAT:
            views.append((kind, np.where(ink(image), 255, 0).astype(np.uint8)))
        elif kind is Pass.CHROMA and image.ndim == 3:
            chroma = image.max(axis=2).astype(np.int16) - image.min(axis=2)
            top = int(chroma.max())
            if top >= 32:
                views.append((kind, (chroma * (255 / top)).astype(np.uint8)))
    return views


@dataclass
class Found:
    """Text boxes found in one image, not read yet, with the views to read them on."""

    boxes: list[Box]  # in ``work`` coordinates
    work: Image  # the image, upscaled by ``factor``
    fused: Image
    strokes: NDArray[np.bool_]
    factor: int
    detections: int
    busy: bool = False  # ink covers much of the frame: it does not single text out

    def to_image(self, box: Box) -> Box:
        """A box of ``work`` in the coordinates of the image given to find_text."""
        rows, cols = self.work.shape[0] // self.factor, self.work.shape[1] // self.factor
        if self.factor > 1:
            box = box.scaled(self.factor)
        return Box(box.x, box.y, min(box.w, cols - box.x), min(box.h, rows - box.y))


def upscale_factor(rows: int, cols: int) -> int:
    """How much a frame of this size is enlarged before detection (small text)."""
    return 2 if min(rows, cols) < _UPSCALE_BELOW else 1


def find_text(
    engine: OcrEngine,
    image: Image,
    passes: tuple[Pass, ...],
    upscale: bool = True,
    factor: int | None = None,
) -> Found:
    """Boxes of text lines in ``image`` by every pass (small frames upscaled first; a crop of
    a frame passes the frame's ``factor``)."""
    rows, cols = image.shape[:2]
    if factor is None:
        factor = upscale_factor(rows, cols) if upscale else 1
    work = resize(image, (cols * factor, rows * factor)) if factor > 1 else image
    strokes = ink(image)  # at the image's own scale: interpolation is never flat
    if factor > 1:
        strokes = _resize_mask(strokes, (cols * factor, rows * factor))
    fused = fused_view(work, strokes)
    found: list[Box] = []
    detections = 0
    busy = float(strokes.mean()) > _BUSY_INK
    if busy and Pass.FUSED in passes and Pass.BASE not in passes:
        passes = (*passes, Pass.BASE)  # the ink is everywhere: look at the frame as shown too
    for kind in passes:
        if kind is Pass.FINE:
            continue
        views = [(kind, fused)] if kind is Pass.FUSED else pass_views(work, (kind,))
        for _, view in views:
            found.extend(engine.detect(view))
            detections += 1
    if Pass.FINE in passes:
        extra, calls = _fine(engine, fused, strokes, found)
        found.extend(extra)
        detections += calls
    pieces = ink_pieces(strokes)
    boxes = _merge([_cover_strokes(b, pieces) for b in _merge(found)])
    # a small box no wider than tall holds one glyph at most: it identifies no one, and
    # speckle yields many of them (taller ones may hold stacked or vertical text: read)
    boxes = [b for b in boxes if b.w >= _ONE_GLYPH * b.h or b.h > _ONE_GLYPH_HEIGHT * factor]
    return Found(boxes, work, fused, strokes, factor, detections, busy)


Doubt = Callable[[str], bool]
# a clinical spelling of a line's reading that the recognizer's per-step class probabilities
# support (lexicon.Speller), or None
Spell = Callable[[NDArray[np.float32], Sequence[str], str], str | None]


def read_boxes(
    found: Found,
    engine: OcrEngine,
    boxes: list[Box] | None = None,
    doubt: Doubt | None = None,
    spell: Spell | None = None,
) -> list[Line]:
    """Read ``boxes`` (default: all found) on the fused view, a weak read again on the image
    as shown, the better kept; boxes in the coordinates of the image given to find_text.
    Lines whose reading ``doubt`` says is in doubt (neither identifying nor clinical) get a
    second reading on the other view in ``Line.others`` (as weak ones do), and ``spell``
    gives them the clinical spelling their recognizer's output supports, if any
    (``Line.spelled``)."""
    boxes = found.boxes if boxes is None else boxes
    first, other = (found.work, found.fused) if found.busy else (found.fused, found.work)
    lines = engine.read(first, boxes) if boxes else []
    weak = [k for k, line in enumerate(lines) if line.score < _WEAK]
    took = _Doubted()
    seconds = took.seconds
    kept_other: set[int] = set()  # lines whose kept reading is the other view's
    if weak:
        again = engine.read(other, [boxes[k] for k in weak])
        for k, line in zip(weak, again, strict=True):
            seconds[k] = [(lines[k].text, lines[k].score)]
            if line.score > lines[k].score:
                lines[k] = line
                kept_other.add(k)
            else:
                seconds[k] = [(line.text, line.score)]
    if doubt is not None:
        unsure = [k for k, line in enumerate(lines) if doubt(line.text)]
        if unsure:
            others = [k for k in unsure if k not in seconds]
            read = engine.read(other, [boxes[k] for k in others]) if others else []
            for k, line in zip(others, read, strict=True):
                seconds[k] = [(line.text, line.score)]
            # an engine with a second recognizer reads the lines in doubt with it too, and
            # gives its own recognizer's other likely readings, on the view whose reading was
            # kept: any that identifies makes the line identifying (clean._second_opinion)
            for view, group in (
                (first, [k for k in unsure if k not in kept_other]),
                (other, [k for k in unsure if k in kept_other]),
            ):
                if group:
                    _weigh_doubt(found, engine, view, boxes, lines, group, doubt, spell, took)
    return [
        Line(
            found.to_image(box),
            line.text,
            line.score,
            glyph_count(found.strokes, box),
            tuple(seconds.get(k, ())),
            ink_count(found.strokes, box) if k in seconds else 0,
            took.tights.get(k),
            took.spelled.get(k),
            took.tight_spelled.get(k),
        )
        for k, (box, line) in enumerate(zip(boxes, lines, strict=True))
    ]


@dataclass
class _Doubted:
    """What :func:`read_boxes` gathers for lines in doubt, by line: other readings, the
    clinical spelling, the reading within the row of glyphs and its spelling."""

    seconds: dict[int, list[tuple[str, float]]] = field(default_factory=dict)
    spelled: dict[int, str] = field(default_factory=dict)
    tights: dict[int, tuple[Box, str, float, int]] = field(default_factory=dict)
    tight_spelled: dict[int, str] = field(default_factory=dict)


def _weigh_doubt(
    found: Found,
    engine: OcrEngine,
    view: Image,
    boxes: list[Box],
    lines: list[Line],
    group: list[int],
    doubt: Doubt,
    spell: Spell | None,
    took: _Doubted,
) -> None:
    """Lines ``group`` in doubt, read on ``view`` (the one whose reading was kept): the
    engine's second recognizer and its other likely readings, the box a little wider, and
    the box narrowed to its row of glyphs, each into ``took``; and where ``spell`` is
    given, the clinical spellings the recognizer's output supports for the box (else the
    wider box) and for the row of glyphs."""
    seconds = took.seconds
    read_second = getattr(engine, "read_second", None)
    read_more = getattr(engine, "read_alternatives", None)
    second = read_second(view, [boxes[k] for k in group]) if read_second else None
    if second is not None:
        for k, line in zip(group, second, strict=True):
            seconds.setdefault(k, []).append((line.text, line.score))
    # the reader's class probabilities for the boxes, once, when a spelling is
    # asked for: its other likely readings and the spelling both weigh them
    line_probs = getattr(engine, "line_probs", None)
    weighed = (
        line_probs(view, [boxes[k] for k in group])
        if spell is not None and line_probs is not None
        else None
    )
    if read_more is not None:
        group_lines = [replace(lines[k], box=boxes[k]) for k in group]
        more = (
            read_more(view, group_lines, weighed[1])
            if weighed is not None
            else read_more(view, group_lines)
        )
        for k, alternatives in zip(group, more, strict=True):
            seconds.setdefault(k, []).extend(alternatives)
    # the box a little wider: a faint first or last letter the box cut or the
    # reader dropped ('DOMEN' of ABDOMEN) may read in full
    rows, cols = view.shape[:2]
    weigh = line_probs if spell is not None else None
    wider = [_widened(boxes[k], cols, rows) for k in group]
    widely, wide = _read_weighed(engine, view, wider, weigh)
    for k, line in zip(group, widely, strict=True):
        seconds.setdefault(k, []).append((line.text, line.score))
    # the clinical spelling the recognizer's own output for the box supports, where
    # it read a label a letter or two wrong (PIGHT FIDNEY LONG); else the wider
    # box's, on its own output: the letters the box cut off may make it a label
    # (PF 4.0 kHz)
    if spell is not None and weighed is not None and wide is not None:
        own = spelled_boxes(spell, *weighed)
        rest = [i for i, text in enumerate(own) if not text]
        charset, per_box = wide
        widest = spelled_boxes(spell, charset, [per_box[i] for i in rest])
        found_wide = dict(zip(rest, widest, strict=True))
        for i, k in enumerate(group):
            if text := own[i] or found_wide.get(i):
                took.spelled[k] = text
    # and narrowed to its row of glyphs, where speckle beside them was read too
    narrowed = [(k, *t) for k in group if (t := _tight(found.strokes, boxes[k], cols))]
    read, narrow = _read_weighed(engine, view, [b for _, b, _, _ in narrowed], weigh)
    for (k, _, b, glyphs), line in zip(narrowed, read, strict=True):
        took.tights[k] = (found.to_image(b), line.text, line.score, glyphs)
    # ...its reading there spelled too, where it is still in doubt ('me C SBCEEN
    # LONG' read 'SPCEEN LONG' within its glyphs: SPLEEN LONG)
    if spell is not None and narrow is not None:
        charset, per_box = narrow
        tight_doubt = [i for i, line in enumerate(read) if doubt(line.text)]
        probs = [per_box[i] for i in tight_doubt]
        tight_texts = spelled_boxes(spell, charset, probs)
        for i, text in zip(tight_doubt, tight_texts, strict=True):
            if text:
                took.tight_spelled[narrowed[i][0]] = text


# an engine's per-step class probabilities for boxes, with its characters (line_probs)
Weighed = tuple[Sequence[str], list[NDArray[np.float32] | None]]


def _read_weighed(
    engine: OcrEngine,
    view: Image,
    boxes: list[Box],
    line_probs: Callable[[Image, list[Box]], Weighed] | None,
) -> tuple[list[Line], Weighed | None]:
    """The lines in ``boxes`` and, where ``line_probs`` (the engine's) is given, the class
    probabilities they were read from: the readings decoded from them, one pass of the
    recognizer for both (the engine reads by CTC greedy decoding of the same batch)."""
    if line_probs is None or not boxes:
        return (engine.read(view, boxes) if boxes else []), None
    charset, per_box = line_probs(view, boxes)
    lines = [
        Line(box, *(ctc_greedy(probs, charset) if probs is not None else ("", 0.0)))
        for box, probs in zip(boxes, per_box, strict=True)
    ]
    return lines, (charset, per_box)


def spelled_boxes(
    spell: Spell, charset: Sequence[str], per_box: Sequence[NDArray[np.float32] | None]
) -> list[str | None]:
    """The clinical spelling ``spell`` finds for each box, weighed against the reading the
    box's own probabilities give (read before in another batch, the crop's padding and so
    the reading may differ: LON6 for LONG)."""
    return [
        None if probs is None else spell(probs, charset, ctc_greedy(probs, charset)[0])
        for probs in per_box
    ]


def _widened(box: Box, cols: int, rows: int) -> Box:
    """``box`` with a third of its height more on the left and right, a tenth above and
    below (clipped to the image)."""
    return box.grow(max(2, box.h // 3), cols, rows, vertical=max(1, box.h // 10))


def glyph_count(strokes: NDArray[np.bool_], box: Box) -> int:
    """Ink pieces in ``box`` shaped like the glyphs of one line: a third of the box high or
    more, not much wider than high, and most of them of one height on one baseline (the
    largest such group is counted). Text the engine cannot read still has them; speckle,
    anatomy and edges rarely line up so."""
    return glyph_row(strokes, box).glyphs


def _box_pieces(strokes: NDArray[np.bool_], box: Box) -> Pieces:
    """The connected pieces of ink in ``box`` (x, y, w, h, area; x and y in ``strokes``)."""
    pieces = ink_pieces(strokes[box.y : box.y + box.h, box.x : box.x + box.w])
    pieces[:, 0] += box.x
    pieces[:, 1] += box.y
    return pieces


def ink_count(strokes: NDArray[np.bool_], box: Box) -> int:
    """Pieces of ink 3 px high or more in ``box``, glyph-shaped or not."""
    return int((_box_pieces(strokes, box)[:, 3] >= 3).sum())


class GlyphRow(NamedTuple):
    """The glyph-shaped pieces of :func:`glyph_count`: how many, and the rows and columns
    they span in ``strokes`` (ends past the last; all 0 when there are none)."""

    glyphs: int
    top: int
    end: int
    left: int
    right: int


def glyph_row(strokes: NDArray[np.bool_], box: Box, low: int | None = None) -> GlyphRow:
    """The row of glyph-shaped ink pieces in ``box`` (see :func:`glyph_count`; ``low``: the
    least height of a glyph, a third of the box's by default)."""
    low = max(3, box.h // 3) if low is None else low
    x, y, w, h, area = _box_pieces(strokes, box).T
    return _row_of(x, y, w, h, _shaped_row(x, y, w, h, area, low, box.h))


def ink_row(strokes: NDArray[np.bool_], box: Box) -> GlyphRow:
    """Like :func:`glyph_row`, for pieces a third of ``box`` high or more (3 px at least)
    whatever their width: the letters of small text run together (PIL's bitmap font at cap
    6 inks ``ABDOMEN`` as two pieces), so no piece is glyph-shaped."""
    x, y, w, h, _ = _box_pieces(strokes, box).T
    return _row_of(x, y, w, h, (h >= max(3, box.h // 3)) & (h <= box.h))


def _row_of(x: Pieces, y: Pieces, w: Pieces, h: Pieces, chosen: NDArray[np.bool_]) -> GlyphRow:
    """The :class:`GlyphRow` the ``chosen`` pieces make (all 0 when none is)."""
    if not chosen.any():
        return GlyphRow(0, 0, 0, 0, 0)
    x, y, w, h = x[chosen], y[chosen], w[chosen], h[chosen]
    return GlyphRow(
        int(chosen.sum()), int(y.min()), int((y + h).max()), int(x.min()), int((x + w).max())
    )


def _shaped_row(
    x: Pieces, y: Pieces, w: Pieces, h: Pieces, area: Pieces, low: float, high: float
) -> NDArray[np.bool_]:
    """Which pieces are glyph-shaped (``low`` to ``high`` px high, not much wider than
    high, not hairlines) and, when two or more are, of one height on one baseline."""
    shaped: NDArray[np.bool_] = (
        (h >= low) & (h <= high) & (w <= 2 * h + 2) & (area >= np.maximum(4, h))
    )
    if shaped.sum() >= 2:
        heights, bottoms = h[shaped].astype(np.float64), (y + h)[shaped].astype(np.float64)
        size = float(np.median(heights))
        same = (np.abs(heights - size) <= 0.35 * size) & (
            np.abs(bottoms - np.median(bottoms)) <= 0.25 * size
        )
        shaped[np.flatnonzero(shaped)[~same]] = False
    return shaped


def _tight(
    strokes: NDArray[np.bool_], box: Box, cols: int, always: bool = False
) -> tuple[Box, Box, int] | None:
    """``box`` narrowed to its row of glyphs (glyph-shaped ink of one height on one
    baseline, the ink beside it in that band at least half as high: lower-case and thin
    letters, and marks such as a hyphen between them), when the box reaches a glyph's width
    further left or right (the detector, and the growing over cut strokes, take in speckle
    and edges whose reading spoils the line's). Returns the box to read (half the row's
    height around it, as a detector pads a line), the box to keep, and how many pieces of
    ink reach into the kept box that a reading must account for. The kept box has half a
    row's height each side and ``_TIGHT_ROOM`` of it above and below, less where ink lying
    mostly above or below the row reaches in (left to the paint, not cut). Pieces counted:
    ``GLYPH_SHARE`` of the row's height or more (speckle's specks are smaller than a
    label's glyphs) and marks between glyphs, and smaller ones 5 px high or more within the
    row's columns when three of them line up as a row of glyphs of their own; smaller ink
    beside the row's columns (small text or specks in the padding) is left out of the kept
    box. None when the box holds no row of them, or (unless ``always``) is no wider than
    its glyphs."""
    row = glyph_row(strokes, box)
    if row.glyphs < 2:  # glyphs under a third of the box's height (a box grown over speckle)
        row = glyph_row(strokes, box, low=3)
    if row.glyphs < 2:
        return None
    band = row.end - row.top
    left, right = row.left, row.right
    x, y, w, h, area = _box_pieces(strokes, box).T
    inside = np.minimum(y + h, row.end) - np.maximum(y, row.top)
    mark = (inside >= h) & (w >= 2 * h) & (4 * w >= band)  # a hyphen, a minus sign
    beside = ((2 * inside >= h) & (2 * h >= band)) | mark  # lower-case letters, not specks
    pieces = sorted(zip(x[beside], (x + w)[beside], mark[beside], strict=True))
    glyph_right, glyph_left = right, left  # a mark counts only between glyphs
    for x0, x1, dash in pieces:  # ink in the band, reached from the row a gap of a band at most
        if x0 <= right + band and x1 > right:
            right = int(x1)
            glyph_right = right if not dash else glyph_right
    for x0, x1, dash in reversed(pieces):
        if x1 >= left - band and x0 < left:
            left = int(x0)
            glyph_left = left if not dash else glyph_left
    left, right = glyph_left, glyph_right
    pad, room = max(2, band // 2), max(2, math.ceil(_TIGHT_ROOM * band))
    left, right = max(box.x, left - pad), min(cols, box.x + box.w, right + pad)
    if left - box.x < pad and box.x + box.w - right < pad and not always:
        return None
    read = Box(left, max(box.y, row.top - pad), right - left, 0)
    read = replace(read, h=min(box.y + box.h, row.end + pad) - read.y)
    top, end = max(box.y, row.top - room), min(box.y + box.h, row.end + room)
    across = (x < right) & (x + w > left) & (h >= 3)
    middle = 2 * y + h  # twice a piece's middle row: pieces mostly above or below the band
    inside = np.minimum(y + h, row.end) - np.maximum(y, row.top)
    foreign = across & (2 * inside < h)  # (the row's own pieces, a serif or a tail, are not)
    for k in np.flatnonzero(foreign & (middle > row.top + row.end) & (y < end)):
        end = max(row.end, min(end, int(y[k])))  # are left out of the kept box, not cut
    for k in np.flatnonzero(foreign & (middle < row.top + row.end) & (y + h > top)):
        top = min(row.top, max(top, int(y[k] + h[k])))
    own = across & ~foreign
    if own.any():  # the row's own ink stays whole in the kept box, as far as the room goes
        end = max(end, min(box.y + box.h, row.end + room, int((y + h)[own].max())))
        top = min(top, max(box.y, row.top - room, int(y[own].min())))
    touch = across & (y < end) & (y + h > top)
    glyphs = touch & ((h >= max(3.0, GLYPH_SHARE * band)) | mark)
    # ink beside the row's columns too small to count (small text, specks in the padding)
    # is left to the paint: the kept box stops short of it
    kept_left, kept_right = left, right
    after, before = touch & ~glyphs & (x >= glyph_right), touch & ~glyphs & (x + w <= glyph_left)
    if after.any():
        kept_right = max(glyph_right, int(x[after].min()))
    if before.any():
        kept_left = min(glyph_left, int((x + w)[before].max()))
    inner = touch & (x < kept_right) & (x + w > kept_left)
    glyphs &= inner
    small = inner & ~glyphs & (h >= 5)
    counted = int(glyphs.sum())
    if small.sum() >= 3:
        lined = _shaped_row(x[small], y[small], w[small], h[small], area[small], 5, band)
        counted += int(lined.sum()) if lined.sum() >= 3 else 0
    return read, Box(kept_left, top, kept_right - kept_left, end - top), counted


def segments(
    strokes: NDArray[np.bool_], box: Box, cols: int, limit: int = _SEGMENTS, depth: int = 0
) -> list[tuple[Box, Box, int]]:
    """``box`` cut into rows of glyphs of their own height side by side (a detector box
    that took in a big probe name and a small label, or a label and a date): the row of
    glyphs that most pieces make (:func:`_tight`, its box to read, to keep, and the ink to
    account for), then the same on what is left of the box to its left and right, up to
    ``limit`` rows (``depth``: cuts made so far), left to right; rows of specks (kept box
    under ``_SEGMENT_LEAST`` px high) are not rows, but their sides are cut further. Empty
    when the box holds no row of glyphs."""
    first = _tight(strokes, box, cols, always=True)
    if first is None:
        return []
    found = [first] if first[1].h >= _SEGMENT_LEAST else []  # a row of specks: its sides
    read = first[0]
    end = box.x + box.w
    for side in (
        Box(box.x, box.y, read.x - box.x, box.h),
        Box(read.x + read.w, box.y, end - read.x - read.w, box.h),
    ):
        if side.w >= 4 and len(found) < limit and depth < _SEGMENTS:
            found += segments(strokes, side, cols, limit - len(found), depth + 1)
    return sorted(found, key=lambda part: part[0].x)


def read_frame(
    engine: OcrEngine,
    image: Image,
    passes: tuple[Pass, ...],
    stats: ScanStats | None = None,
    upscale: bool = True,
    doubt: Doubt | None = None,
    factor: int | None = None,
    spell: Spell | None = None,
) -> list[Line]:
    """Every text line found in ``image`` by any pass, read once each (a weak read twice)."""
    started = time.perf_counter()
    found = find_text(engine, image, passes, upscale, factor)
    lines = read_boxes(found, engine, doubt=doubt, spell=spell)
    if stats is not None:
        stats.detections += found.detections
        stats.ocr_seconds += time.perf_counter() - started
    return lines


def _fine(
    engine: OcrEngine, fused: Image, strokes: NDArray[np.bool_], found: list[Box]
) -> tuple[list[Box], int]:
    """Detect again, upscaled, where text-sized clusters of ink lie outside every box."""
    import cv2

    rows, cols = strokes.shape
    covered = np.zeros(strokes.shape, bool)
    for b in found:
        covered[b.y : b.y + b.h, b.x : b.x + b.w] = True
    loose = strokes & ~covered
    if not loose.any():
        return [], 0
    joined = cv2.dilate(loose.astype(np.uint8), np.ones((3, 9), np.uint8))
    count, _, table, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    regions: list[Box] = []
    for label in range(1, count):
        x, y, w, h, _ = (int(v) for v in table[label])
        if not 4 <= h <= 64 or w < 6 or int(loose[y : y + h, x : x + w].sum()) < 12:
            continue
        regions.append(Box(x, y, w, h).grow(max(6, h // 2), cols, rows))
    boxes: list[Box] = []
    calls = 0
    for region in _merge(regions):
        scale = 3 if region.h < 24 else 2
        crop = fused[region.y : region.y + region.h, region.x : region.x + region.w]
        big = resize(np.ascontiguousarray(crop), (region.w * scale, region.h * scale))
        calls += 1
        for box in engine.detect(big):
            boxes.append(box.scaled(scale).shifted(region.x, region.y))
    return boxes, calls


Pieces = NDArray[np.int32]  # connected ink pieces: x, y, w, h, area per row


def ink_pieces(strokes: NDArray[np.bool_]) -> Pieces:
    """The connected pieces of ink (8-connected) as rows of x, y, w, h, area."""
    import cv2

    if not strokes.any():
        return np.zeros((0, 5), np.int32)
    _, _, table, _ = cv2.connectedComponentsWithStats(strokes.astype(np.uint8), connectivity=8)
    pieces: Pieces = np.asarray(table[1:], np.int32)
    return pieces


def _cover_strokes(box: Box, pieces: Pieces) -> Box:
    """``box`` grown over the glyph-sized ink pieces of its row that it cuts or nearly
    touches (a glyph half outside the box, or the last letters of a line the detector cut
    short), a piece at a time, up to three box heights each way; pieces mostly above or
    below the box belong to the neighbouring line and are left out."""
    if not len(pieces):
        return box
    x, y, w, h = pieces[:, 0], pieces[:, 1], pieces[:, 2], pieces[:, 3]
    height = max(box.h, 1)
    glyphs = (h <= 2 * height) & (w <= 4 * max(box.w, height))
    reach = max(2, int(0.4 * height))
    limit_left, limit_right = box.x - 3 * height, box.x + box.w + 3 * height
    grown = box
    taken = np.zeros(len(pieces), bool)
    shared = np.minimum(y + h, box.y + box.h) - np.maximum(y, box.y)
    same_row = shared >= 0.5 * h  # judged on the box as found: the row does not drift
    for _ in range(64):
        gap = np.maximum(grown.x - (x + w), x - (grown.x + grown.w))
        near = (gap <= reach) & (x >= limit_left) & (x + w <= limit_right)
        new = glyphs & same_row & near & ~taken
        if not new.any():
            break
        taken |= new
        for k in np.nonzero(new)[0]:
            grown = grown.union(Box(int(x[k]), int(y[k]), int(w[k]), int(h[k])))
    return grown


def _resize_mask(mask: NDArray[np.bool_], size: tuple[int, int]) -> NDArray[np.bool_]:
    import cv2

    out: NDArray[np.bool_] = (
        cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    )
    return out


def resize(image: Image, size: tuple[int, int]) -> Image:
    """``image`` resized to ``size`` (columns, rows), cubic."""
    import cv2

    out: Image = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), np.uint8)
    return out


def _merge(found: list[Box]) -> list[Box]:
    """Boxes of the same text (from several passes, or refined over the same strokes) become
    one: their union."""
    merged: list[Box] = []
    for box in sorted(found, key=lambda b: (b.y, b.x)):
        for k, other in enumerate(merged):
            shared = box.overlap(other)
            if shared and shared >= 0.5 * min(box.area, other.area):
                merged[k] = other.union(box)
                break
        else:
            merged.append(box)
    return merged


def read_frames(
    engine: OcrEngine,
    frames: NDArray[np.uint8],
    passes: tuple[Pass, ...],
    keyframe_interval: int = 25,
    tolerance: int = 2,
    stats: ScanStats | None = None,
    doubt: Doubt | None = None,
    spell: Spell | None = None,
) -> list[list[Line]]:
    """Text lines per frame of ``frames`` (frames, rows, cols[, 3]), reusing what can be
    (``doubt`` and ``spell``: see :func:`read_boxes`)."""
    stats = stats if stats is not None else ScanStats()
    count = int(frames.shape[0])
    stats.frames += count
    if count == 1:
        stats.full += 1
        return [read_frame(engine, frames[0], passes, stats, doubt=doubt, spell=spell)]
    grey = frames if frames.ndim == 3 else frames.max(axis=3)
    spread = grey.max(axis=0).astype(np.int16) - grey.min(axis=0)
    static = spread <= tolerance
    results: list[list[Line]] = [[] for _ in range(count)]
    static_lines: list[Line] = []
    if static.any() and not static.all():
        composite = np.where(static[..., None] if frames.ndim == 4 else static, frames[0], 0)
        static_lines = read_frame(
            engine, composite.astype(np.uint8), _masked(passes), stats, doubt=doubt, spell=spell
        )

    def read_key(k: int) -> list[Line]:
        """Frame ``k`` read in full as a key frame; its lines (its result set)."""
        lines = read_frame(engine, frames[k], passes, stats, doubt=doubt, spell=spell)
        stats.full += 1
        results[k] = _dedupe([*static_lines, *lines])
        return lines

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
            key_index, key_lines = k, read_key(k)
            continue
        changed = np.abs(grey[k].astype(np.int16) - grey[key_index]) > tolerance
        lines = [*static_lines]
        if changed.any():
            before, after = grey[k - 1], grey[k + 1]
            steady = (np.abs(grey[k].astype(np.int16) - before) <= tolerance) & (
                np.abs(grey[k].astype(np.int16) - after) <= tolerance
            )
            strokes = ink(frames[k])
            # the key frame's lines are carried over (painted where they were), except those
            # whose text changed: those places are read again
            stale = _stale_lines(key_lines, static_lines, changed, strokes)
            lines.extend(line for n, line in enumerate(key_lines) if n not in stale)
            candidates = steady & ~static & _dilate(changed, 3) & strokes
            region = _region_mask(candidates)
            # ink that changes every frame (a clock that was not in the key frame) is never
            # steady: where it lines up as a row of glyphs, it is read in this frame
            # (thin strokes of small text fall apart in the ink: joined again first)
            moving = _dilate(strokes & ~static & _dilate(changed, 3), 1)
            rows_found = _glyph_rows(moving)
            if rows_found is None or len(rows_found) > _MAX_ROWS:
                # changing ink too busy to single text out: this frame becomes a key frame
                key_index, key_lines = k, read_key(k)
                continue
            fresh = False
            for box in rows_found:
                if _inside_any(box, [line.box for line in lines]):
                    continue
                region = np.zeros(changed.shape, bool) if region is None else region
                rows, cols = changed.shape
                region[_slice(box.grow(max(6, box.h // 2), cols, rows))] = True
                fresh = True  # read now: a last partial read is no stand-in for it
            if stale:
                region = np.zeros(changed.shape, bool) if region is None else region
                rows, cols = changed.shape
                for n in stale:
                    box = key_lines[n].box
                    region[_slice(box.grow(max(6, box.h // 2), cols, rows))] = True
            if region is None:
                stats.reused += 1
            elif (
                not stale
                and not fresh
                and last is not None
                and _similar(last, region, candidates, grey[k])
            ):
                lines.extend(last[3])
                stats.reused += 1
            else:
                found = _read_region(engine, frames[k], region, passes, stats, doubt, spell)
                known = [line.box for line in lines]
                found = [line for line in found if not _inside_any(line.box, known)]
                last = (region, candidates, grey[k], found)
                lines.extend(found)
                stats.partial += 1
        else:
            lines.extend(key_lines)
            stats.reused += 1
        results[k] = _dedupe(lines)
    return results


def _stale_lines(
    key_lines: list[Line],
    static_lines: list[Line],
    changed: NDArray[np.bool_],
    strokes: NDArray[np.bool_],
) -> set[int]:
    """Which of the key frame's lines changed in this frame: text (or a row of glyphs read as
    nothing) whose ink changed by a few pixels and a tenth of its ink at least, outside the
    static banner. A clock running every frame is never steady, so it is found here; the
    other lines are carried over as they were (a few pixels of noise or anatomy under a box
    do not drop it)."""
    static_boxes = [line.box for line in static_lines]
    stale: set[int] = set()
    for n, line in enumerate(key_lines):
        if not (ALNUM.search(line.text) or line.glyphs >= GLYPH_ROW):
            continue
        if _inside_any(line.box, static_boxes):
            continue
        window = _slice(line.box)
        moved = int((changed[window] & strokes[window]).sum())
        if moved >= max(_STALE_PIXELS, _STALE_SHARE * int(strokes[window].sum())):
            stale.add(n)
    return stale


def _masked(passes: tuple[Pass, ...]) -> tuple[Pass, ...]:
    """Passes worth running on a composite (black around the kept pixels: no local contrast)."""
    kept = tuple(p for p in passes if p in (Pass.FUSED, Pass.FINE, Pass.BASE, Pass.CHROMA))
    return kept or passes


def _read_region(
    engine: OcrEngine,
    frame: Image,
    region: NDArray[np.bool_],
    passes: tuple[Pass, ...],
    stats: ScanStats,
    doubt: Doubt | None = None,
    spell: Spell | None = None,
) -> list[Line]:
    """Read only ``region`` of ``frame``: its bounding box, black outside the region."""
    ys, xs = np.nonzero(region)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    mask = region[y0:y1, x0:x1]
    crop = frame[y0:y1, x0:x1]
    composite = np.where(mask[..., None] if crop.ndim == 3 else mask, crop, 0).astype(np.uint8)
    found = read_frame(
        engine,
        np.ascontiguousarray(composite),
        _masked(passes),
        stats,
        doubt=doubt,
        factor=upscale_factor(*frame.shape[:2]),
        spell=spell,
    )
    return [replace(line, box=line.box.shifted(x0, y0)) for line in found]


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
    """Padded boxes around clusters of ``mask`` that hold two or more glyph-like strokes
    (4-64 px high, not much wider than high): scattered pixels and long edges dropped."""
    import cv2

    pieces, _, table, centres = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    joined = cv2.dilate(mask.astype(np.uint8), np.ones((5, 9), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    glyphs = np.zeros(count, np.int32)
    for piece in range(1, pieces):
        _, _, w, h, area = (int(v) for v in table[piece])
        if 4 <= h <= 64 and w <= 2 * h + 4 and area >= 4:
            cx, cy = (int(v) for v in centres[piece])
            glyphs[labels[min(cy, mask.shape[0] - 1), min(cx, mask.shape[1] - 1)]] += 1
    rows, cols = mask.shape
    region = np.zeros(mask.shape, bool)
    for label in range(1, count):
        x, y, w, h, _ = (int(v) for v in stats[label])
        if h < 5 or glyphs[label] < 2 or int(mask[y : y + h, x : x + w].sum()) < min_pixels:
            continue
        b = Box(x, y, w, h).grow(6, cols, rows)
        region[b.y : b.y + b.h, b.x : b.x + b.w] = True
    return region if region.any() else None


def _glyph_rows(mask: NDArray[np.bool_], least: int = _ROW_GLYPHS) -> list[Box] | None:
    """Boxes of rows of ``least`` or more glyph-shaped pieces of ``mask`` (5-64 px high, not
    much wider than high) of one height on one baseline, each within a height and a half of
    the next: text, where speckle and moving edges seldom line up so. None when the mask is
    too busy to tell (noise everywhere): the caller reads the frame in full."""
    import cv2
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not mask.any():
        return []
    _, _, table, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    x, y, w, h, area = (table[1:, k].astype(np.int64) for k in range(5))
    shaped = (h >= 5) & (h <= 64) & (w <= 2 * h + 2) & (area >= np.maximum(4, h))
    n = int(shaped.sum())
    if n < least:
        return []
    x, y, w, h = x[shaped], y[shaped], w[shaped], h[shaped]
    bottom = y + h
    # candidate pairs: pieces whose baselines lie within a quarter height (sorted windows,
    # not an n x n matrix: a noisy 2048 x 2048 frame has tens of thousands of pieces)
    order = np.argsort(bottom, kind="stable")
    ranked = bottom[order]
    reach = np.maximum(1, h // 4)
    lo = np.searchsorted(ranked, bottom - reach, side="left")
    hi = np.searchsorted(ranked, bottom + reach, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total > _MAX_PAIRS:
        return None
    first = np.repeat(np.arange(n), counts)
    second = order[np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)]
    size_a, size_b = h[first], h[second]
    gap = np.maximum(x[second] - (x + w)[first], x[first] - (x + w)[second])
    near = (
        (first != second)
        & (np.abs(size_a - size_b) <= 0.35 * np.minimum(size_a, size_b))
        & (np.abs(bottom[first] - bottom[second]) <= 0.25 * np.minimum(size_a, size_b))
        & (gap <= 1.5 * np.minimum(size_a, size_b))
    )
    graph = coo_matrix(
        (np.ones(int(near.sum()), np.int8), (first[near], second[near])), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    boxes = []
    for label in np.nonzero(sizes >= least)[0]:
        members = labels == label
        x0, y0 = int(x[members].min()), int(y[members].min())
        x1, y1 = int((x + w)[members].max()), int(bottom[members].max())
        boxes.append(Box(x0, y0, x1 - x0, y1 - y0))
    return boxes


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
