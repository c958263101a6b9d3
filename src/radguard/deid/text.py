"""Free-text cleaning (Clean Descriptors / Clean Structured Content, PS3.15 E.3.5, E.3.6).

Free text is cleaned, not dropped: every identifying value found in the same dataset (names and
their parts, IDs, dates in the common written formats, addresses, phone numbers, institutions)
is cut out of the text, and generic patterns catch what the header does not know (e-mails,
phone numbers, dates, ID-like tokens). ``"CT CHEST SMITH FU"`` becomes ``"CT CHEST *** FU"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

MARK = "***"
MONTH_NAMES = (
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
)

_MONTH_RE = "(?:" + "|".join(f"{m[:3]}(?:{m[3:]})?" for m in MONTH_NAMES) + r")\.?"
GENERIC_PATTERNS: tuple[str, ...] = (
    # e-mail addresses
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    # labelled identifiers: MRN 1234, ID: AB-12, Acc# 9876, DOB 1/2/1950, SSN ...
    r"\b(?:MRN|PID|ID|ACC(?:ESSION)?|SSN|DOB|NHS|ENC(?:OUNTER)?)\s*(?:NO\.?|NUMBER)?\s*[:#=]?\s*"
    r"[A-Z0-9][A-Z0-9/._-]{2,}",
    # phone numbers: (555) 123-4567, 555-123-4567, 555.123.4567, +44 20 7946 0958, 555-1234
    r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{4}(?![\w.])",
    r"(?<![\w.])\d{3}-\d{4}(?![\w.])",
    # US social security numbers
    r"\b\d{3}-\d{2}-\d{4}\b",
    # dates: ISO and DICOM, day/month/year with any separator, month names
    r"\b(?:19|20)\d{2}[-/.]?(?:0[1-9]|1[0-2])[-/.]?(?:0[1-9]|[12]\d|3[01])\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?[\s-]*{_MONTH_RE}[\s,-]*(?:\d{{4}}|\d{{2}})\b",
    rf"\b{_MONTH_RE}\s*\d{{1,2}}(?:st|nd|rd|th)?,?\s*(?:\d{{4}}|\d{{2}})\b",
    # ID-like tokens: 6+ digits, or 7+ letters and digits mixed with 4+ digits (AB12345)
    r"(?<![\w.])\d{6,}(?![\w.])",
    r"\b(?=(?:[A-Z]*\d){4})(?=\d*[A-Z])[A-Z0-9]{7,}\b",
)


@lru_cache(maxsize=1)
def _generic() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in GENERIC_PATTERNS), re.IGNORECASE)


def date_variants(value: str) -> list[str]:
    """The common written forms of a DICOM date (YYYYMMDD)."""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", value.strip())
    if not match:
        return []
    y, m, d = match.groups()
    mi, di = int(m), int(d)
    if not (1 <= mi <= 12 and 1 <= di <= 31):
        return []
    month = MONTH_NAMES[mi - 1]
    forms = {
        f"{y}{m}{d}",
        f"{y}-{m}-{d}",
        f"{y}/{m}/{d}",
        f"{y}.{m}.{d}",
        f"{d}/{m}/{y}",
        f"{m}/{d}/{y}",
        f"{d}.{m}.{y}",
        f"{d}-{m}-{y}",
        f"{m}-{d}-{y}",
        f"{di}/{mi}/{y}",
        f"{mi}/{di}/{y}",
        f"{di}.{mi}.{y}",
        f"{d}/{m}/{y[2:]}",
        f"{m}/{d}/{y[2:]}",
        f"{d}.{m}.{y[2:]}",
        f"{di} {month[:3]} {y}",
        f"{d}-{month[:3]}-{y}",
        f"{di} {month} {y}",
        f"{month[:3]} {di}, {y}",
        f"{month} {di}, {y}",
        f"{month} {di} {y}",
    }
    return sorted(forms)


# Words: runs of letters and digits in any script. Identifiers and text are compared word by
# word, so separators (^, spaces, commas, dots, dashes, slashes...) never hide a match.
_WORD = re.compile(r"[^\W_]+")
_MARKS = re.compile(r"(?:\*\*\*[\s\^,.:;/-]*)+\*\*\*")


@lru_cache(maxsize=16)
def _extra(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


class TextCleaner:
    """Cleans free text of the identifying values of one dataset plus generic patterns.

    Identifying values are matched as word sequences (case-insensitive), through a small index
    built per dataset: no regular expression is compiled per patient, which keeps cleaning
    cheap on corpora where every file belongs to another patient. Values in scripts written
    without spaces (e.g. Japanese names) are also searched as plain substrings.
    """

    def __init__(self, identifiers: Iterable[str], extra_patterns: tuple[str, ...] = ()) -> None:
        values: set[str] = set()
        for value in identifiers:
            text = value.strip()
            if len(text) < 2:
                continue
            values.add(text)
            if "^" in text:  # a person name: its components too (PS3.5 6.2.1)
                values.update(p for p in text.replace("=", "^").split("^") if len(p.strip()) > 1)
            for form in date_variants(text):
                values.add(form)
        self.identifiers = tuple(sorted(values))
        self.ascii_only = all(v.isascii() for v in self.identifiers)
        index: dict[str, list[tuple[str, ...]]] = {}
        substrings: set[str] = set()
        for value in self.identifiers:
            words = tuple(w.upper() for w in _WORD.findall(value))
            if not words or (len(words) == 1 and len(words[0]) < 2):
                continue
            index.setdefault(words[0], []).append(words)
            if not value.isascii():
                substrings.update(w for w in words if len(w) >= 2)
        for sequences in index.values():
            sequences.sort(key=len, reverse=True)
        self._index = index
        self._substrings = tuple(sorted(substrings, key=len, reverse=True))
        self._extra = _extra(extra_patterns)

    def _identifier_spans(self, text: str) -> list[tuple[int, int]]:
        words = [(m.start(), m.end(), m.group().upper()) for m in _WORD.finditer(text)]
        spans = []
        i, count = 0, len(words)
        while i < count:
            matched = 0
            for sequence in self._index.get(words[i][2], ()):
                n = len(sequence)
                if i + n <= count and all(words[i + k][2] == sequence[k] for k in range(1, n)):
                    matched = n
                    break
            if matched:
                spans.append((words[i][0], words[i + matched - 1][1]))
                i += matched
            else:
                i += 1
        if self._substrings:
            upper = text.upper()
            if len(upper) == len(text):
                for needle in self._substrings:
                    start = upper.find(needle)
                    while start >= 0:
                        spans.append((start, start + len(needle)))
                        start = upper.find(needle, start + 1)
        return spans

    def has_identifier(self, text: str) -> bool:
        """True when ``text`` holds one of the dataset's own identifying values."""
        return bool(self._identifier_spans(text))

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Spans (start, end, why) of identifying content in ``text``."""
        spans = [(a, b, "identifier") for a, b in self._identifier_spans(text)]
        spans += [
            (m.start(), m.end(), "pattern")
            for m in _generic().finditer(text)
            if m.end() > m.start()
        ]
        if self._extra is not None:
            spans += [
                (m.start(), m.end(), "policy pattern")
                for m in self._extra.finditer(text)
                if m.end() > m.start()
            ]
        return sorted(spans)

    def clean(self, text: str) -> str:
        """``text`` with every identifying span replaced by ``***``."""
        if not text:
            return text
        out = _generic().sub(MARK, text)
        spans = self._identifier_spans(out)
        if spans:
            out = _replace(out, spans)
        if self._extra is not None:
            out = self._extra.sub(MARK, out)
        if out != text:
            out = _MARKS.sub(MARK, out)
        return out


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    pieces, last = [], 0
    for start, end in sorted(spans):
        if start < last:  # overlapping spans: extend the current cut
            if end > last:
                last = end
            continue
        pieces.append(text[last:start])
        pieces.append(MARK)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
