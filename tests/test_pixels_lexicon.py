"""The label-constrained reading (radguard.pixels.lexicon) on hand-made CTC probabilities."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from radguard.pixels.classify import (
    Classifier,
    Decision,
    Verdict,
    label_slips,
    reads_as_name,
)
from radguard.pixels.clean import PixelCleaner, _second_opinion
from radguard.pixels.engines import Box, Line
from radguard.pixels.lexicon import Language, label_language, nearest_label
from radguard.settings import load_policy

CHARSET = ["", *" -/.%:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]


def _probs(steps: list[dict[str, float]]) -> np.ndarray:
    """One step per dict (character -> probability; the rest to the blank), a blank step
    between every two so repeated letters stay apart."""
    rows = []
    for step in steps:
        for spec in (step, {}):
            row = np.zeros(len(CHARSET), np.float32)
            for char, p in spec.items():
                row[CHARSET.index(char)] = p
            row[0] = 1.0 - row.sum()
            rows.append(row)
    return np.stack(rows)


def _word(text: str, p: float = 0.95) -> list[dict[str, float]]:
    return [{c: p} for c in text]


def accepts(language: Language, text: str) -> bool:
    states = frozenset({(0, 0)})
    for symbol in text.upper():
        states = language.step(states, symbol)
        if not states:
            return False
    return language.accepts(states)


@pytest.mark.parametrize(
    "text",
    [
        "RIGHT KIDNEY LONG",
        "L12-5",
        "C5-1",
        "12 cm",
        "PW 2.5 cm/s",
        "GAIN 50%",
        "LIVERTRV",
        "D1 1.23 CM",
    ],
)
def test_labels_are_in_the_language(text: str) -> None:
    assert accepts(label_language(), text)


@pytest.mark.parametrize(
    "text", ["OLIVER", "10:32", "1234", "1.234", "RIGHT ", "-RIGHT", "KIDNE", "SMITH", "12..5"]
)
def test_other_text_is_not(text: str) -> None:
    assert not accepts(label_language(), text)


def test_a_misread_letter_the_image_also_supports_reads_as_the_label() -> None:
    # 'PIGHT': the first letter read P at 0.6, R at 0.35
    steps = [{"P": 0.6, "R": 0.35}, *_word("IGHT")]
    found = nearest_label(_probs(steps), CHARSET)
    assert found is not None
    text, ratio = found
    assert text == "RIGHT"
    assert ratio == pytest.approx(0.35 / 0.6, rel=0.05)


def test_a_letter_the_image_does_not_support_is_far() -> None:
    # OLIVER read clearly: LIVER would need the O unread
    found = nearest_label(_probs(_word("OLIVER", 0.98)), CHARSET)
    assert found is None or found[1] < 0.05


def test_case_is_read_alike() -> None:
    found = nearest_label(_probs([{"c": 0.9}, {"m": 0.9}]), CHARSET)
    assert found is not None and found[0] == "CM" and found[1] == pytest.approx(1.0)


def test_nothing_in_the_language_gives_none() -> None:
    assert nearest_label(_probs([{":": 0.99}, {":": 0.99}]), CHARSET) is None


@pytest.mark.parametrize(
    ("read", "label", "slips"),
    [
        ("PIGHT FIDNEY LONG", "RIGHT KIDNEY LONG", 2),  # look-alike letters beside LONG
        ("RIGHT KIDNE, LONG", "RIGHT KIDNEY LONG", 1),  # a symbol read for a letter
        ("2IGHT KIDNEY LONG", "RIGHT KIDNEY LONG", 1),  # a digit read for a letter
        ("FW 2.5 cm/s", "PW 2.5 CM/S", 1),
        ("L13:5", "L13-5", None),  # the mark between two digits is a clock's or a date's
        ("LIVERTRV 12cm", "LIVER TRV 12 CM", 2),  # spaces between characters read together
        ("LIVER  TRV", "LIVER TRV", 0),  # ...and free where the reading had one
        ("FPS 2871", "FPS 28 71", None),  # ...but not inside a number read whole
        ("Raio", "RAO", None),  # a letter read is never left out
        ("Jung", "LUNG", None),  # a census name
        ("Nock", "NECK", None),  # E for O is no look-alike; and alone
        ("RIGHI", "RIGHT", None),  # a census name, and alone
        ("LIVER TIV", "LIVER TRV", None),  # R for I is no look-alike
        ("Frane Pfe", "FRAME PRE", None),  # no word read exactly
        ("Dr Noa", "DR NODE", None),  # a letter missed at a word's end; DR anchors nothing
        ("Jung 12-5", "LUNG 12-5", None),  # numbers anchor nothing
        ("LLZ#5", "L12-5", 1),  # letters read for the digits they look like: no slip
        ("482210 CM", "482 210 CM", None),  # an ID read as short numbers
        ("4822 CM", "48.22 CM", None),
        ("482210 CM", "482-10 CM", None),  # a digit read is never taken for a mark
        # (review) a read character taken for a space; look-alikes the wrong way round or
        # without any digit read; a name's letter read as a digit
        ("FPS 2871", "FPS 28 1", None),
        ("LT 48221", "LT 48 21", None),
        ("Chidi", "CHI L", None),
        ("Obi", "OBL", None),
        ("Abo", "ABD", None),
        ("10 32", "L0 32", None),
        ("12-05", "L2-05", None),
        ("Abdl", "ABD1", None),
        ("Cid", "C1D", None),
        # (second review) a clock's mark changed; a name's letters read as digits; a name
        # read with a digit for one of its letters
        ("LT 10:3Z", "LT 10.32", None),
        ("10:3Z LT", "10 32 LT", None),
        ("LIZ 12", "L12 12", None),
        ("RT 1UNG", "RT LUNG", None),
        ("RT SCO1T", "RT SCOUT", None),
    ],
)
def test_label_slips(read: str, label: str, slips: int | None) -> None:
    assert label_slips(read, label) == slips


def test_a_title_before_a_word_that_is_no_clinical_word_identifies() -> None:
    classifier = Classifier([])
    assert classifier.decide("Dr Egan").verdict is Verdict.IDENTIFYING
    assert classifier.decide("MRS. Hale").verdict is Verdict.IDENTIFYING
    assert classifier.decide("Gn 60 DR 65").verdict is Verdict.CLINICAL
    assert classifier.decide("DR LIVER").verdict is Verdict.CLINICAL


BOX = Box(10, 10, 120, 16)
UNKNOWN = Decision(Verdict.UNKNOWN, "neither")


def test_a_label_reading_keeps_a_misread_label() -> None:
    line = Line(BOX, "PIGHT FIDNEY LONG", 0.9, label=("RIGHT KIDNEY LONG", 0.04))
    decision = _second_opinion(UNKNOWN, line, Classifier([]))
    assert decision.verdict is Verdict.CLINICAL
    # far less probable than what was read: not this label
    line = replace(line, label=("RIGHT KIDNEY LONG", 0.001))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


@pytest.mark.parametrize(
    ("read", "label"), [("Nock", "NECK"), ("PEAL", "PEAK"), ("Raio", "RAO"), ("Jung", "LUNG")]
)
def test_a_name_is_not_read_as_the_label_it_looks_like(read: str, label: str) -> None:
    """Names a letter from a clinical word, read clearly, whose label reading the
    recognizer found 2-25% as likely (pixel bench probes): painted."""
    line = Line(BOX, read, 0.95, label=(label, 0.25))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


def test_a_name_read_clearly_is_not_overruled_by_a_second_reading_that_is_a_label() -> None:
    line = Line(BOX, "POOT", 0.95, others=(("POST", 0.9),))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN
    assert reads_as_name("Jung") and not reads_as_name("RIGHT KIDNEY LONG")


def test_a_label_reading_does_not_keep_a_line_another_reading_saw_more_of() -> None:
    """(review) 'Abo' with a label reading ABD, where the other readings saw 'Abo 48221'."""
    line = Line(BOX, "Abo", 0.9, 2, (("Abo 48221", 0.85),), ("ABD", 0.5))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


@pytest.mark.parametrize(("first", "score"), [("- -", 0.9), ("~", 0.99), ("'.", 0.7)])
def test_a_sure_reading_of_marks_gives_way_to_a_readable_second_one(
    first: str, score: float
) -> None:
    """(review) A first reading of marks alone, however sure, is nothing read: a readable
    second reading that is no label is the line's reading, and painted."""
    cleaner = PixelCleaner(load_policy("research").pixels, engine=_RECORD_ONLY)
    line = Line(Box(100, 40, 120, 16), first, score, 2, (("Odili 4471", 0.8),))
    found = cleaner._judge(0, [line], Classifier([]), (512, 512))
    assert found and all(f.redacted for f in found)


