"""What to do with a line of burned-in text: redact it (identifying) or keep it (clinical).

A line is identifying when it holds one of the file's own identifying header values (names and
their parts, IDs, dates in ~20 written forms, institution...; read before the header is
cleaned), also through the usual OCR confusions (``0``/``O``, ``1``/``I``/``l``, ``5``/``S``,
lost or extra spaces, one wrong character in a long token), or when it looks identifying
(generic patterns: labelled IDs, dates, times, phone numbers, e-mails, ID-like numbers, street
addresses, census first name + surname). A line is kept when every word of it is clinical
(laterality, probe and preset names, depth and scale labels, measurements, body parts) or
matches a policy ``keep`` pattern. Anything else is ``unknown`` and follows the policy
(``redact`` by default: fail closed).
"""

from __future__ import annotations

import enum
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

from pydicom.dataset import Dataset

from radguard.deid.text import MONTH_NAMES, TextCleaner, date_variants

# Header attributes whose values, burned into pixels, identify (PS3.15 Table E.1-1 rows that
# name or locate a person, an encounter or a site).
IDENTIFYING_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "InstanceCreationDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
    "AdmissionID",
    "IssuerOfPatientID",
)


def header_identifiers(ds: Dataset) -> tuple[str, ...]:
    """The identifying values of ``ds`` (read them before the header is de-identified)."""
    values: list[str] = []
    for keyword in IDENTIFYING_KEYWORDS:
        element = ds.get(keyword)
        if element is None or element == "":
            continue
        items = element if isinstance(element, list | tuple) else [element]
        for item in items:
            text = str(item).strip()
            if len(text) >= 2:
                values.append(text)
                if keyword.endswith("Time") and len(text) >= 4 and text[:4].isdigit():
                    hh, mm, ss = text[:2], text[2:4], text[4:6]
                    values.append(f"{hh}:{mm}:{ss}" if ss else f"{hh}:{mm}")
    return tuple(dict.fromkeys(values))


class Verdict(enum.Enum):
    """What becomes of one line of burned-in text."""

    IDENTIFYING = "identifying"
    CLINICAL = "clinical"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str
    spelled: bool = False  # clinical only by the spelling its recognizer supports


