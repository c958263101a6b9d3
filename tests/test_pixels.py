"""Clean Pixel Data: real OCR on real and phantom images, every photometric and syntax path."""

from __future__ import annotations

import copy
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset

import radguard.pixels as pixels_pkg
from radguard.cli import main
from radguard.deid import Keyring
from radguard.errors import PolicyError, Rejected
from radguard.phantom.burn import Font, text_mask
from radguard.phantom.pixelbench import (
    HELD_OUT_LABELS,
    BenchImage,
    cine,
    glyph_mask,
    single_frames,
    strangers,
)
from radguard.pipeline import RunOptions, run_deid
from radguard.pixels import Classifier, PixelCleaner, Verdict, header_identifiers, triage
from radguard.pixels.clean import TextFound
from radguard.pixels.engines import (
    Box,
    EngineName,
    EngineUnavailable,
    Line,
    RapidOcrEngine,
    TesseractEngine,
)
from radguard.settings import PixelPolicy, PixelScan, check_policy, load_policy

from conftest import pydicom_file, require_tool

POLICY = load_policy("research").pixels


@pytest.fixture(scope="module")
def cleaner() -> PixelCleaner:
    return PixelCleaner(POLICY)


def _covered(bench: BenchImage, cleaned: Dataset, margin: int = 0) -> list[tuple[str, bool]]:
    """Per burned line: are all its ink pixels now different from the ink (painted over)?"""
    after = cleaned.pixel_array
    before = bench.dataset.pixel_array
    frames = int(cleaned.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        after, before = after[None], before[None]
    result = []
    for line in bench.lines:
        glyphs = glyph_mask(line)
        targets = range(frames) if line.frame < 0 else [line.frame]
        gone = True
        for f in targets:
            region_after = after[f, line.y : line.y + line.h, line.x : line.x + line.w]
            region_before = before[f, line.y : line.y + line.h, line.x : line.x + line.w]
            same = (
                np.all(region_after == region_before, axis=-1)
                if after.ndim == 4
                else (region_after == region_before)
            )
            if same[glyphs].mean() > 0.0:
                gone = False
        result.append((line.text, gone))
    return result


def test_public_names_exist() -> None:
    for name in pixels_pkg.__all__:
        assert hasattr(pixels_pkg, name), name


def test_rapidocr_runs_offline_from_packaged_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh engine loads and reads with every network connection refused."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("OCR tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    engine = RapidOcrEngine()
    image = np.zeros((80, 400), np.uint8)
    mask = text_mask("HALVORSEN 1234", Font("pil-aileron", 28))
    image[20 : 20 + mask.shape[0], 10 : 10 + mask.shape[1]][mask] = 255
    boxes = engine.detect(image)
    lines = engine.read(image, boxes)
    assert any("HALVORSEN" in line.text.upper() for line in lines)


def test_classifier_identifying_clinical_unknown() -> None:
    classifier = Classifier(["SMITH^JOHN^Q^DR", "HG1459269", "19610304", "ST MARY HOSPITAL"])
    identifying = ["SMlTH J", "HG14 59269", "03/04/1961", "4 Mar 1961", "Dr Smith", "14:22:05"]
    clinical = ["LIVERTRV", "C5-1", "12cm", "MI1.1 TIS 0.4", "Gn 60 DR 65", "R", "1.06 cm"]
    for text in identifying:
        assert classifier.decide(text).verdict is Verdict.IDENTIFYING, text
    for text in clinical:
        assert classifier.decide(text).verdict is Verdict.CLINICAL, text
    assert classifier.decide("Cornflower Quixote").verdict is Verdict.UNKNOWN
    assert (
        Classifier([], keep_patterns=("Cornflower .*",)).decide("Cornflower Quixote").verdict
        is Verdict.CLINICAL
    )


def test_identifiers_read_in_pieces_are_never_clinical_labels() -> None:
    """Fail closed: surnames near clinical words, dates, clocks, extensions, accession or ID
    pieces and probe-like codes with a month are not labels, whoever they belong to (the
    header does not know the technologist or the relatives); misread labels still are."""
    classifier = Classifier([])
    never = [
        "DIAZ", "DEAN", "BECK", "HART", "DR BRAUN", "DR. HART", "DIAZ, M", "LT LEE", "SAG TOM",
        "KIDNEY BECK", "MAR12-70", "JD45F", "AB12-34", "EXT 4471", "MED 1234 56",
        "ACC 12 3456", "HR 0930", "AP 1970", "14.30", "L 14.30", "ID.HG7=32237", "2071",
        "11:2", "18171 555=2765",
    ]  # fmt: skip
    for text in never:
        assert classifier.decide(text).verdict is not Verdict.CLINICAL, text
    # names one letter from clinical words that no census lists, clocks read without their
    # colon, first names with a number (found by a review of the slip rules)
    never += [
        "LIZ", "LIZ-S", "DEAN 1.2 cs", "KIDNEY DEAN", "LEVER", "C5-1 DEAN", "HANDA", "GAINE",
        "LT CONOR", "LIVER LIAM", "LIAM HANDA", "CONOR GAINE", "LT MADS JORGEN", "BARING",
        "L PORTAS", "10 32 AM", "10.32 PM", "9AM", "LT 10 PM", "45 MO", "5 MR", "LIZ 12",
        "TESS-1", "LEO 5", "SOL-12A", "OLIVER", "ABID ANTIM", "MATIC", "LT ANIMA", "ATTICUS",
        "LT MARTIM", "DR LLEN", "DR HEPATI", "AUG 12 LT", "PASCALE", "PERSIS DELAYE",
        "LIVER DELAYE", "LT AUNT",
    ]  # fmt: skip
    misread = [
        "RI GHT KIDNEY LONG", "RISHTKIDNEY LONG", "LIVERIRV", "MI 1.1 iIS 0.4", "L12 5",
        "D1 1.23 cs", "12 cn", "C5-i", "LTKIDNEY", "KIDNEYLONG", "PIGHT KIDNEY LONG", "BDOMEN",
        "CS-1",
    ]  # fmt: skip
    for text in misread:
        assert classifier.decide(text).verdict is Verdict.CLINICAL, text
    # a hostile run of clinical words without spaces is no label (and no crash)
    assert classifier.decide("LTRT" * 150 + "X").verdict is Verdict.UNKNOWN


def test_triage_rule() -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert triage(ds, POLICY) is None
    assert triage(ds, replace(POLICY, scan=PixelScan.ALL)) is not None
    ds.BurnedInAnnotation = "YES"
    assert "Burned In Annotation" in str(triage(ds, POLICY))
    us = pydicom.dcmread(pydicom_file("examples_rgb_color.dcm"))
    assert "US" in str(triage(us, POLICY))


def test_real_ultrasound_institution_removed_labels_kept(cleaner: PixelCleaner) -> None:
    """pydicom's US sample: the institution burned in top left goes, 'LYMPH NODE' stays."""
    ds = pydicom.dcmread(pydicom_file("examples_rgb_color.dcm"))
    before = ds.pixel_array.copy()
    report = cleaner.clean(ds)
    identifying = [f for f in report.found if f.verdict is Verdict.IDENTIFYING]
    assert identifying and all(f.redacted for f in identifying)
    assert any(f.verdict is Verdict.CLINICAL and not f.redacted for f in report.found)
    assert ds.BurnedInAnnotation == "NO"
    codes = {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence}
    assert "113101" in codes
    after = ds.pixel_array
    assert after.shape == before.shape and not np.array_equal(after, before)
    again = cleaner.scan(
        ds, header_identifiers(pydicom.dcmread(pydicom_file("examples_rgb_color.dcm")))
    )
    assert not [f for f in again.found if f.verdict is Verdict.IDENTIFYING]
    assert any("NODE" in f.text.upper() for f in again.found)


def test_real_jpeg2000_reencoded_losslessly(cleaner: PixelCleaner) -> None:
    ds = pydicom.dcmread(pydicom_file("examples_jpeg2k.dcm"))
    syntax = ds.file_meta.TransferSyntaxUID
    report = cleaner.clean(ds)
    assert report.redacted
    assert report.syntax == syntax.name
    written = ds.pixel_array.copy()
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    reread = pydicom.dcmread(BytesIO(buffer.getvalue()))
    assert reread.file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(reread.pixel_array, written)


@pytest.mark.parametrize(
    ("photometric", "dtype", "syntax"),
    [
        ("MONOCHROME2", np.uint16, "1.2.840.10008.1.2.5"),  # RLE Lossless
        ("MONOCHROME1", np.uint16, "1.2.840.10008.1.2.4.80"),  # JPEG-LS Lossless
        ("MONOCHROME2", np.int16, "1.2.840.10008.1.2.1"),
        ("RGB", np.uint8, "1.2.840.10008.1.2.4.90"),  # JPEG 2000 Lossless
    ],
)
def test_every_photometric_depth_and_syntax(
    cleaner: PixelCleaner, photometric: str, dtype: Any, syntax: str
) -> None:
    """A name burned into 16-bit, signed, inverted and colour images is painted black."""
    bench = next(iter(single_frames(5, 1)))
    ds = bench.dataset
    grey = np.zeros((256, 384), np.float64)
    grey[:] = np.linspace(0, 0.3, 384)[None, :]
    name = "HALVORSEN^BARTHOLOMEW"
    ds.PatientName = name
    mask = text_mask(name, Font("DejaVuSans.ttf", 22))
    y, x = 20, 12
    grey[y : y + mask.shape[0], x : x + mask.shape[1]][mask] = 1.0
    if photometric == "RGB":
        array = np.rint(np.repeat(grey[:, :, None], 3, axis=2) * 255).astype(dtype)
        array[..., 2] //= 2
        bits = 8
    else:
        top = 4000 if dtype == np.uint16 else 2000
        low = 0 if dtype == np.uint16 else -1000
        array = np.rint(low + grey * (top - low)).astype(dtype)
        if photometric == "MONOCHROME1":
            array = (top - array).astype(dtype)
        bits = 12
    ds.set_pixel_data(array, photometric, bits)
    if syntax != "1.2.840.10008.1.2.1":
        ds.compress(syntax)
    report = cleaner.clean(ds, (name,))
    assert report.redacted >= 1
    out = ds.pixel_array
    ink = out[y : y + mask.shape[0], x : x + mask.shape[1]][mask]
    if photometric == "RGB":
        assert np.all(ink == 0)
    elif photometric == "MONOCHROME1":
        assert np.all(ink == array.max())  # black in MONOCHROME1 is the top value
    else:
        assert np.all(ink == array.min())
    assert str(ds.file_meta.TransferSyntaxUID) == syntax
    assert out.dtype == array.dtype


def test_phantom_image_identifiers_removed_labels_kept(cleaner: PixelCleaner) -> None:
    """Bench images at full contrast and cap height >= 12 px: every identifier painted over."""
    bench = next(iter(single_frames(21, 1)))
    for line in list(bench.lines):
        bench.lines.remove(line)
    from radguard.phantom.pixelbench import BurnedLine, _draw

    ds = bench.dataset
    image = ds.pixel_array.copy()
    placed = [
        ("ID: HG7960404", True, 20, 30),
        (
            f"DOB: {str(ds.PatientBirthDate)[4:6]}/{str(ds.PatientBirthDate)[6:]}/"
            f"{str(ds.PatientBirthDate)[:4]}",
            True,
            20,
            80,
        ),
        ("C5-1", False, 440, 240),
        ("12 cm", False, 420, 300),
    ]
    for text, identifying, x, y in placed:
        font = Font("LiberationSans-Regular.ttf", 20)
        _draw(image, text, font, x, y, 1.0, "grey")
        h, w = text_mask(text, font).shape
        bench.lines.append(
            BurnedLine(-1, x, y, w, h, text, identifying, font.name, font.size, 14, 1.0, "grey")
        )
    ds.PatientID = "HG7960404"
    ds.set_pixel_data(image, "MONOCHROME2", 8)
    keep = BenchImage(bench.name, copy.deepcopy(ds), bench.lines)
    cleaner.clean(ds, header_identifiers(ds))
    results = dict(_covered(keep, ds))
    for text, identifying, _, _ in placed:
        assert results[text] is identifying, text


def test_reread_after_painting_keeps_a_label_read_whole_before(cleaner: PixelCleaner) -> None:
    """Bench seed 5, image 16: a small 'RIGHT KIDNEY LONG' beside a painted date. The
    re-read after painting cut it into pieces read as 'RIGH', ' KID', 'EY LONG' (each no
    label: painted); pieces inside a line already read whole, on pixels no paint touched,
    keep that reading. The identifiers around it are still painted."""
    *_, bench = single_frames(5, 17)
    assert "RIGHT KIDNEY LONG" in [line.text for line in bench.lines]
    keep = BenchImage(bench.name, copy.deepcopy(bench.dataset), bench.lines)
    ds = bench.dataset
    cleaner.clean(ds, header_identifiers(ds))
    results = dict(_covered(keep, ds))
    assert results["RIGHT KIDNEY LONG"] is False
    for line in bench.lines:
        if line.identifying and line.cap_height >= 10:
            assert results[line.text], "an identifying line is left"


def test_name_not_in_the_header_read_unsure_first_and_sure_second_is_painted(
    cleaner: PixelCleaner,
) -> None:
    """Stranger bench seed 11, image 12: 'Dr Egan' (cap 20, contrast 20%) in a box grown over
    speckle: radguard's recognizer made out 'ee 5mn' at 0.36, PP-OCR's 'Dr Egan' at 0.96. The
    unsure first reading dropped the line as speckle; the sure second one is its reading
    now, and a title before a word that is no clinical word identifies."""
    *_, bench = strangers(11, 13)
    assert "Dr Egan" in [line.text for line in bench.lines]
    keep = BenchImage(bench.name, copy.deepcopy(bench.dataset), bench.lines)
    ds = bench.dataset
    cleaner.clean(ds, header_identifiers(ds))
    assert dict(_covered(keep, ds))["Dr Egan"]


def test_faint_label_whose_first_letters_were_dropped_is_read_again_wider(
    cleaner: PixelCleaner,
) -> None:
    """Bench seed 5, image 0: a faint (10%) 'ABDOMEN' read as 'DOMEN' in its box; read again
    a little wider it reads whole and is kept; every identifier is still painted."""
    bench = next(iter(single_frames(5, 1)))
    keep = BenchImage(bench.name, copy.deepcopy(bench.dataset), bench.lines)
    ds = bench.dataset
    cleaner.clean(ds, header_identifiers(ds))
    for line, (_, gone) in zip(bench.lines, _covered(keep, ds), strict=True):
        if line.text == "ABDOMEN" and line.cap_height == 24:
            assert not gone
        if line.identifying and line.cap_height >= 10 and line.contrast >= 0.2:
            assert gone, "an identifying line is left"


def test_identifier_crossing_into_speckle_is_painted_to_its_end(cleaner: PixelCleaner) -> None:
    """Bench seed 5, images 54 and 56: a date whose first characters sit on the edge of the
    speckle sector (the detector's box starts at 'Aug') and a birth date whose last digits
    run into speckle: every identifying line is painted to its ends, the labels beside
    them are kept."""
    benches = list(single_frames(5, 57))
    for bench in (benches[54], benches[56]):
        keep = BenchImage(bench.name, copy.deepcopy(bench.dataset), bench.lines)
        ds = bench.dataset
        cleaner.clean(ds, header_identifiers(ds))
        for line, (_, gone) in zip(bench.lines, _covered(keep, ds), strict=True):
            if line.identifying and line.cap_height >= 10 and line.contrast >= 0.2:
                assert gone, f"{bench.name}: an identifying line is left"


def test_identifying_paint_reaches_over_the_rest_of_a_header_value_the_detector_cut_off(
    cleaner: PixelCleaner,
) -> None:
    """Held-out bench seed 11, image 39: of 'ST. HILDEGARD GENERAL HOSPITAL' (cap 10, 20%,
    cyan) the detector found 'ST. HILDEGARD GENERAL' only, and nothing where 'HOSPITAL'
    went on into speckle (a target-range miss, 78% covered). The header value goes on for
    8 characters: the paint does too."""
    *_, bench = single_frames(11, 40, labels=HELD_OUT_LABELS)
    assert "ST. HILDEGARD GENERAL HOSPITAL" in [line.text for line in bench.lines]
    keep = BenchImage(bench.name, copy.deepcopy(bench.dataset), bench.lines)
    ds = bench.dataset
    cleaner.clean(ds, header_identifiers(ds))
    assert dict(_covered(keep, ds))["ST. HILDEGARD GENERAL HOSPITAL"]


def test_what_a_reading_misses_of_the_header_value_it_matches() -> None:
    classifier = Classifier(["ST. HILDEGARD GENERAL HOSPITAL", "SMITHERS^TOBIAS", "HG1542790"])
    assert classifier.unread("ST, HILDEGARD GENERAL") == (0, 8)
    assert classifier.unread("GENERAL HOSP") == (11, 4)
    assert classifier.unread("1542790") == (2, 0)
    assert classifier.unread("Tobias Smithers") == (0, 0)  # the rest is read, before it
    assert classifier.unread("ID: HG1542790") == (0, 0)


def test_identifying_paint_reaches_along_its_row_short_of_kept_labels() -> None:
    from radguard.pixels.clean import TextFound, _reach_along

    line = TextFound(0, Box(100, 50, 200, 20), "x", 0.9, Verdict.IDENTIFYING, "test", True)
    assert _reach_along(line, [], 512).box == Box(80, 50, 240, 20)
    assert _reach_along(line, [], 310).box == Box(80, 50, 230, 20)  # the frame's edge
    label = Box(305, 48, 30, 22)  # a kept label on the row, right after the line
    assert _reach_along(line, [label, Box(0, 200, 99, 20)], 512).box == Box(80, 50, 225, 20)
    inside = Box(280, 50, 40, 20)  # a kept label overlapping the line's right end
    assert _reach_along(line, [inside], 512).box == Box(80, 50, 220, 20)
    # ten characters read, and the header value goes on for four more: 1.35 x 4 x 20 px
    line = replace(line, text="ST HILDEGA")
    assert _reach_along(line, [], 512, (0, 4)).box == Box(80, 50, 328, 20)
    assert _reach_along(line, [label], 512, (0, 4)).box == Box(80, 50, 225, 20)
    # the rightmost strip (100 px) of that line, 200 px wide, cut around a label kept at its
    # left end: the characters are still the line's width, 20 px, not 10 (review)
    strip = replace(line, box=Box(200, 50, 100, 20), span=200)
    assert _reach_along(strip, [], 512, (0, 4)).box == Box(180, 50, 228, 20)


def test_pieces_inside_a_kept_line_need_pixels_paint_left_alone() -> None:
    from radguard.pixels.clean import _unpainted
    from radguard.pixels.clean import _within as within_bare

    def _within(box: Box, kept: Box, touched: list[Box]) -> bool:
        return within_bare(_unpainted(box, touched), kept)

    kept = Box(100, 100, 120, 20)
    assert _within(Box(150, 102, 40, 14), kept, [])
    # paint took the bottom of the piece: what is left of it lies inside the kept line
    assert _within(Box(150, 110, 40, 20), kept, [Box(0, 120, 400, 40)])
    # a piece reaching out of the kept line reads pixels that reading never saw
    assert not _within(Box(200, 102, 60, 14), kept, [])
    assert not _within(Box(150, 102, 40, 14), kept, [Box(140, 90, 80, 40)])  # all paint


def test_cine_static_banner_every_frame_and_reuse(cleaner: PixelCleaner) -> None:
    bench = cine(4, frames=12, rows=300, cols=400)
    ds = bench.dataset
    keep = BenchImage(bench.name, copy.deepcopy(ds), bench.lines)
    report = cleaner.clean(ds, header_identifiers(ds))
    assert report.stats.full < report.stats.frames  # key frames only, the rest reused
    for text, gone in _covered(keep, ds):
        identifying = next(line.identifying for line in bench.lines if line.text == text)
        if identifying:
            assert gone, text


def _scrambled_clock(bench: BenchImage) -> tuple[Dataset, list[Any]]:
    """``bench``'s cine with every character of its clock changed every frame (nothing of
    it is steady from one frame to the next); the dataset and its lines."""
    ds = bench.dataset
    frames = ds.pixel_array.copy()
    rng = np.random.default_rng(3)
    lines: list[Any] = []
    for line in bench.lines:
        if line.frame < 0 or ":" not in line.text:
            lines.append(line)
            continue
        h, m, sec = (int(v) for v in rng.integers(0, [24, 60, 60]))
        text = f"{h:02d}:{m:02d}:{sec:02d}"
        while lines and ":" in lines[-1].text and text[0] == lines[-1].text[0]:
            text = f"{(int(text[:2]) + 7) % 24:02d}{text[2:]}"  # first digit changes too
        glyphs = text_mask(text, Font(line.font, line.size))
        frames[line.frame, line.y - 1 : line.y + line.h + 1, line.x - 1 : line.x + line.w + 6] = 0
        frames[line.frame, line.y : line.y + glyphs.shape[0], line.x : line.x + glyphs.shape[1]][
            glyphs
        ] = 255
        lines.append(replace(line, text=text, w=glyphs.shape[1], h=glyphs.shape[0]))
    ds.PixelData = frames.tobytes()
    return ds, lines


@pytest.mark.parametrize("reader", ["ppocr", "radguard"])
def test_cine_clock_changing_every_frame_is_painted_in_every_frame(reader: str) -> None:
    """Text that changes every frame between key frames (a running clock, here redrawn with a
    new first digit every frame) is never steady: the places where the key frame held text
    are read again in each frame (a phantom cine left one frame's clock before this; the
    test fails without it)."""
    from radguard.settings import PixelReader

    ds, lines = _scrambled_clock(cine(7, frames=8, rows=300, cols=400, tick=1))
    keep = BenchImage("clock", copy.deepcopy(ds), lines)
    policy = replace(POLICY, reader=PixelReader(reader), keyframe_interval=25)
    report = PixelCleaner(policy).clean(ds, header_identifiers(ds))
    assert report.stats.full < report.stats.frames  # frames between key frames exist
    clocks = [line for line in lines if line.frame >= 0]
    assert len({line.text for line in clocks}) == 8
    for text, gone in _covered(keep, ds):
        identifying = next(line.identifying for line in lines if line.text == text)
        if identifying:
            assert gone, text


def test_cine_clock_appearing_between_key_frames_is_painted(cleaner: PixelCleaner) -> None:
    """A clock that is not in the key frame, appears a few frames on and changes every frame:
    neither steady nor where the key frame held text; its changing rows of glyphs are read."""
    ds, lines = _scrambled_clock(cine(9, frames=10, rows=300, cols=400, tick=1, clock_from=3))
    keep = BenchImage("late clock", copy.deepcopy(ds), lines)
    report = cleaner.clean(ds, header_identifiers(ds))
    assert report.stats.full < report.stats.frames
    clocks = [line for line in lines if line.frame >= 0]
    assert [line.frame for line in clocks] == list(range(3, 10))
    for text, gone in _covered(keep, ds):
        identifying = next(line.identifying for line in lines if line.text == text)
        if identifying:
            assert gone, text


def test_layout_regions_applied_without_ocr_text(cleaner: PixelCleaner) -> None:
    from radguard.settings import DeviceLayout

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    layout = DeviceLayout("GE MEDICAL.*", ".*", None, None, ((0, 0, 40, 10),))
    own = PixelCleaner(replace(POLICY, layouts=(layout,)), cleaner.engine)
    report = own.clean(ds)
    assert report.layout_regions == 1
    assert np.all(ds.pixel_array[0:10, 0:40] == ds.pixel_array.min())


def test_refuses_when_text_is_still_read(
    cleaner: PixelCleaner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If painting failed, the re-read sees the institution and the file is not released."""
    ds = pydicom.dcmread(pydicom_file("examples_rgb_color.dcm"))
    monkeypatch.setattr(PixelCleaner, "_paint", lambda *args, **kwargs: None)
    with pytest.raises(Rejected, match="still read"):
        cleaner.clean(ds)


def test_tesseract_engine_reads_a_line() -> None:
    require_tool("tesseract")
    engine = TesseractEngine()
    image = np.zeros((60, 420), np.uint8)
    mask = text_mask("ZIMMERMANN 4411", Font("DejaVuSans.ttf", 26))
    image[12 : 12 + mask.shape[0], 8 : 8 + mask.shape[1]][mask] = 255
    lines = engine.read(image, engine.detect(image))
    assert any("ZIMMERMANN" in line.text.upper() for line in lines)
    with pytest.raises(EngineUnavailable, match="tesseract-ocr"):
        TesseractEngine("no-such-tesseract-binary")


def test_policy_pixels_section_validated(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'extends = "research"\n[pixels]\nscan = "sometimes"\nmargin = -1\npasses = ["blur"]\n'
        'spell_labels = "yes"\n'
        '[[pixels.layouts]]\nmanufacturer = "ACME"\nregions = [[0, 0, 10]]\n'
    )
    problems = check_policy(path)
    joined = "\n".join(problems)
    assert "line 3: pixels.scan" in joined
    assert "line 4: pixels.margin" in joined
    assert "pixels.passes" in joined
    assert "line 6: pixels.spell_labels: must be true or false" in joined
    assert "line 9: pixels.layouts.regions" in joined
    good = tmp_path / "g.toml"
    good.write_text(
        'extends = "research"\n[pixels]\nscan = "all"\nengine = "tesseract"\n'
        'keep = ["PAGE \\\\d+"]\nspell_labels = false\n'
        '[[pixels.layouts]]\nmanufacturer = "ACME.*"\n'
        "regions = [[0, 0, 100, 20]]\n"
    )
    policy = load_policy(good).pixels
    assert policy.scan is PixelScan.ALL and policy.layouts[0].regions == ((0, 0, 100, 20),)
    assert not policy.spell_labels and PixelPolicy().spell_labels
    with pytest.raises(PolicyError):
        load_policy(path)
    assert isinstance(PixelPolicy(), PixelPolicy)


def test_deid_pipeline_cleans_pixels_and_reports_triage(tmp_path: Path, keyring: Keyring) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("examples_rgb_color.dcm", "CT_small.dcm"):
        (src / name).write_bytes(pydicom_file(name).read_bytes())
    policy = load_policy("research").with_options(
        add=[__import__("radguard.profile.options", fromlist=["Option"]).Option.CLEAN_PIXEL_DATA]
    )
    out = tmp_path / "out"
    summary = run_deid(RunOptions(src, out, workers=1), policy, keyring)
    assert summary.exit_code == 0
    manifest = [
        json.loads(x) for x in (tmp_path / "out.run" / "manifest.jsonl").read_text().splitlines()
    ]
    notes = {Path(m["input"]).name: " ".join(m.get("reasons", [])) for m in manifest}
    assert "pixels: modality US" in notes["examples_rgb_color.dcm"]
    assert "pixels: not read" in notes["CT_small.dcm"]
    released = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    us = next(d for d in released if d.Modality == "US")
    assert us.BurnedInAnnotation == "NO"


def test_cli_scan_masks_identifying_text(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["pixels", "scan", "--json", str(pydicom_file("examples_rgb_color.dcm"))]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.strip().splitlines()[-1])
    identifying = [line for line in record["lines"] if line["verdict"] == "identifying"]
    assert identifying and all("*" in line["text"] for line in identifying)
    out = tmp_path / "clean.dcm"
    result = runner.invoke(
        main, ["pixels", "redact", str(pydicom_file("examples_rgb_color.dcm")), str(out)]
    )
    assert result.exit_code == 0, result.output
    assert pydicom.dcmread(out).BurnedInAnnotation == "NO"


def test_verify_reads_released_pixels(tmp_path: Path, keyring: Keyring) -> None:
    """The verifier's OCR check passes on a cleaned release and fails when the text is back."""
    from radguard.verify import verify

    src = tmp_path / "orig"
    src.mkdir()
    (src / "us.dcm").write_bytes(pydicom_file("examples_rgb_color.dcm").read_bytes())
    out = tmp_path / "deid"
    policy = load_policy("research")
    assert run_deid(RunOptions(src, out, workers=1), policy, keyring).exit_code == 0
    report = verify(out, src, policy)
    assert report.checks["burned-in text (OCR)"] == "passed"
    released = next(out.rglob("*.dcm"))
    ds = pydicom.dcmread(released)
    original = pydicom.dcmread(src / "us.dcm")
    ds.set_pixel_data(original.pixel_array, "RGB", 8, generate_instance_uid=False)
    ds.save_as(released, enforce_file_format=True)
    leaked = verify(out, src, policy)
    assert leaked.checks["burned-in text (OCR)"] == "failed"
    burned = [f for f in leaked.findings if f.category == "burned_in"]
    assert burned and all("BAPTIST" not in f.found for f in burned)  # masked


def test_verify_needs_a_sure_reading_for_text_that_only_looks_identifying(
    tmp_path: Path,
) -> None:
    """Phantom seed 756763521 (test_prove): the verifier read the edges of painted boxes in a
    released CR as 'HEE EE' at 0.21 and called it a first name and surname. A line that only
    looks identifying is a finding when read at min_score or more; one that holds an
    identifier of the originals is one however unsure the reading."""
    from types import SimpleNamespace

    from radguard.pixels.audit import read_released

    path = tmp_path / "cr.dcm"
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.Modality = "CR"  # triaged: burned-in text is likely
    ds.save_as(path, enforce_file_format=True)
    box = Box(10, 10, 80, 12)
    lines = [
        TextFound(0, box, "HEE EE", 0.21, Verdict.IDENTIFYING, "pattern", True),
        TextFound(0, box, "Maria Lopez", 0.9, Verdict.IDENTIFYING, "pattern", True),
        TextFound(0, box, "OKONKWO", 0.3, Verdict.UNKNOWN, "unsure", True),
    ]
    stub = SimpleNamespace(scan=lambda ds, ids: SimpleNamespace(found=lines))
    policy = load_policy("research").pixels
    own = lambda text: ["patient name of the originals"] if "OKONKWO" in text else []  # noqa: E731
    found = read_released(path, policy, own, stub)
    assert found == [
        (0, "Maria Lopez", "pattern: first name and surname"),
        (0, "OKONKWO", "patient name of the originals"),
    ]


def test_answer_key_boxes_legible_before_not_after(cleaner: PixelCleaner) -> None:
    from radguard.pixels.audit import box_legible

    bench = cine(6, frames=3, rows=240, cols=320)
    ds = bench.dataset
    banner = [line for line in bench.lines if line.identifying and line.frame < 0]
    boxes = [
        {"x": b.x, "y": b.y, "text": b.text, "font": b.font, "size": b.size, "ink": [255]}
        for b in banner
    ]
    assert all(box_legible(ds.pixel_array, 1, box, 1) for box in boxes)
    cleaner.clean(ds, header_identifiers(ds))
    assert not any(box_legible(ds.pixel_array, 1, box, 1) for box in boxes)


def test_second_readings_fail_closed(cleaner: PixelCleaner) -> None:
    """A short clinical reading does not keep a line another reading sees more of; a second
    reading that is only a piece of the first does not turn it into a label."""
    classifier = Classifier([])
    box = Box(10, 10, 120, 14)
    name_cut_short = Line(box, "R", 0.85, 0, (("Rosalndsmithers", 0.62),))
    found = cleaner._decide(0, name_cut_short, classifier)
    assert found is not None and found.redacted
    piece = Line(box, "SMITH J", 0.95, 0, (("L", 0.9),))
    found = cleaner._decide(0, piece, classifier)
    assert found is not None and found.redacted and found.verdict is not Verdict.CLINICAL
    unreadable_row = Line(Box(10, 10, 200, 16), "", 0.1, 5)
    found = cleaner._decide(0, unreadable_row, classifier)
    assert found is not None and found.redacted and "unreadable" in found.why
    # nothing read over a row of glyphs: a clinical second reading does not keep it
    row_read_as_label = Line(Box(10, 10, 200, 16), "", 0.0, 5, (("R", 0.9), ("LIVER", 0.95)))
    found = cleaner._decide(0, row_read_as_label, classifier)
    assert found is not None and found.redacted and "unreadable" in found.why
    # nothing read over a piece or two of ink: a sure second reading becomes the reading
    named = Classifier(["SMITHERS^ROSALIND"])
    short = Line(Box(10, 10, 90, 16), "", 0.0, 1, (("SMITHERS", 0.9),))
    found = cleaner._decide(0, short, named)
    assert found is not None and found.redacted and found.verdict is Verdict.IDENTIFYING
    unsure = Line(Box(10, 10, 90, 16), "", 0.0, 1, (("SMITHERS", 0.3), ("S", 0.9)))
    found = cleaner._decide(0, unsure, named)  # any reading that identifies is painted
    assert found is not None and found.redacted
    speckle = Line(Box(10, 10, 90, 16), "", 0.0, 1, (("ii", 0.3),))
    assert cleaner._decide(0, speckle, named) is None  # nothing read surely: no text


def test_clock_read_in_pieces_is_painted_whole(cleaner: PixelCleaner) -> None:
    """A clock read as two short pieces ('10' and ':32', each too short to identify alone)
    is a clock once joined at its mark: both pieces are painted."""
    pieces = [Line(Box(100, 40, 22, 16), "10", 0.9, 2), Line(Box(124, 40, 30, 16), ":32", 0.9, 2)]
    found = cleaner._judge(0, pieces, Classifier([]), (512, 512))
    painted = [f for f in found if f.redacted]
    assert painted and all(f.verdict is Verdict.IDENTIFYING for f in painted)
    covered = np.zeros(512, bool)
    for f in painted:
        if f.box.y <= 40 and f.box.y + f.box.h >= 56:
            covered[f.box.x : f.box.x + f.box.w] = True
    assert covered[100:154].all()  # both pieces and the gap between them, full height


class _RowEngine:
    """A stand-in engine for the cine logic alone: one box around the bright pixels, read as
    ``text`` (what a real engine reads is not the point here)."""

    name = EngineName.RAPIDOCR

    def __init__(self, text: str) -> None:
        self.text = text

    def detect(self, image: np.ndarray) -> list[Box]:
        grey = image if image.ndim == 2 else image.max(axis=2)
        ys, xs = np.nonzero(grey > 200)
        if ys.size == 0:
            return []
        return [Box(int(xs.min()) - 2, int(ys.min()) - 2, int(np.ptp(xs)) + 5, int(np.ptp(ys)) + 5)]

    def read(self, image: np.ndarray, boxes: list[Box]) -> list[Line]:
        return [Line(box, self.text, 0.99) for box in boxes]


@pytest.mark.parametrize("text", ["SMITH JOHN", ""])
def test_cine_key_lines_stay_in_frames_where_a_little_changed(text: str) -> None:
    """Between key frames a line of the key frame is carried over unless its text changed,
    and read again where it did: a few changed pixels in its box or a row of glyphs read as
    nothing and moving a pixel a frame must not drop it from a frame (a behaviour check on a
    stand-in engine; the static-banner read also covers the first case here)."""
    from radguard.pixels.detect import Pass, read_frames

    frames = np.zeros((6, 120, 220), np.uint8)
    glyphs = np.zeros((10, 8), bool)
    glyphs[:, :2] = glyphs[:, 6:] = glyphs[:2] = glyphs[8:] = True  # a ring: one glyph
    for f in range(6):
        shift = f if not text else 0  # the unread row moves a pixel a frame
        for g in range(10):
            x = 20 + shift + g * 18
            frames[f, 50:60, x : x + 8][glyphs] = 255
    frames[2, 52:58, 68:70] = 255  # a few pixels of new ink between two glyphs in frame 2
    lines = read_frames(_RowEngine(text), frames, (Pass.FUSED,), keyframe_interval=25)
    for f in range(6):
        shift = f if not text else 0
        margin = POLICY.margin  # what is painted: the box and the margin around it
        assert any(
            line.box.x - margin <= 20 + shift
            and line.box.x + line.box.w + margin >= 20 + shift + 170
            for line in lines[f]
        ), f"frame {f}: {[line.box for line in lines[f]]}"


def test_glyph_rows_of_changing_ink() -> None:
    """Rows of three or more glyph-shaped pieces on one baseline are found; two pieces, or
    pieces out of line, are not; a mask of noise everywhere is too busy to tell (None) or
    yields many rows, and either way the frame is read in full by the caller."""
    import cv2

    from radguard.pixels.detect import _MAX_ROWS, _glyph_rows

    mask = np.zeros((200, 300), bool)
    for x in (20, 32, 44, 56):  # a row of four 8x12 glyphs
        mask[100:112, x : x + 8] = True
    assert _glyph_rows(mask) == [Box(20, 100, 44, 12)]
    two = np.zeros((200, 300), bool)
    two[100:112, 20:28] = two[100:112, 32:40] = True
    assert _glyph_rows(two) == []
    stairs = np.zeros((200, 300), bool)
    for k, x in enumerate((20, 32, 44)):
        stairs[40 + 30 * k : 52 + 30 * k, x : x + 8] = True
    assert _glyph_rows(stairs) == []
    # sparse noise, thickened as the caller thickens ink: blobs line up by chance
    noise = np.random.default_rng(0).random((1024, 1024)) > 0.97
    noise = np.asarray(cv2.dilate(noise.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    rows = _glyph_rows(noise)
    assert rows is None or len(rows) > _MAX_ROWS
