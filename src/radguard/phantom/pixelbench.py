"""The pixel benchmark corpus: images with identifiers and clinical labels burned in, and a key.

Deterministic from the seed. Every image is a DICOM dataset whose header holds the identity
that is burned into its pixels (as a device would), plus the list of every line burned: where,
what, whether it identifies, its font, size, cap height (pixels of ink in a capital H), contrast
(ink minus the mean speckle level under the box, as a share of the 8-bit range) and colour.

- ``single_frames``: 512 x 512 ultrasound-like frames (speckle sectors), one in five in colour,
  three identifying lines and two or three clinical labels each, in every installed font
  (Pillow's bitmap and Aileron fonts, DejaVu, Liberation), cap heights from 5 to 40 px,
  contrasts from 10% to full, at random places;
- ``text_free``: the same backgrounds without any text (false redaction);
- ``cine``: an 800 x 600 cine whose content moves frame to frame under a static banner
  (name, ID, birth date, institution), a clock that changes every 25 frames, and clinical
  labels.

Glyphs are drawn without anti-aliasing (``radguard.phantom.burn``), so :func:`glyph_mask`
gives the exact ink pixels for scoring "fully covered".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from radguard.phantom.burn import BITMAP, Font, available_fonts, text_mask
from radguard.phantom.headers import written_date
from radguard.phantom.identity import make_patient, make_site, uid
from radguard.phantom.volumes import ultrasound

CAP_HEIGHTS = (6, 8, 10, 12, 14, 16, 20, 24, 32, 40)
CONTRASTS = (0.1, 0.2, 0.35, 0.6, 1.0)
CLINICAL_LABELS = (
    "R",
    "LT",
    "C5-1",
    "12 cm",
    "LIVER TRV",
    "MI 1.1 TIS 0.4",
    "D1 1.23 cm",
    "Gn 60 DR 65",
    "ABDOMEN",
    "L12-5",
    "SAG",
    "5.0 MHz",
    "RIGHT KIDNEY LONG",
    "FPS 28",
    "PW 2.5 cm/s",
)
_COLOURS = {
    "yellow": (255, 230, 0),
    "cyan": (0, 220, 255),
    "green": (40, 255, 60),
    "orange": (255, 140, 0),
    "white": (255, 255, 255),
}


@dataclass(frozen=True)
class BurnedLine:
    """One line burned into a bench image (``frame`` -1: every frame)."""

    frame: int
    x: int
    y: int
    w: int
    h: int
    text: str
    identifying: bool
    font: str
    size: int
    cap_height: int
    contrast: float
    colour: str


@dataclass
class BenchImage:
    """A bench image: its dataset (header identity + pixels) and what was burned where."""

    name: str
    dataset: Dataset
    lines: list[BurnedLine] = field(default_factory=list)


@lru_cache(maxsize=256)
def _size_for(font: str, cap: int) -> tuple[int, int]:
    """The font size whose capital H is closest to ``cap`` pixels, and that cap height."""
    best = (0, 10_000)
    for size in range(6, 64):
        mask = text_mask("H", Font(font, size))
        height = int(mask.any(axis=1).sum())
        if abs(height - cap) < abs(best[1] - cap):
            best = (size, height)
    return best


def cap_height(font: Font) -> int:
    mask = text_mask("H", font)
    return int(mask.any(axis=1).sum())


def glyph_mask(line: BurnedLine) -> NDArray[np.bool_]:
    """The exact ink pixels of ``line`` (rows, cols of its box)."""
    return text_mask(line.text, Font(line.font, line.size))


def read_distance(read: str, truth: str) -> float:
    """Edit distance between a reading and the burned text over the longer one's length
    (0: the same, 1: nothing alike): how OCR readings are scored against the key."""
    from radguard.pixels.lexicon import distance

    return distance(read, truth) / max(len(read), len(truth), 1)


def _identity_lines(rng: np.random.Generator, index: int) -> tuple[list[str], Dataset]:
    """Identifying lines and the header that holds the same identity."""
    patient = make_patient(rng, index)
    site = make_site(rng, index)
    study = patient.first_study + dt.timedelta(days=int(rng.integers(0, 900)))
    accession = f"ACC{int(rng.integers(10_000_000, 99_999_999))}"
    hour, minute, second = (int(rng.integers(a, b)) for a, b in ((7, 19), (0, 60), (0, 60)))
    clock = f"{hour:02d}:{minute:02d}:{second:02d}"
    name = patient.name
    forms = [
        name.pn,
        f"{name.family}, {name.given}",
        name.written,
        f"ID: {patient.patient_id}",
        patient.patient_id,
        f"DOB: {written_date(patient.birth_date)}",
        written_date(study),
        site.institution,
        f"Acc {accession}",
        clock,
        f"{study:%d-%b-%Y} {clock}",
        patient.phone,
        f"Dr {site.referring.family}",
    ]
    ds = Dataset()
    ds.PatientName = name.pn
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.StudyDate = study.strftime("%Y%m%d")
    ds.StudyTime = clock.replace(":", "")
    ds.AccessionNumber = accession
    ds.InstitutionName = site.institution
    ds.ReferringPhysicianName = site.referring.pn
    ds.PatientTelephoneNumbers = patient.phone
    return forms, ds


def _finish(ds: Dataset, array: NDArray[np.uint8], seed: int, name: str, frames: int) -> None:
    colour = array.ndim == (4 if frames > 1 else 3)
    sop_class = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid(seed, "pixelbench", name)
    ds.StudyInstanceUID = uid(seed, "pixelbench-study", name)
    ds.SeriesInstanceUID = uid(seed, "pixelbench-series", name)
    ds.Modality = "US"
    ds.Manufacturer = "RADGUARD PHANTOM"
    ds.ManufacturerModelName = "PIXELBENCH"
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = (
        int(array.shape[-3 if colour else -2]),
        int(array.shape[-2 if colour else -1]),
    )
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
    ds.PixelData = np.ascontiguousarray(array).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def _place(
    occupied: list[tuple[int, int, int, int]], w: int, h: int, rows: int, cols: int, rng: Any
) -> tuple[int, int] | None:
    for _ in range(200):
        x = int(rng.integers(2, max(3, cols - w - 2)))
        y = int(rng.integers(2, max(3, rows - h - 2)))
        if all(
            x + w + 12 < ox or ox + ow + 12 < x or y + h + 8 < oy or oy + oh + 8 < y
            for ox, oy, ow, oh in occupied
        ):
            return x, y
    return None


def _draw(
    image: NDArray[np.uint8],
    text: str,
    font: Font,
    x: int,
    y: int,
    contrast: float,
    colour: str,
) -> None:
    """Burn ``text`` at ``contrast`` above the mean level under its box (grey), or in colour."""
    mask = text_mask(text, font)
    h, w = mask.shape
    region = image[y : y + h, x : x + w]
    if image.ndim == 3:
        rgb = np.asarray(_COLOURS[colour], np.float32)
        base = region.reshape(-1, 3).mean(axis=0)
        ink = np.clip(base + contrast * (rgb - base), 0, 255)
        region[mask] = np.rint(ink).astype(np.uint8)
        return
    base = float(region.mean())
    level = base + contrast * 255.0
    if level > 255.0:
        level = base - contrast * 255.0  # bright background: darker text
    if level < 0.0:
        level = 255.0 if base < 128 else 0.0  # full contrast: the farther end of the range
    region[mask] = np.uint8(np.clip(np.rint(level), 0, 255))


def _background(
    rng: np.random.Generator, rows: int, cols: int, frame: int = 0, slope: float | None = None
) -> NDArray[np.uint8]:
    image = ultrasound(rows, cols, frame, rng)
    # a soft gradient outside the sector: text does not always sit on black
    slope = rng.uniform(0.0, 1.0) if slope is None else slope
    ramp = np.linspace(0, 60, cols, dtype=np.float32)[None, :] * slope
    return np.where(image == 0, np.rint(ramp).astype(np.uint8), image)


def single_frames(
    seed: int, count: int, size: int = 512, labels: tuple[str, ...] = CLINICAL_LABELS
) -> Iterator[BenchImage]:
    """``count`` single-frame images with identifying lines (the header's identity) and
    clinical labels (drawn from ``labels``)."""
    rng = np.random.default_rng(seed)

    def header_lines(index: int) -> tuple[Callable[[], list[str]], Dataset]:
        forms, ds = _identity_lines(rng, index)
        return lambda: [str(forms[int(k)]) for k in rng.choice(len(forms), 3, replace=False)], ds

    yield from _frames(rng, seed, count, size, labels, header_lines, "single")


def strangers(seed: int, count: int, size: int = 512) -> Iterator[BenchImage]:
    """``count`` images whose identifying lines are names the header does not hold (a
    referring doctor, a sonographer, another patient): census surnames a letter or two from
    a clinical word (ACOSTA, ABDI, HART) half the time, else any census surname or first
    name and surname. Only what a name looks like can catch them."""
    rng = np.random.default_rng(seed + 3)
    near, surnames, given = _stranger_names()

    def stranger_lines(index: int) -> tuple[Callable[[], list[str]], Dataset]:
        _, ds = _identity_lines(rng, 3000 + index)
        return lambda: [_stranger(rng, near, surnames, given) for _ in range(3)], ds

    yield from _frames(rng, seed, count, size, CLINICAL_LABELS, stranger_lines, "stranger")


def _stranger(
    rng: np.random.Generator,
    near: tuple[str, ...],
    surnames: tuple[str, ...],
    given: tuple[str, ...],
) -> str:
    """A name written as a device or a user would: SURNAME, Surname, Given Surname, Dr Surname."""
    pool = near if rng.random() < 0.5 else surnames
    surname = str(pool[int(rng.integers(len(pool)))])
    first = str(given[int(rng.integers(len(given)))]).title()
    style = int(rng.integers(4))
    return (surname, surname.title(), f"{first} {surname.title()}", f"Dr {surname.title()}")[style]


@lru_cache(maxsize=1)
def _stranger_names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Census surnames of four letters or more within two edits of a clinical word of three
    or more (not clinical words themselves), all surnames, and first names."""
    from radguard.pixels.classify import CLINICAL_VOCABULARY
    from radguard.verify.generic import _names

    first, last = _names()
    # names sharing a two-letters-deleted form with a word are the only ones that can be
    # within two edits of it (checked exactly after)
    by_form: dict[str, set[str]] = {}
    for word in (w for w in CLINICAL_VOCABULARY if len(w) >= 3):
        for form in _deleted(word):
            by_form.setdefault(form, set()).add(word)
    near = tuple(
        sorted(
            n
            for n in last
            if len(n) >= 4
            and n not in CLINICAL_VOCABULARY
            and any(
                read_distance(n, w) * max(len(n), len(w)) <= 2
                for form in _deleted(n)
                for w in by_form.get(form, ())
            )
        )
    )
    return near, tuple(sorted(last)), tuple(sorted(first))


def _deleted(word: str) -> set[str]:
    """``word`` with none, one or two of its letters left out."""
    once = {word[:i] + word[i + 1 :] for i in range(len(word))}
    return {word} | once | {w[:i] + w[i + 1 :] for w in once for i in range(len(w))}


# labels never used to tune the pixel stage (bench --labels held-out): the same kinds of
# overlay text with other words and numbers
HELD_OUT_LABELS = (
    "SPLEEN LONG",
    "THYROID RT TRV",
    "PI 1.23 RI 0.65",
    "DEPTH 16 cm",
    "P4-2",
    "GAIN 45",
    "BLADDER POSTVOID",
    "LEFT OVARY SAG",
    "CCA PSV 85 cm/s",
    "ZOOM 1.5",
    "HARM",
    "AP ERECT",
    "LT BREAST",
    "PRF 4.0 kHz",
    "C1-6",
)


def _frames(
    rng: np.random.Generator,
    seed: int,
    count: int,
    size: int,
    labels: tuple[str, ...],
    identifying: Callable[[int], tuple[Callable[[], list[str]], Dataset]],
    stem: str,
) -> Iterator[BenchImage]:
    """Images with the lines ``identifying(index)`` gives (a header, and what to burn drawn
    after the background) and two clinical labels, in fonts, cap heights and contrasts drawn
    in turn."""
    fonts = available_fonts()
    combo = 0
    for index in range(count):
        pick, ds = identifying(index)
        grey = _background(rng, size, size)
        colour = index % 5 == 4
        image = np.repeat(grey[:, :, None], 3, axis=2) if colour else grey
        lines: list[BurnedLine] = []
        occupied: list[tuple[int, int, int, int]] = []
        picks = pick()
        chosen = [str(labels[int(k)]) for k in rng.choice(len(labels), 3)]
        for text, identifies in [(t, True) for t in picks] + [(t, False) for t in chosen[:2]]:
            font_name = fonts[combo % len(fonts)]
            cap = CAP_HEIGHTS[int(rng.integers(len(CAP_HEIGHTS)))]
            contrast = CONTRASTS[int(rng.integers(len(CONTRASTS)))]
            combo += 1
            size_px, cap_px = (
                (11, cap_height(Font(BITMAP, 11)))
                if font_name == BITMAP
                else (_size_for(font_name, cap))
            )
            font = Font(font_name, size_px)
            mask = text_mask(text, font)
            h, w = mask.shape
            if w > size - 8:
                continue
            spot = _place(occupied, w, h, size, size, rng)
            if spot is None:
                continue
            x, y = spot
            occupied.append((x, y, w, h))
            name = list(_COLOURS)[combo % len(_COLOURS)] if colour else "grey"
            _draw(image, text, font, x, y, contrast, name)
            lines.append(
                BurnedLine(
                    -1, x, y, w, h, text, identifies, font_name, size_px, cap_px, contrast, name
                )
            )
        _finish(ds, image, seed, f"{stem}{index:04d}", 1)
        yield BenchImage(f"{stem}{index:04d}", ds, lines)


def text_free(seed: int, count: int, size: int = 512) -> Iterator[BenchImage]:
    """``count`` images without any text (any redaction in them is a false redaction)."""
    rng = np.random.default_rng(seed + 1)
    for index in range(count):
        _, ds = _identity_lines(rng, 1000 + index)
        grey = _background(rng, size, size)
        image = np.repeat(grey[:, :, None], 3, axis=2) if index % 5 == 4 else grey
        _finish(ds, image, seed, f"free{index:04d}", 1)
        yield BenchImage(f"free{index:04d}", ds, [])


def _cine_line(
    frame: int,
    x: int,
    y: int,
    mask: NDArray[np.bool_],
    text: str,
    identifying: bool,
    font: Font,
    contrast: float,
) -> BurnedLine:
    """The answer-key record of one grey line burned into a cine (frame -1: every frame)."""
    return BurnedLine(
        frame,
        x,
        y,
        mask.shape[1],
        mask.shape[0],
        text,
        identifying,
        font.name,
        font.size,
        cap_height(font),
        contrast,
        "grey",
    )


def cine(
    seed: int,
    frames: int = 100,
    rows: int = 600,
    cols: int = 800,
    tick: int = 25,
    clock_from: int = 0,
) -> BenchImage:
    """A cine: content moving under a static banner, a clock ticking every ``tick`` frames,
    shown from frame ``clock_from`` on."""
    rng = np.random.default_rng(seed + 2)
    forms, ds = _identity_lines(rng, 2000)
    banner = [forms[0], forms[3], forms[5], forms[7]]
    font = Font("DejaVuSans.ttf", 16) if "DejaVuSans.ttf" in available_fonts() else Font(BITMAP, 11)
    label_font = Font(font.name, 14) if font.name != BITMAP else font
    stack = np.zeros((frames, rows, cols), np.uint8)
    lines: list[BurnedLine] = []
    clock_base = int(rng.integers(8 * 3600, 17 * 3600))
    slope = float(rng.uniform(0.0, 1.0))  # the device's backdrop does not change between frames
    for f in range(frames):
        image = _background(np.random.default_rng(seed * 1000 + f), rows, cols, f, slope)
        y = 6
        for text in banner:
            mask = text_mask(text, font)
            image[y : y + mask.shape[0], 6 : 6 + mask.shape[1]][mask] = 255
            if f == 0:
                lines.append(_cine_line(-1, 6, y, mask, text, True, font, 1.0))
            y += mask.shape[0] + 4
        now = clock_base + f // tick
        clock = f"{now // 3600:02d}:{now // 60 % 60:02d}:{now % 60:02d}"
        mask = text_mask(clock, font)
        cx, cy = cols - mask.shape[1] - 8, rows - mask.shape[0] - 8
        if f >= clock_from:
            image[cy : cy + mask.shape[0], cx : cx + mask.shape[1]][mask] = 255
            lines.append(_cine_line(f, cx, cy, mask, clock, True, font, 1.0))
        ly = rows // 2
        for text in ("C5-1", "ABDOMEN", "12 cm"):
            mask = text_mask(text, label_font)
            image[ly : ly + mask.shape[0], 8 : 8 + mask.shape[1]][mask] = 230
            if f == 0:
                lines.append(_cine_line(-1, 8, ly, mask, text, False, label_font, 0.9))
            ly += mask.shape[0] + 10
        stack[f] = image
    _finish(ds, stack, seed, "cine", frames)
    return BenchImage("cine", ds, lines)
