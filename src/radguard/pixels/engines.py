"""OCR engines behind one small interface: RapidOCR (default) and Tesseract.

An engine finds text lines in an 8-bit image (rows, cols) or (rows, cols, 3) and reads them.
Detection and reading are separate calls so that several preprocessing passes of the same image
can share one reading step. Both engines run fully offline. ``rapidocr`` (the default) is the
PP-OCR detection and recognition models that the rapidocr wheel ships, run by radguard's own
lean runner (:mod:`radguard.pixels.ppocr`: no padding, a Latin-only recognition head);
:class:`RapidOcrEngine` runs the same models through RapidOCR's own wrapper (kept for
comparison in the benchmarks). Tesseract is the Debian binary with its English data.
``RADGUARD_OCR_THREADS`` sets ONNX Runtime's threads per process (default: up to 2).
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from radguard.errors import RadguardError

Image = NDArray[np.uint8]
T = TypeVar("T")


class EngineName(enum.Enum):
    """OCR engines radguard can use (policy ``pixels.engine``)."""

    RAPIDOCR = "rapidocr"
    TESSERACT = "tesseract"


class EngineUnavailable(RadguardError):
    """The OCR engine cannot run here; the message says what to install."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned text box in pixels: top-left x, y, width, height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def grow(self, margin: int, cols: int, rows: int, vertical: int | None = None) -> Box:
        """The box with ``margin`` pixels added left and right and ``vertical`` (default:
        ``margin``) above and below, clipped to the image."""
        up = margin if vertical is None else vertical
        x0, y0 = max(0, self.x - margin), max(0, self.y - up)
        x1, y1 = min(cols, self.x + self.w + margin), min(rows, self.y + self.h + up)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def overlap(self, other: Box) -> int:
        """Area shared with ``other``."""
        w = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        h = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(0, w) * max(0, h)

    def union(self, other: Box) -> Box:
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def shifted(self, dx: int, dy: int) -> Box:
        return Box(self.x + dx, self.y + dy, self.w, self.h)

    def enlarged(self, factor: int) -> Box:
        """The box in the image enlarged ``factor`` times (the inverse of :meth:`scaled`)."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)

    def scaled(self, factor: float) -> Box:
        """The box of an image enlarged ``factor`` times, in the original image (every pixel
        it touches: edges rounded outwards)."""
        x0, y0 = int(np.floor(self.x / factor)), int(np.floor(self.y / factor))
        x1 = int(np.ceil((self.x + self.w) / factor))
        y1 = int(np.ceil((self.y + self.h) / factor))
        return Box(x0, y0, x1 - x0, y1 - y0)


def rows_of(
    items: Sequence[T], box_of: Callable[[T], Box], reach: float, overlap: int | None = None
) -> list[list[T]]:
    """``items`` grouped into rows of text, left to right: an item joins a row when it shares
    half the smaller height with the row's last item and starts at most ``reach`` heights
    after it ends (and overlaps it by at most ``overlap`` pixels, when given)."""
    rows: list[list[T]] = []
    for item in sorted(items, key=lambda i: (box_of(i).x, box_of(i).y)):
        box = box_of(item)
        for row in rows:
            last = box_of(row[-1])
            shared = min(last.y + last.h, box.y + box.h) - max(last.y, box.y)
            gap = box.x - (last.x + last.w)
            near = gap <= reach * max(last.h, box.h) and (overlap is None or gap >= -overlap)
            if shared >= 0.5 * min(last.h, box.h) and near:
                row.append(item)
                break
        else:
            rows.append([item])
    return rows


@dataclass(frozen=True)
class Line:
    """A text line read by an engine: where, what, and the engine's confidence (0..1)."""

    box: Box
    text: str
    score: float
    glyphs: int = 0  # glyph-sized ink strokes in the box (0: not counted)
    others: tuple[tuple[str, float], ...] = ()  # second readings (text, confidence)
    # lines in doubt: pieces of ink 3 px high or more in the box (0: not counted), ...
    pieces: int = 0
    # ...the box narrowed to its row of glyphs, what was read there, and how many pieces
    # of ink 3 px high or more reach into the narrowed box
    tight: tuple[Box, str, float, int] | None = None
    # lines in doubt: a spelling of the reading in clinical words that the recognizer's own
    # output supports nearly as well, and names far less (lexicon.Speller); None: none
    spelled: str | None = None
    # ...and of the reading within its glyphs (``tight``)
    tight_spelled: str | None = None


