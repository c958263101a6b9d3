"""Labels spelled by the recognizer's own output (radguard.pixels.lexicon): the CTC
probability of a text is the sum over its alignments, a misread label whose right letters the
recognizer half saw is kept, and a name a label's spelling lies near is not."""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from radguard.pixels.classify import CLINICAL_VOCABULARY, census_names
from radguard.pixels.lexicon import Speller, ctc_log_likelihoods, nearby, spellings

CHARSET = ["", " ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"abcdefghijklmnopqrstuvwxyz", *"0123456789"]
CHARSET += [*"!.-^"]
INDEX = {c: k for k, c in enumerate(CHARSET) if c}


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out: list[int] = []
    previous = None
    for c in path:
        if c != previous and c != 0:
            out.append(c)
        previous = c
    return tuple(out)


def test_ctc_likelihood_is_the_sum_over_every_alignment() -> None:
    rng = np.random.default_rng(3)
    steps, classes = 6, 4
    probs = rng.random((steps, classes))
    probs /= probs.sum(axis=1, keepdims=True)
    total: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        p = math.prod(probs[t, c] for t, c in enumerate(path))
        total[_collapse(path)] = total.get(_collapse(path), 0.0) + p
    texts = [(), (1,), (1, 1), (2, 3, 1), (3, 3, 3), (1, 2, 1, 2), (1, 1, 1, 1)]
    got = np.exp(ctc_log_likelihoods(np.log(probs), texts))
    want = [total.get(t, 0.0) for t in texts]
    assert np.allclose(got, want, rtol=1e-9, atol=1e-15)
    assert got[-1] == 0.0  # four repeats need seven steps


def _probs(*steps: dict[str, float]) -> np.ndarray:
    """Per-step probabilities: each character of a step's dict emitted with its weight
    (the rest blank), a blank step after each."""
    rows = []
    for step in steps:
        row = np.full(len(CHARSET), 1e-6)
        for c, p in step.items():
            row[INDEX[c]] = p
        row[0] = max(1e-6, 1.0 - sum(step.values()))
        rows.append(row / row.sum())
        blank = np.full(len(CHARSET), 1e-6)
        blank[0] = 1.0
        rows.append(blank / blank.sum())
    return np.asarray(rows, np.float32)


def _sure(text: str, **torn: dict[str, float]) -> np.ndarray:
    """``text`` read surely, but at positions named ``at<k>`` the given mix."""
    return _probs(*(torn.get(f"at{k}", {c: 0.98}) for k, c in enumerate(text)))


def _speller(identifiers: tuple[str, ...] = ()) -> Speller:
    """The speller the pixel stage builds for a file with these identifying values."""
    from radguard.pixels.classify import Classifier
    from radguard.pixels.clean import PixelCleaner
    from radguard.settings import PixelPolicy

    speller = PixelCleaner(PixelPolicy(), engine=object())._speller(Classifier(identifiers))  # type: ignore[arg-type]
    assert speller is not None
    return speller


def test_a_label_read_with_letters_the_recognizer_half_saw_is_spelled() -> None:
    speller = _speller()
    # 'PIGHT FIDNEY LONG' where R and K had a quarter of their steps' probability
    probs = _sure("RIGHT KIDNEY LONG", at0={"P": 0.7, "R": 0.25}, at6={"F": 0.6, "K": 0.35})
    # the best supported spelling that is a label: PIGHT (one slip from RIGHT beside KIDNEY)
    # stays, as the recognizer favours P; K replaces F
    assert speller(probs, CHARSET, "PIGHT FIDNEY LONG") == "PIGHT KIDNEY LONG"
    # the same reading with R and K all but unseen: nothing the pixels support
    unseen = _sure("RIGHT KIDNEY LONG", at0={"P": 0.97, "R": 1e-5}, at6={"F": 0.97, "K": 1e-5})
    assert speller(unseen, CHARSET, "PIGHT FIDNEY LONG") is None


def test_a_name_near_a_label_is_not_spelled_as_one() -> None:
    speller = _speller()
    # 'zower': P (POWER, a clinical word) as likely as T (TOWER, a census surname)
    torn = _sure("zower", at0={"z": 0.8, "p": 0.08, "t": 0.1})
    found = speller.weigh(torn, CHARSET, "zower")
    assert found is not None and found[0] == "power"
    assert speller(torn, CHARSET, "zower") is None  # a name spelling is as well supported
    # with T unseen, the name is far less likely than the label: spelled
    label = _sure("zower", at0={"z": 0.8, "p": 0.19, "t": 1e-6})
    assert speller(label, CHARSET, "zower") == "power"
    # a name read surely is never a label's spelling
    assert speller(_sure("TOWER"), CHARSET, "TOWER") is None


def test_a_letter_read_at_an_end_of_a_short_word_stays() -> None:
    """SYSO (a surname no census lists) with its O only fairly sure is not SYS: a letter more
    at an end of a short clinical word is how names look. A long word may lose one (a speck
    read as a letter before ABDOMEN)."""
    torn = _sure("SYSO", at3={"O": 0.6})
    found = _speller().weigh(torn, CHARSET, "SYSO")
    assert found is None or found[0] != "SYS"
    assert _speller()(torn, CHARSET, "SYSO") is None
    # nor SYST, a substitution the pixels support at 1/450 of the reading (the bench's SYSO,
    # cap 10, 10% contrast): enough beside a number (FFS 28 as FPS 28), not for a lone word
    faint = _sure("SYSO", at3={"O": 0.9, "T": 0.002})
    found = _speller().weigh(faint, CHARSET, "SYSO")
    assert found is not None and found[0] == "SYST" and -3 < found[1] / math.log(10) < -2
    assert _speller()(faint, CHARSET, "SYSO") is None


def test_a_lone_short_word_needs_more_support() -> None:
    """A line whose letters are one short word (numbers and single letters beside it aside)
    is spelled only at 1/100 of the reading's probability: names stand so (SYSO 12, R SYSO).
    Here the support is between 1/1000 and 1/100 and no name comes near: only that rule
    stops it, and beside another word the same spelling is kept."""
    speller = _speller()
    for reading in ("FFS 28", "R FFS", "FFS i 12"):
        torn = _sure(reading, **{f"at{reading.index('FFS') + 1}": {"F": 0.9, "P": 0.002}})
        found = speller.weigh(torn, CHARSET, reading)
        assert found is not None and found[0] == reading.replace("FFS", "FPS")
        assert -3 < found[1] / math.log(10) < -2 and found[2] / math.log(10) > 1
        assert speller(torn, CHARSET, reading) is None, reading
    beside = _sure("LIVER FFS 28", at7={"F": 0.9, "P": 0.002})
    assert speller(beside, CHARSET, "LIVER FFS 28") == "LIVER FPS 28"
    speck = _sure("CABDOMEN", at0={"C": 0.6})
    assert _speller()(speck, CHARSET, "CABDOMEN") == "ABDOMEN"


def test_the_files_own_names_are_rivals_too() -> None:
    """A patient whose surname no census lists (PIDNEY) read 'FIDNEY' with P and K equally
    likely is no KIDNEY: the file's identifying words are weighed as names are."""
    torn = _sure("FIDNEY", at0={"F": 0.6, "K": 0.2, "P": 0.2})
    assert _speller()(torn, CHARSET, "FIDNEY") == "KIDNEY"
    assert _speller(("PIDNEY^ANNA",))(torn, CHARSET, "FIDNEY") is None


def test_spellings_and_names_nearby() -> None:
    found = spellings("PIGHT FIDNEY LONG", CLINICAL_VOCABULARY)
    assert "RIGHT KIDNEY LONG" in found and "PIGHT FIDNEY LONG" not in found
    assert spellings("12 cq", CLINICAL_VOCABULARY)[0].startswith("12 ")  # numbers as read
    near = nearby("zower", census_names(), 1)
    assert {"TOWER", "POWER"} <= near
    assert "ZOWER" not in near or "ZOWER" in census_names()


def test_the_pixel_stage_keeps_a_label_only_its_spelling_makes_out() -> None:
    """End to end on the pixel bench's image 18 of seed 11: a faint 12 px 'RIGHT KIDNEY
    LONG' that the recognizer reads 'RIGHT KIDNE, LONG' is kept with ``spell_labels``,
    painted without it; the identifying lines are painted either way."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("rapidocr")
    from radguard.phantom.pixelbench import glyph_mask, single_frames
    from radguard.pixels.classify import header_identifiers
    from radguard.pixels.clean import PixelCleaner
    from radguard.pixels.frames import decode
    from radguard.settings import load_policy

    image = next(itertools.islice(single_frames(11, 19), 18, None))
    label = next(ln for ln in image.lines if ln.text == "RIGHT KIDNEY LONG" and ln.cap_height == 12)
    painted: dict[bool, float] = {}
    for spell in (True, False):
        policy = replace(load_policy("research").pixels, spell_labels=spell)
        ds = copy.deepcopy(image.dataset)
        before = decode(ds).array.copy()
        report = PixelCleaner(policy).clean(ds, header_identifiers(ds))
        after = decode(ds).array
        changed = before[0] != after[0]
        if changed.ndim == 3:
            changed = changed.any(axis=2)
        window = (slice(label.y, label.y + label.h), slice(label.x, label.x + label.w))
        painted[spell] = float(changed[window][glyph_mask(label)].mean())
        if spell:
            assert any("spelling the recognizer supports" in f.why for f in report.found)
        for line in image.lines:
            if line.identifying and line.cap_height >= 10 and line.contrast >= 0.2:
                box = (slice(line.y, line.y + line.h), slice(line.x, line.x + line.w))
                assert changed[box][glyph_mask(line)].all(), line.text
    assert painted[True] == 0.0
    assert painted[False] > 0.5


def test_a_misread_month_is_a_rival() -> None:
    """'12 FES 80' (a birth date, its B read as S) is no '12 RES 80' where B is as likely as
    R: months are weighed as names are."""
    torn = _sure("12 FES 80", at3={"F": 0.949, "R": 0.05}, at5={"S": 0.949, "B": 0.05})
    found = _speller().weigh(torn, CHARSET, "12 FES 80")
    assert found is not None and found[0] == "12 RES 80" and found[2] < math.log(10)
    assert _speller()(torn, CHARSET, "12 FES 80") is None


def test_accented_own_names_match_and_are_rivals() -> None:
    """A header name with accents (PÍDNEY) is read without them: the reading matches it,
    and its unaccented form is a rival of a label's spelling."""
    from radguard.pixels.classify import Classifier, Verdict

    classifier = Classifier(("PÍDNEY^ANNA",))
    assert classifier.decide("FIDNEY").verdict is Verdict.IDENTIFYING  # one letter off
    assert "PIDNEY" in classifier.words
    torn = _sure("FIDNEY", at0={"F": 0.6, "K": 0.3, "P": 0.1})
    assert _speller()(torn, CHARSET, "FIDNEY") == "KIDNEY"
    assert _speller(("PÍDNEY^ANNA",))(torn, CHARSET, "FIDNEY") is None


def _judged(lines: list[Any], identifiers: tuple[str, ...]) -> list[Any]:
    from radguard.pixels.classify import Classifier
    from radguard.pixels.clean import PixelCleaner
    from radguard.settings import PixelPolicy

    cleaner = PixelCleaner(PixelPolicy(), engine=object())  # type: ignore[arg-type]
    return cleaner._judge(0, lines, Classifier(identifiers), (200, 100))


def test_a_spelled_piece_of_an_identifying_row_is_painted() -> None:
    """'Dr John' and 'FIDNEY' read apart on one row: the row is a title and a name; the
    piece spelled as KIDNEY is painted with it (read as it was, it is the surname)."""
    from radguard.pixels.engines import Box, Line

    lines = [
        Line(Box(10, 10, 40, 12), "Dr John", 0.95, 6, (("Dr John", 0.9),), 6),
        Line(Box(54, 10, 60, 12), "FIDNEY", 0.95, 6, (("FIDNEY", 0.9),), 6, None, "KIDNEY"),
    ]
    found = _judged(lines, ("DOE^JANE",))
    alone = [f for f in found if f.text == "FIDNEY"]
    assert alone and alone[0].spelled  # the piece alone is kept by its spelling...
    painted = [f.box for f in found if f.redacted]
    assert any(b.x <= 54 and b.x + b.w >= 114 for b in painted)  # ...but painted with its row


def test_a_longer_unknown_reading_overrules_a_spelling() -> None:
    """Another sure reading that saw more characters than the spelling, and is no label, is
    more of what the box holds: the spelling keeps nothing."""
    from radguard.pixels.engines import Box, Line

    short = Line(Box(10, 10, 60, 12), "FIDNEY", 0.95, 6, (("FIDNEY", 0.9),), 6, None, "KIDNEY")
    longer = Line(
        Box(10, 10, 60, 12), "FIDNEY", 0.95, 6, (("FIDNEY WAKAR", 0.7),), 6, None, "KIDNEY"
    )
    assert not _judged([short], ())[0].redacted
    assert _judged([longer], ())[0].redacted


class _CutEngine:
    """Reads a box as ``VER TRV`` and the box widened as ``CIVER TRV`` (the first letters
    the detector cut off), with per-step probabilities that decode to those readings."""

    def __init__(self) -> None:
        self.widths: list[int] = []  # of the boxes whose probabilities were asked for
        self.reads: list[int] = []  # ...and read

    def _text(self, box: Any) -> str:
        return "CIVER TRV" if box.w > 90 else "VER TRV"

    def read(self, image: Any, boxes: list[Any]) -> list[Any]:
        from radguard.pixels.engines import Line

        self.reads += [box.w for box in boxes]
        return [Line(box, self._text(box), 0.9) for box in boxes]

    def line_probs(self, image: Any, boxes: list[Any]) -> tuple[list[str], list[Any]]:
        self.widths += [box.w for box in boxes]
        return CHARSET, [_probs(*({c: 0.9} for c in self._text(box))) for box in boxes]


def test_the_wider_box_reading_is_spelled_where_the_box_own_is_not() -> None:
    """Pixel bench seed 5: 'LIVER TRV' boxed without its first letters and read 'VER TRV';
    the box a third of its height wider reads 'CIVER TRV'. Where the box's own reading has
    no clinical spelling, the wider reading is spelled on the wider crop's own output."""
    from radguard.pixels.detect import Found, read_boxes
    from radguard.pixels.engines import Box

    asked: list[str] = []

    def spell(probs: Any, charset: Any, reading: str) -> str | None:
        asked.append(reading)
        return "LIVER TRV" if reading == "CIVER TRV" else None

    image = np.zeros((80, 240), np.uint8)
    found = Found([Box(60, 20, 80, 24)], image, image, np.zeros(image.shape, bool), 1, 1)
    engine = _CutEngine()
    (line,) = read_boxes(found, engine, doubt=lambda text: True, spell=spell)  # type: ignore[arg-type]
    assert asked == ["VER TRV", "CIVER TRV"] and line.spelled == "LIVER TRV"
    assert "CIVER TRV" in [text for text, _ in line.others] and line.text == "VER TRV"
    # the wider box is read once, from the probabilities that are spelled (not read again)
    assert engine.widths[0] == 80 and engine.widths[1] > 90 and len(engine.widths) == 2
    assert engine.reads.count(engine.widths[1]) == 0
    # spelled from the box's own reading: the wider one is not spelled at all
    asked.clear()

    def own(probs: Any, charset: Any, reading: str) -> str | None:
        asked.append(reading)
        return "VEL TRV"

    (line,) = read_boxes(found, engine, doubt=lambda t: True, spell=own)  # type: ignore[arg-type]
    assert line.spelled == "VEL TRV" and asked == ["VER TRV"]


def test_prefix_distances_are_edit_distances() -> None:
    """The glued-word search's batch of edit distances (every clinical word against every
    prefix and suffix of a reading) equals the plain edit distance."""
    from radguard.pixels.lexicon import _coded, _prefix_distances, distance

    words, (forwards, backwards), lengths = _coded(CLINICAL_VOCABULARY)
    rng = np.random.default_rng(5)
    for _ in range(30):
        text = "".join(rng.choice(list("ABDEGIKLMNORSTVY"), rng.integers(1, 14)))
        heads = _prefix_distances(forwards, lengths, text)
        tails = _prefix_distances(backwards, lengths, text[::-1])
        for k in rng.choice(len(words), 25):
            j = int(rng.integers(0, len(text) + 1))
            assert heads[k, j] == distance(words[k], text[:j])
            assert tails[k, len(text) - j] == distance(words[k], text[j:])


def test_two_labels_read_glued_are_spelled_glued() -> None:
    """Small text loses the space between words: 'RIGHT KIDNEVLON' (pixel bench seed 23,
    cap 6) is KIDNEY and LONG read glued and slipped, spelled glued as read (a label to the
    classifier). A name in place of either part is a rival: LONI, a census first name, as
    likely as LONG leaves the line unspelled, and so does LON as read (a name too)."""
    found = spellings("RIGHT KIDNEVLON", CLINICAL_VOCABULARY)
    assert "RIGHT KIDNEYLONG" in found
    assert spellings("PETROVSKY", CLINICAL_VOCABULARY) == []  # a name: no glued words near
    speller = _speller()
    # Y half seen where V was read
    probs = _sure("RIGHT KIDNEYLONG", at11={"V": 0.6, "Y": 0.35})
    assert speller(probs, CHARSET, "RIGHT KIDNEVLONG") == "RIGHT KIDNEYLONG"
    # ...and G seen weakly after LON: LON, a census name as read, is the likelier
    weak = _sure("RIGHT KIDNEYLONG", at11={"V": 0.6, "Y": 0.35}, at15={"G": 0.2})
    assert speller.weigh(weak, CHARSET, "RIGHT KIDNEVLON") is not None
    assert speller(weak, CHARSET, "RIGHT KIDNEVLON") is None
    # the last letter torn between G and I: LONI (a census name) glued to KIDNEY as likely
    assert "LONI" in census_names()
    torn = _sure("RIGHT KIDNEYLONI", at15={"I": 0.5, "G": 0.45})
    found_torn = speller.weigh(torn, CHARSET, "RIGHT KIDNEYLONI")
    assert found_torn is not None and found_torn[0] == "RIGHT KIDNEYLONG"
    assert found_torn[2] < 0  # the rival with LONI in place of LONG is the likelier
    assert speller(torn, CHARSET, "RIGHT KIDNEYLONI") is None


def test_a_probe_name_with_its_letter_misread_is_spelled() -> None:
    """An L12-5 read '!.12-5' (its stroke as '!', its foot as a point: pixel bench seed 23)
    is spelled with a probe letter where the recognizer supports one; a number alone
    ('112-5', '12-5': a date or a range in pieces) is never made a probe name."""
    from radguard.pixels.classify import Classifier
    from radguard.pixels.classify import Verdict as V

    assert "L.12-5" in spellings("!.12-5", CLINICAL_VOCABULARY)
    assert spellings("112-5", CLINICAL_VOCABULARY) == []
    assert spellings("12-5", CLINICAL_VOCABULARY) == []
    classifier = Classifier(())
    assert classifier.decide("L.12-5").verdict is V.CLINICAL
    assert classifier.decide("1.12-5").verdict is not V.CLINICAL
    probs = _probs({"!": 0.9, "L": 0.05}, {".": 0.9}, *({c: 0.98} for c in "12-5"))
    assert _speller()(probs, CHARSET, "!.12-5") == "L.12-5"
    unseen = _probs({"!": 0.98, "L": 1e-6}, {".": 0.9}, *({c: 0.98} for c in "12-5"))
    assert _speller()(unseen, CHARSET, "!.12-5") is None


def test_rows_cut_from_one_box_are_spelled() -> None:
    """The rows of glyphs a painted box is cut into (clean.PixelCleaner._parts) are spelled
    as lines are: a big 'J.12-5' beside a name in one detector box (pixel bench seed 5) is
    the probe name L12-5; a row read as a label or as identifying is left as it is."""
    from radguard.pixels.classify import Classifier, Decision
    from radguard.pixels.classify import Verdict as V
    from radguard.pixels.clean import PixelCleaner
    from radguard.pixels.engines import Box
    from radguard.settings import PixelPolicy

    texts = {10: "J.12-5", 20: "DOE^JOHN", 30: "L12-5"}

    class Engine:
        def line_probs(self, image: Any, boxes: list[Any]) -> tuple[list[str], list[Any]]:
            probs = {
                "J.12-5": _probs({"J": 0.9, "L": 0.05}, {".": 0.9}, *({c: 0.98} for c in "12-5"))
            }
            return CHARSET, [
                probs.get(texts[b.w], _probs(*({c: 0.98} for c in texts[b.w]))) for b in boxes
            ]

    classifier = Classifier(("DOE^JOHN",))
    boxes = [Box(0, 0, w, 10) for w in texts]
    verdicts = [classifier.decide(t) for t in texts.values()]
    assert [v.verdict for v in verdicts] == [V.UNKNOWN, V.IDENTIFYING, V.CLINICAL]
    cleaner = PixelCleaner(PixelPolicy(), engine=Engine())  # type: ignore[arg-type]
    image = np.zeros((10, 40), np.uint8)
    assert cleaner._spell_parts(image, boxes, verdicts, classifier) == {0: "L.12-5"}
    off = PixelCleaner(PixelPolicy(spell_labels=False), engine=Engine())  # type: ignore[arg-type]
    assert off._spell_parts(image, boxes, verdicts, classifier) == {}
    assert isinstance(verdicts[0], Decision)