_RECORD_ONLY: Any = object()  # judging reads nothing: no engine is needed


def test_a_clock_read_with_a_letter_for_a_digit_keeps_no_label_reading() -> None:
    """(second review) 'LT 10:3Z' is a clock read with Z for 2: its label reading LT 10.32
    would hide it; any reading that identifies with its look-alike digits restored blocks
    the label reading."""
    line = Line(BOX, "LT 10:3Z", 0.9, 2, (), ("LT 10.32", 0.07))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


def test_a_name_in_another_reading_blocks_a_label_reading() -> None:
    """(second review) 'RT 1UNG' read where another reading saw 'RT JUNG'."""
    line = Line(BOX, "RT 1UNG", 0.9, 2, (("RT JUNG", 0.6),), ("RT LUNG", 0.11))
    assert _second_opinion(UNKNOWN, line, Classifier([])).verdict is Verdict.UNKNOWN


def test_a_reading_that_replaced_an_unsure_one_is_never_made_clinical() -> None:
    """(second review) A name read unsure ('RT JUNG' 0.4), replaced by a sure reading that
    is no label ('RT JUNC' 0.6), must not then be kept for a clinical second reading."""
    cleaner = PixelCleaner(load_policy("research").pixels, engine=_RECORD_ONLY)
    line = Line(Box(10, 10, 120, 20), "RT JUNG", 0.4, 0, (("RT JUNC", 0.6), ("RT LUNG", 0.85)))
    found = cleaner._judge(0, [line], Classifier([]), (512, 512))
    assert found and all(f.redacted for f in found)


def test_a_piece_kept_for_its_label_reading_is_painted_with_an_identifying_row() -> None:
    cleaner = PixelCleaner(load_policy("research").pixels, engine=_RECORD_ONLY)
    date = Line(Box(10, 10, 80, 20), "12/05/80", 0.9, 8)
    piece = Line(
        Box(100, 10, 80, 20), "PIGHT FIDNEY LONG", 0.9, 2, label=("RIGHT KIDNEY LONG", 0.5)
    )
    found = cleaner._judge(0, [date, piece], Classifier([]), (512, 512))
    covered = np.zeros(512, bool)
    for f in found:
        if f.redacted:
            covered[f.box.x : f.box.x + f.box.w] = True
    assert covered[10:180].all()