class OcrEngine(Protocol):
    """What an OCR engine offers: find text boxes, read the text in boxes."""

    name: EngineName

    def detect(self, image: Image) -> list[Box]:
        """Boxes of text lines in ``image``."""
        ...

    def read(self, image: Image, boxes: list[Box]) -> list[Line]:
        """The text in each of ``boxes`` of ``image`` (same order)."""
        ...


def _rapidocr_models() -> dict[str, Path]:
    """The ONNX models inside the rapidocr wheel (detection, recognition, orientation)."""
    import rapidocr

    folder = Path(rapidocr.__file__).parent / "models"
    wanted = {
        "det": "PP-OCRv6_det_small.onnx",
        "rec": "PP-OCRv6_rec_small.onnx",
        "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    }
    found = {k: folder / v for k, v in wanted.items()}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise EngineUnavailable(
            "RapidOCR's packaged models are missing ("
            + ", ".join(missing)
            + "): install the 'rapidocr' wheel (pip install 'radguard[pixels]'); "
            "radguard never downloads models"
        )
    return found


class RapidOcrEngine:
    """PP-OCR detection and recognition (ONNX Runtime on the CPU) from the rapidocr wheel."""

    name = EngineName.RAPIDOCR

    def __init__(self, threads: int = 0) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as error:
            raise EngineUnavailable(
                "RapidOCR is not installed: pip install 'radguard[pixels]' (rapidocr, onnxruntime)"
            ) from error
        models = _rapidocr_models()
        threads = threads or min(2, os.cpu_count() or 1)
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Global.model_root_dir": str(models["det"].parent),
            "Det.model_path": str(models["det"]),
            "Rec.model_path": str(models["rec"]),
            "Cls.model_path": str(models["cls"]),
            # no resizing beyond the image itself: radguard upscales small text on purpose
            "Det.limit_type": "max",
            "Det.limit_side_len": 2048,
            "Det.box_thresh": 0.5,
            "Det.unclip_ratio": 1.6,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        self._ocr = RapidOCR(params=params)
        recognizer = self._ocr._load_rec_model()  # type: ignore[no-untyped-call]
        if not recognizer.session.have_key():
            raise EngineUnavailable("RapidOCR's recognition model carries no character table")
        self._recognizer = recognizer

    def detect(self, image: Image) -> list[Box]:
        result = self._ocr(_rgb(image), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(result, "boxes", None)
        if boxes is None:
            return []
        found = []
        for quad in np.asarray(boxes):
            x0, y0 = np.floor(quad.min(axis=0)).astype(int)
            x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
            found.append(Box(int(max(0, x0)), int(max(0, y0)), int(x1 - x0), int(y1 - y0)))
        return found

    def read(self, image: Image, boxes: list[Box]) -> list[Line]:
        if not boxes:
            return []
        from rapidocr.ch_ppocr_rec import TextRecInput

        rgb = _rgb(image)
        crops = [rgb[b.y : b.y + max(b.h, 1), b.x : b.x + max(b.w, 1)] for b in boxes]
        output = self._recognizer(TextRecInput(img=crops, return_word_box=False))
        texts = output.txts or ("",) * len(boxes)
        scores = output.scores or (0.0,) * len(boxes)
        return [
            Line(box, str(text), float(score))
            for box, text, score in zip(boxes, texts, scores, strict=True)
        ]


class TesseractEngine:
    """Tesseract 4/5 (LSTM) through its command-line program: one call per image, TSV out."""

    name = EngineName.TESSERACT

    def __init__(self, binary: str = "tesseract") -> None:
        found = shutil.which(binary)
        if found is None:
            raise EngineUnavailable(
                "tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng"
            )
        self._binary = found

    def _tsv(self, image: Image, psm: int) -> list[list[str]]:
        import cv2

        ok, png = cv2.imencode(".png", image if image.ndim == 2 else image[..., ::-1])
        if not ok:
            raise EngineUnavailable("cannot encode the image for tesseract")
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        done = subprocess.run(
            [self._binary, "stdin", "stdout", "-l", "eng", "--psm", str(psm), "tsv"],
            input=png.tobytes(),
            capture_output=True,
            env=env,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise EngineUnavailable(f"tesseract failed (exit {done.returncode})")
        rows = [r.split("\t") for r in done.stdout.decode("utf-8", "replace").splitlines()[1:]]
        return [r for r in rows if len(r) == 12]

    def _lines(self, image: Image, psm: int) -> list[Line]:
        """Words (level 5 rows) joined into lines by position: sparse-text mode (psm 11) puts
        neighbouring words of one line in separate blocks."""
        words: list[tuple[Box, str, float]] = []
        for row in self._tsv(image, psm):
            text, conf = row[11].strip(), float(row[10])
            if row[0] != "5" or not text or conf < 0:
                continue
            words.append((Box(int(row[6]), int(row[7]), int(row[8]), int(row[9])), text, conf))
        groups = rows_of(words, lambda w: w[0], reach=2.0, overlap=2)
        lines = []
        for group in groups:
            box = group[0][0]
            for other, _, _ in group[1:]:
                box = box.union(other)
            text = " ".join(t for _, t, _ in group)
            lines.append(Line(box, text, float(np.mean([c for _, _, c in group])) / 100))
        return lines

    def detect(self, image: Image) -> list[Box]:
        return [line.box for line in self._lines(image, 11)]  # sparse text: overlays

    def read(self, image: Image, boxes: list[Box]) -> list[Line]:
        lines = []
        for box in boxes:
            pad = max(4, box.h // 2)
            grown = box.grow(pad, image.shape[1], image.shape[0])
            crop = image[grown.y : grown.y + grown.h, grown.x : grown.x + grown.w]
            found = self._lines(np.ascontiguousarray(crop), 7)  # one line per crop
            text = " ".join(f.text for f in found)
            score = float(np.mean([f.score for f in found])) if found else 0.0
            lines.append(Line(box, text, score))
        return lines


def ctc_greedy(probs: NDArray[np.float32], charset: Sequence[str]) -> tuple[str, float]:
    """CTC greedy decoding of one line's class probabilities (steps, classes; class 0 the
    blank): best class per step, repeats collapsed, blanks dropped; the confidence is the mean
    probability of the characters emitted."""
    best = probs.argmax(axis=1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    if not keep.any():
        return "", 0.0
    chosen = best[keep]
    score = float(probs[np.flatnonzero(keep), chosen].mean())
    return "".join(charset[i] for i in chosen), score


def onnx_session(model: str | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads, fully optimised."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _rgb(image: Image) -> Image:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image


def get_engine(name: EngineName | str = EngineName.RAPIDOCR, reader: str = "radguard") -> OcrEngine:
    """The engine ``name``, created once per process (models load once). ``reader`` picks
    the ``rapidocr`` engine's recognizer: ``radguard`` (radguard's packaged model, PP-OCR's
    for second readings) or ``ppocr`` (PP-OCR's alone)."""
    return _engine(EngineName(name), str(getattr(reader, "value", reader)))


@lru_cache(maxsize=4)
def _engine(name: EngineName, reader: str) -> OcrEngine:
    if name is EngineName.RAPIDOCR:
        from radguard.pixels.ppocr import PpOcrEngine

        threads = int(os.environ.get("RADGUARD_OCR_THREADS", "0") or 0)
        return PpOcrEngine(threads=threads or min(2, os.cpu_count() or 1), reader=reader)
    return TesseractEngine()