# Words and tokens of clinical overlays: laterality, views, ultrasound and X-ray acquisition
# labels, units, body parts. A line made only of these (and numbers) is kept.
CLINICAL_VOCABULARY = frozenset(
    """
L R LT RT LEFT RIGHT BIL BILAT BILATERAL AP PA LAT LATERAL OBL OBLIQUE LLAT RLAT LAO RAO LPO RPO
SUPINE PRONE ERECT UPRIGHT DECUB AXIAL AX SAG SAGITTAL COR CORONAL TRV TRANS TRANSVERSE LONG
LONGITUDINAL MED MEDIAL PROX PROXIMAL DIST DISTAL SUP INF ANT POST MID UPPER LOWER VIEW PORTABLE
CHEST ABDOMEN ABD PELVIS LIVER KIDNEY SPLEEN GB GALLBLADDER PANCREAS BLADDER THYROID BREAST
HEART CARDIAC AORTA CAROTID CCA ICA ECA VEIN ARTERY NECK HEAD BRAIN SPINE KNEE HIP SHOULDER
HAND FOOT ANKLE WRIST ELBOW UTERUS OVARY OVARIES TESTIS SCROTUM PROSTATE FETUS FETAL OB GYN
LYMPH NODE RENAL HEPATIC PORTAL CBD SKULL LUNG LUNGS RIB RIBS ABDOMINAL VASCULAR MSK SMALL PARTS
GEN GENERAL THI RES PEN HPEN HGEN CINE FREEZE FRZ LIVE CFM CF CD PW CW PD PDI DOPPLER COLOR
COLOUR GAIN GN DR DYN MI TI TIS TIB TIC TIS0 FPS HZ KHZ MHZ FRQ FREQ PRF WF PWR POWER MAP PERS
PERSIST FOCUS DEPTH ZOOM ANGLE SV SCALE HARM HARMONIC COMPOUND SONOCT XRES SRI CHI M B D E P
CM MM M S MS CMS MPS DB KV KVP MA MAS MAS MGY GY SV MSV DLP CTDI CTDIVOL SEC US MIN HR BPM
VEL VMAX VMIN PI RI SD ED HR TAMAX TAMEAN ACC AT TAMX DIST AREA VOL VOLUME DIAM LEN LENGTH
WIDTH HEIGHT DIA SYS SYST DIAST PSV EDV RATIO INDEX MEAN MAX PEAK AVG
STANDING SITTING INSP EXP INSPIRATION EXPIRATION WEIGHT BEARING FLEX EXT FLEXION EXTENSION
PRE POSTVOID POSTOP PREOP CONTRAST NONCONTRAST ARTERIAL VENOUS DELAYED PHASE SERIES IMAGE IM
FRAME FRAMES PAGE OF SCOUT TOPOGRAM LOCALIZER WINDOW LEVEL W WL WW C
""".split()
)
# Identifying by shape, beyond the generic free-text patterns: clock times, street addresses.
_TIME = re.compile(r"(?<![\d.])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:\s*[AP]M)?(?![\d.])", re.I)
_AREA_CODE = re.compile(r"\(\d{3}\)")  # a telephone number read in pieces: '(207)' ... '2643'
# a day, three letters and a year: a date whose month may be misread ('12 MAP 80': MAR)
_DAY_MONTH_YEAR = re.compile(r"(?<!\d)\d{1,2}[\s./-]*([A-Za-z]{3})[\s./-]*(?:\d{4}|\d{2})(?!\d)")
_ADDRESS = re.compile(
    r"\b\d{1,5}\s+(?:[A-Z][A-Za-z]+\s+){1,3}(?:ST|STREET|AVE|AVENUE|RD|ROAD|BLVD|LANE|LN|DR|DRIVE"
    r"|WAY|COURT|CT|PLACE|PL|SQUARE|SQ)\b",
    re.I,
)
_SITE = re.compile(
    r"\b(?:HOSPITAL|HOSP|CLINIC|KLINIK|KLINIKUM|MEDICAL|CENTER|CENTRE|CTR|INFIRMARY|UNIVERSITY"
    r"|UNIV|INSTITUTE|FOUNDATION|HEALTH|HEALTHCARE|IMAGING|RADIOLOGY|MEMORIAL|ST\.?\s+\w+)\b",
    re.I,
)
# a title before a word that is no clinical word: Dr Egan, MRS. HALE (DR 65 is a dynamic range)
_TITLED = re.compile(r"\b(?:DR|MR|MRS|MS|MISS|PROF)\.?\s+([A-Za-z][A-Za-z'-]*[A-Za-z])", re.I)
_CONFUSABLE = str.maketrans(
    {
        "O": "0",
        "Q": "0",
        "D": "0",
        "I": "1",
        "L": "1",
        "|": "1",
        "S": "5",
        "B": "8",
        "Z": "2",
        "G": "6",
        "~": "",
        "^": "",
    }
)


def _fold(text: str) -> str:
    """Upper case without accents (a recognizer of Latin overlays reads PÍDNEY as PIDNEY),
    separators dropped, OCR-confusable characters folded together."""
    return re.sub(r"[^0-9A-Z]", "", _unaccented(text).upper().translate(_CONFUSABLE))


def _unaccented(text: str) -> str:
    """``text`` with the accents of its letters dropped (NFKD, combining marks removed)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _near(a: str, b: str) -> bool:
    """Equal but for at most one substitution, insertion or deletion."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


@lru_cache(maxsize=4)
def _keep_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


