"""Deciding lines of burned-in text from several readings (radguard.pixels.clean/classify):
names the header does not hold, sure and unsure readings, rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from radguard.pixels.classify import Classifier, Decision, Verdict, reads_as_name
from radguard.pixels.clean import PixelCleaner, _second_opinion
from radguard.pixels.engines import Box, Line
from radguard.settings import load_policy

BOX = Box(10, 10, 120, 16)
UNKNOWN = Decision(Verdict.UNKNOWN, "neither")
_RECORD_ONLY: Any = object()  # judging reads nothing: no engine is needed


@pytest.fixture(scope="module")
def cleaner() -> PixelCleaner:
    return PixelCleaner(load_policy("research").pixels, engine=_RECORD_ONLY)


def test_a_title_before_a_word_that_is_no_clinical_word_identifies() -> None:
    classifier = Classifier([])
    assert classifier.decide("Dr Egan").verdict is Verdict.IDENTIFYING
    assert classifier.decide("MRS. Hale").verdict is Verdict.IDENTIFYING
    assert classifier.decide("Gn 60 DR 65").verdict is Verdict.CLINICAL
    assert classifier.decide("DR LIVER").verdict is Verdict.CLINICAL


def test_a_name_read_clearly_is_not_overruled_by_a_second_reading_that_is_a_label() -> None:
    """Pixel bench probe: 'POOT' burned at full contrast was kept because another reading
    ('POST') was a confident clinical label."""
    line = Line(BOX, "POOT", 0.95, others=(("POST", 0.9),))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


def test_a_name_in_any_sure_reading_blocks_a_clinical_second_reading() -> None:
    """'RT 1UNG' (a digit for the J of JUNG) where another sure reading saw 'RT JUNG'."""
    line = Line(BOX, "RT 1UNG", 0.9, 2, (("RT JUNG", 0.6), ("RT LUNG", 0.85)))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN
    line = Line(BOX, "RT 1UNG", 0.9, 2, (("RT LUNG", 0.85),))  # digits read as letters too
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("POOT", True),
        ("Jung", True),
        ("V0LZ", True),  # a zero for the O
        ("RIGHT KIDNEY LONG", False),  # census names that are clinical words do not count
        ("PIGHT FIDNEY LONG", False),
        ("L12-5", False),
        ("MI 1.1 TIS 0.4", False),
    ],
)
def test_reads_as_name(text: str, named: bool) -> None:
    assert reads_as_name(text) is named


@pytest.mark.parametrize(("first", "score"), [("- -", 0.9), ("~", 0.99), ("'.", 0.7)])
def test_a_sure_reading_of_marks_gives_way_to_a_readable_second_one(
    cleaner: PixelCleaner, first: str, score: float
) -> None:
    """(review) A first reading of marks alone, however sure, is nothing read: a readable
    second reading that is no label is the line's reading, and painted."""
    line = Line(Box(100, 40, 120, 16), first, score, 2, (("Odili 4471", 0.8),))
    found = cleaner._judge(0, [line], Classifier([]), (512, 512))
    assert found and all(f.redacted for f in found)


def test_an_unsure_reading_gives_way_to_a_sure_second_one(cleaner: PixelCleaner) -> None:
    """'ee 5mn' at 0.36 (dropped as speckle before) where the other recognizer read
    'Dr Egan' at 0.96: the line is that reading, and identifies."""
    line = Line(Box(85, 297, 427, 107), "ee 5mn", 0.36, 0, (("Dr Egan", 0.96),))
    found = cleaner._judge(0, [line], Classifier([]), (512, 512))
    assert found and all(f.redacted for f in found)
    assert found[0].verdict is Verdict.IDENTIFYING


def test_a_reading_that_replaced_an_unsure_one_is_never_made_clinical(
    cleaner: PixelCleaner,
) -> None:
    """(second review) A name read unsure ('RT JUNG' 0.4), replaced by a sure reading that
    is no label ('RT JUNC' 0.6), must not then be kept for a clinical second reading."""
    line = Line(Box(10, 10, 120, 20), "RT JUNG", 0.4, 0, (("RT JUNC", 0.6), ("RT LUNG", 0.85)))
    found = cleaner._judge(0, [line], Classifier([]), (512, 512))
    assert found and all(f.redacted for f in found)


def test_an_identifying_row_is_painted_piece_by_piece_not_as_one_rectangle(
    cleaner: PixelCleaner,
) -> None:
    """Pixel bench seed 11, image 48: an ID line and a box where nothing was read (grown
    over speckle to 106 rows) made one row; the rectangle around them painted the label
    above ('LT'). The pieces, the gap between them at the text's height, and the unread box
    within half that height above and below are painted; the label is not."""
    id_line = Line(Box(199, 309, 313, 37), "ID: HG4822106", 0.9, 8)
    unread = Line(Box(0, 302, 190, 106), "", 0.0, 0)
    label = Line(Box(353, 284, 38, 22), "LT", 0.95, 2)
    found = cleaner._judge(0, [id_line, unread, label], Classifier([]), (512, 512))
    painted = np.zeros((512, 512), bool)
    for f in found:
        if f.redacted:
            b = f.box
            painted[b.y : b.y + b.h, b.x : b.x + b.w] = True
    assert painted[309:346, 199:512].all()  # the ID line
    assert painted[309:346, 0:199].all()  # the unread piece and the gap, at the text's height
    assert not painted[284:306, 353:391].any()  # the label above keeps its pixels
    assert not painted[400:408, 0:190].any()  # the unread box's far rows are not painted