class Classifier:
    """Decides, line by line, what burned-in text identifies (one per file)."""

    def __init__(
        self,
        identifiers: Iterable[str],
        keep_patterns: tuple[str, ...] = (),
        builtin_keep: bool = True,
        extra_patterns: tuple[str, ...] = (),
    ) -> None:
        values = tuple(_without_honorifics(v) for v in identifiers)
        self._cleaner = TextCleaner(values, extra_patterns)
        folded: set[str] = set()
        tokens: set[str] = set()
        for value in values:
            forms = [value, *date_variants(value)]
            if "^" in value:
                forms += [p for p in value.replace("=", "^").split("^") if len(p.strip()) > 1]
            for form in forms:
                key = _fold(form)
                if len(key) >= 4:
                    folded.add(key)
                for word in re.findall(r"[A-Za-z0-9]+", _unaccented(form)):
                    if len(word) >= 5:
                        tokens.add(_fold(word))
        self._folded = tuple(sorted(folded, key=len, reverse=True))
        self._tokens = frozenset(tokens)
        # the words of the identifying values (upper case, two letters or more): names a
        # misread line may be, census or not (lexicon.Speller weighs them as rivals)
        self.words = frozenset(
            w.upper()
            for value in values
            for form in {value, _unaccented(value)}
            for w in re.findall(r"[^\W\d_]{2,}", form)
        )
        self._keep = _keep_patterns(keep_patterns)
        self._builtin = builtin_keep

    def decide(self, text: str) -> Decision:
        """The verdict for one line of text read from the pixels."""
        stripped = text.strip()
        if not stripped:
            return Decision(Verdict.CLINICAL, "empty")
        spans = self._cleaner.find(stripped)
        if spans:
            return Decision(Verdict.IDENTIFYING, f"matches {spans[0][2]}")
        folded = _fold(stripped)
        for value in self._folded:
            if value in folded:
                return Decision(Verdict.IDENTIFYING, "matches identifier (OCR-folded)")
        for word in re.findall(r"[A-Za-z0-9]+", stripped):
            key = _fold(word)
            if len(key) >= 5 and any(_near(key, t) for t in self._tokens):
                return Decision(Verdict.IDENTIFYING, "near an identifier (one character off)")
        if _AREA_CODE.search(stripped):
            return Decision(Verdict.IDENTIFYING, "pattern: telephone area code")
        if _TIME.search(stripped):
            return Decision(Verdict.IDENTIFYING, "pattern: time of day")
        for match in _DAY_MONTH_YEAR.finditer(stripped):
            if any(_near(match.group(1).upper(), month) for month in _MONTH_ABBREVIATIONS):
                return Decision(Verdict.IDENTIFYING, "pattern: date (month read a letter off)")
        if _ADDRESS.search(stripped):
            return Decision(Verdict.IDENTIFYING, "pattern: street address")
        if _SITE.search(stripped):
            return Decision(Verdict.IDENTIFYING, "pattern: institution")
        from radguard.verify.generic import person_names

        for name in person_names(stripped):
            words = re.findall(r"[A-Za-z]+", name.upper())
            if not any(w in CLINICAL_VOCABULARY for w in words):
                return Decision(Verdict.IDENTIFYING, "pattern: first name and surname")
        for match in _TITLED.finditer(stripped):
            if match.group(1).upper() not in CLINICAL_VOCABULARY:
                return Decision(Verdict.IDENTIFYING, "pattern: title and name")
        if self._keep is not None and self._keep.fullmatch(stripped):
            return Decision(Verdict.CLINICAL, "policy keep pattern")
        if self._builtin and _all_clinical(stripped):
            return Decision(Verdict.CLINICAL, "clinical label")
        return Decision(Verdict.UNKNOWN, "neither identifying nor a known clinical label")

    def unread(self, text: str) -> tuple[int, int]:
        """Characters of a header identifier that ``text`` (a reading that identifies) stops
        short of, before and after it: where the detector cut a line ('ST. HILDEGARD
        GENERAL' of 'ST. HILDEGARD GENERAL HOSPITAL'), the rest of the value is likely
        burned on beside it. Counted on folded forms (no separators); a rest that the
        reading holds elsewhere (names in another order) is not missing."""
        folded = _fold(text)
        if len(folded) < 4:
            return 0, 0
        before = after = 0
        for value in self._folded:
            a, b, size = SequenceMatcher(None, folded, value, autojunk=False).find_longest_match()
            if size < 4:
                continue
            head, tail = value[:b], value[b + size :]
            if a <= 1 and len(head) >= 2 and head not in folded:
                before = max(before, len(head))
            if len(folded) - (a + size) <= 1 and len(tail) >= 2 and tail not in folded:
                after = max(after, len(tail))
        return before, after


def _without_honorifics(value: str) -> str:
    """A person name without its prefix and suffix (``DR``, ``JR``...): PS3.5 6.2 components
    four and five are titles, not names, and would match clinical words such as ``DR``."""
    if "^" not in value:
        return value
    groups = value.split("=")
    return "=".join("^".join(g.split("^")[:3]).rstrip("^") for g in groups)


# probe names: C5-1, L12-5 (L12 5), C5, P4-2, E8C (curved, linear, phased, sector, endocavity,
# volume, transoesophageal families)
_PROBE = re.compile(r"(?:[CLPSEVT]{1,2}\d{1,2}[- ]\d{1,2}|[CLPSEVT]{1,2}\d{1,2})[A-Z]?")
_DIGIT_JOIN = re.compile(r"\d\s*[/:]\s*\d")  # 02/04, 11:2: dates and clocks, never labels
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_MAX_DIGITS = 6


def _all_clinical(text: str) -> bool:
    """A clinical label: its letters are clinical words (glued, or split by a stray space),
    at least one of two letters or more (or the line is a lone letter or a probe name); a
    word one OCR slip from a clinical word (three letters or more, not a census name) only
    beside an exact one or glued to one of four letters or more; numbers of at most three
    digits or short decimals (1.23), six digits in all, none joined by ``/`` or ``:``.
    Anything else (an ID, a date, a clock or a telephone number read in pieces, a lone
    surname) is not a label."""
    upper = text.upper()
    if _DIGIT_JOIN.search(upper):
        return False
    numbers = _NUMBER.findall(upper)
    parts = [n.partition(".") for n in numbers]
    whole, fraction = [p[0] for p in parts], [p[2] for p in parts]
    if sum(len(n) - n.count(".") for n in numbers) > _MAX_DIGITS:
        return False
    if any(len(w) > 3 for w in whole) or any(len(f) > 2 for f in fraction):
        return False
    compact = re.sub(r"\s+", "", upper)
    if len(compact) > _LONGEST_LABEL:
        return False  # no overlay label is this long (and the word search recurses per word)
    if _probe(upper.strip()) or re.fullmatch(r"[A-Z]", compact):
        return True
    upper = _CM_SLIP.sub(r"\1CM", upper)
    first, last = _census()
    # a title-like word right before a number names no one: DR 65 is a dynamic range
    named = bool(_TITLE_NUMBER.search(upper))
    slipped: list[str] = []
    for group in re.findall(r"[A-Z]+(?:\s+[A-Z]+)*", upper):
        runs = group.split()
        exact = [
            r
            for r in runs
            if len(r) == 1
            or r in CLINICAL_VOCABULARY
            or (_glued(r) and r not in first and r not in last)  # PA+SCALE is a name
        ]
        # a title-like word (DR: dynamic range, or Doctor) names nothing clinical alone
        named = named or any(len(r) > 1 and r not in _TITLES for r in exact)
        rest = "".join(r for r in runs if r not in exact)
        glued = _glued(rest) and rest not in first and rest not in last
        if rest and (glued or _fewest("".join(runs)) < len(runs)):
            named = True
        elif rest:
            slipped.append(rest)
    if not slipped:
        return named
    for word in slipped:
        if (
            word in first
            or word in last
            or word in MONTHS
            or not _near_glued(word, max(1, len(word) // 6))
        ):
            return False
        # beside an exact clinical word, or glued to one of four letters or more with three
        # letters or more besides (LIVERIRV; not a clinical word and a letter: HANDA, GAINE)
        named = named or _anchored(word, max(1, len(word) // 6)) or word in _END_DROPPED
    return named


# a centimetre read with its m wrong right after its number ('1.23 cs', '12 cn')
_CM_SLIP = re.compile(r"(?<=\d)(\s?)C[NSHW]\b")


# digits a probe name's number is misread as (C5-i)
_AS_DIGIT = str.maketrans({"I": "1", "L": "1", "|": "1", "!": "1", "O": "0", "Z": "2", "S": "5"})
_PROBE_SLIP = re.compile(r"[CLPSEVT]{1,2}[0-9ILZSO|!]{1,2}-[0-9ILZSO|!]{1,2}")
# the foot of a probe name's L (or a speck) read as a point after its letter: L.12-5
_PROBE_POINT = re.compile(r"[CLPSEVT][.,]\d{1,2}-\d{1,2}[A-Z]?")


def _probe(text: str) -> bool:
    """A probe name (C5-1, L12 5), also written with a hyphen and one letter misread for a
    digit of its number (C5-i; a first name and a number, LIZ 12 or SOL-12A, is not)."""
    if _PROBE.fullmatch(text) or _PROBE_POINT.fullmatch(text):
        return True
    if not _PROBE_SLIP.fullmatch(text):
        return False
    for cut in (1, 2):  # the letters: C5 read as CS leaves 'CS' a possible head
        head, number = text[:cut], text[cut:]
        if not re.fullmatch(r"[CLPSEVT]+", head):
            continue
        slips = sum(not c.isdigit() and c != "-" for c in number)
        if slips == 1 and _PROBE.fullmatch(head + number.translate(_AS_DIGIT)):
            return True
    return False


def _census() -> tuple[frozenset[str], frozenset[str]]:
    from radguard.verify.generic import _names

    return _names()


@lru_cache(maxsize=1)
def census_names() -> frozenset[str]:
    """The census first names and surnames together (upper case)."""
    first, last = _census()
    return first | last


@lru_cache(maxsize=4096)
def _near_glued(run: str, slips: int, long: bool = False, first: bool = True) -> bool:
    """``run`` is a clinical word, or clinical words read without spaces one of which has
    four letters or more, with at most ``slips`` OCR slips (:func:`_slip`), each in a word
    of three letters or more that is not a census surname (``long``: a word of four letters
    or more was seen already; ``first``: nothing of the run was taken yet)."""
    if not run:
        return long
    for k in range(min(len(run), 13), 1, -1):
        head, rest = run[:k], run[k:]
        whole = first and not rest  # the run is one word: no length asked of it
        if head in CLINICAL_VOCABULARY and _near_glued(
            rest, slips, long or whole or k >= _LONG, False
        ):
            return True
        if slips and k >= 3 and head not in _census()[1]:
            words = [w for w in _BY_LENGTH.get(k, ()) if _slip(head, w)]
            longer = long or whole or any(len(w) >= _LONG for w in words)
            if words and _near_glued(rest, slips - 1, longer, False):
                return True
    return False


# letters (and digits) a recognizer reads for one another: a clinical word misread differs
# by one of these, where a name one letter from a clinical word (CONOR, COLOR) seldom does
_CONFUSED = frozenset(
    frozenset(pair)
    for pair in (
        "IJ IL IT I1 JL LT L1 T1 OD OQ OC OG OU DQ CG GS S5 Z2 B8 BR BP RP PF EF FK EL "
        "HN HW NW MN MW VY UV KX"
    ).split()
)


_END_DROP = 6  # letters a clinical word needs for its first or last one to go unread
# a long clinical word with its faint first letter unread is a label alone (BDOMEN; the
# word without its last letter is too often a name: PERSIS, DELAYE)
_END_DROPPED = frozenset(w[1:] for w in CLINICAL_VOCABULARY if len(w) >= _END_DROP + 1)


def _slip(read: str, word: str) -> bool:
    """``read`` is ``word`` with one OCR slip: a letter read for one it looks like, a letter
    dropped or added inside a word of four letters or more, or a faint first letter dropped
    from a word of six letters or more (BDOMEN). Never a letter added at an end, nor the last
    one dropped: a clinical word with a letter more or less at its end is how names look
    (HANDA, OLIVER, LEVERS; DELAYE, PERSIS)."""
    if len(read) == len(word):
        diff = [(a, b) for a, b in zip(read, word, strict=True) if a != b]
        return len(diff) == 1 and frozenset(diff[0]) in _CONFUSED
    short, long = (read, word) if len(read) < len(word) else (word, read)
    if len(long) - len(short) != 1 or len(word) < _LONG:
        return False  # a three-letter word with a letter more or less is anything (AUNT)
    if any(long[:i] + long[i + 1 :] == short for i in range(1, len(long) - 1)):
        return True
    return read is short and len(word) >= _END_DROP and short == long[1:]


_BY_LENGTH: dict[int, tuple[str, ...]] = {
    n: tuple(w for w in CLINICAL_VOCABULARY if abs(len(w) - n) <= 1 and len(w) >= 3)
    for n in range(3, 15)
}


_LONG = 4  # letters of the longest word a run of glued clinical words needs at least
_LONGEST_LABEL = 120  # characters (spaces aside) beyond which a line is no clinical label


def _anchored(word: str, slips: int) -> bool:
    """``word`` is an exact clinical word of four letters or more glued to three letters or
    more of clinical words read with ``slips`` slips (LIVER + IRV), not merely starting or
    ending with one (PERS + ISDELAYE)."""
    for k in range(_LONG, len(word) - 2):
        head, tail = word[:k], word[-k:]
        if head in CLINICAL_VOCABULARY and _near_glued(word[k:], slips, True, False):
            return True
        if tail in CLINICAL_VOCABULARY and _near_glued(word[:-k], slips, True, False):
            return True
    return False


_TITLES = frozenset({"DR", "MS"})  # clinical words that also stand before a person's name
# ...a whole number after it, with a digit no letter is read as (DR 65; not DR 1J1 or DR 111:
# Dr Ill read with its letters as digits)
_TITLE_NUMBER = re.compile(r"\b(?:DR|MS)\s*(?=\d+(?:\.\d+)?(?!\S))[\d.]*[34679]")
_MONTH_ABBREVIATIONS = tuple(m[:3] for m in MONTH_NAMES)
MONTHS = frozenset(MONTH_NAMES) | frozenset(_MONTH_ABBREVIATIONS) | {"SEPT"}


@lru_cache(maxsize=4096)
def _fewest(run: str, long: bool = False) -> float:
    """The fewest clinical words ``run`` is glued from (one of four letters or more), or
    infinity. Words read apart are judged joined only when that takes fewer words than
    there were spaces to split them: a stray space (RI GHT), not a name after a label
    (LIVER ANTIM is LIVER ANT IM)."""
    if not run:
        return 0.0 if long else math.inf
    return min(
        (
            1 + _fewest(run[k:], long or k >= _LONG)
            for k in range(min(len(run), 12), 1, -1)
            if run[:k] in CLINICAL_VOCABULARY
        ),
        default=math.inf,
    )


def _glued(run: str) -> bool:
    """``run`` is clinical words written (or read) without spaces, one of them four letters
    or more: LIVERTRV, LTKIDNEY (not short words glued into a name: ANT+IM, MA+TIC)."""
    return _fewest(run) < math.inf


def _named(read: str) -> bool:
    """``read`` (letters and digits of one word as read) is a census name or a month and no
    clinical word, its digits taken for any letter they look like (1UNG: JUNG; LON6 is LONG,
    a surname but a clinical word first; too many ways: a name)."""
    options = [_DIGIT_LETTERS.get(c, c) for c in read]
    if math.prod(len(o) for o in options) > _NAME_TRIES:
        return True
    first, last = _census()
    return any(
        (w in first or w in last or w in MONTHS) and w not in CLINICAL_VOCABULARY
        for w in ("".join(t) for t in itertools.product(*options))
    )


_NAME_TRIES = 64  # spellings of a word read with digits tried against the census at most


# digits and the letters a recognizer reads them for
_DIGIT_LETTERS = {
    "0": "DOQ",
    "1": "IJLT",
    "2": "Z",
    "4": "A",
    "5": "S",
    "6": "G",
    "7": "T",
    "8": "B",
    "9": "G",
}


def reads_as_name(text: str) -> bool:
    """``text`` holds a word of four characters or more that is a census first name or
    surname (its digits taken for the letters they look like) and no clinical word (POOT,
    Jung, V0LZ): another reading of the line that is a label does not overrule it."""
    return any(
        len(word) >= _LONG and word not in CLINICAL_VOCABULARY and _named(word)
        for word in re.findall(r"[A-Z0-9]+", text.upper())
        if not word.isdigit()
    )
