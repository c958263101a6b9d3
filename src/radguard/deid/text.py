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
_SEPARATORS = r"[\s\^,._/-]*"
_MONTHS = (
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

_MONTH_RE = "(?:" + "|".join(f"{m[:3]}(?:{m[3:]})?" for m in _MONTHS) + r")\.?"
GENERIC_PATTERNS: tuple[str, ...] = (
    # e-mail addresses
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    # labelled identifiers: MRN 1234, ID: AB-12, Acc# 9876, DOB 1/2/1950, SSN ...
    r"\b(?:MRN|PID|ID|ACC(?:ESSION)?|SSN|DOB|NHS|ENC(?:OUNTER)?)\s*(?:NO\.?|NUMBER)?\s*[:#=]?\s*"
    r"[A-Z0-9][A-Z0-9/._-]{2,}",
    # phone numbers (7+ digits with the usual separators)
    r"(?<!\w)(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?)?\d{3,4}[\s.-]\d{3,4}(?:[\s.-]\d{2,4})?(?!\w)",
    # US social security numbers
    r"\b\d{3}-\d{2}-\d{4}\b",
    # dates: ISO and DICOM, day/month/year with any separator, month names
    r"\b(?:19|20)\d{2}[-/.]?(?:0[1-9]|1[0-2])[-/.]?(?:0[1-9]|[12]\d|3[01])\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.](?:\d{4}|\d{2})\b",
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?[\s-]*{_MONTH_RE}[\s,-]*(?:\d{{4}}|\d{{2}})\b",
    rf"\b{_MONTH_RE}\s*\d{{1,2}}(?:st|nd|rd|th)?,?\s*(?:\d{{4}}|\d{{2}})\b",
    # ID-like tokens: 6+ digits, or letters and 5+ digits mixed
    r"\b\d{6,}\b",
    r"\b(?=[A-Z]*\d)(?=\d*[A-Z])[A-Z0-9]*\d[A-Z0-9]*\b(?<=\w{7})",
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
    month = _MONTHS[mi - 1]
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


def identifier_pattern(value: str) -> str:
    """Regex for one identifying value, separator-insensitive (``^``, spaces, commas...)."""
    parts = [re.escape(p) for p in re.split(r"[\s\^,._/-]+", value.strip()) if p]
    return _SEPARATORS.join(parts)


@lru_cache(maxsize=512)
def _specific(identifiers: tuple[str, ...]) -> re.Pattern[str] | None:
    if not identifiers:
        return None
    ordered = sorted(set(identifiers), key=len, reverse=True)
    body = "|".join(identifier_pattern(v) for v in ordered)
    return re.compile(rf"(?<![A-Za-z0-9])(?:{body})(?![A-Za-z0-9])", re.IGNORECASE)


@lru_cache(maxsize=16)
def _extra(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


class TextCleaner:
    """Cleans free text of the identifying values of one dataset plus generic patterns."""

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
        self._specific = _specific(self.identifiers)
        self._extra = _extra(extra_patterns)

    def has_identifier(self, text: str) -> bool:
        """True when ``text`` holds one of the dataset's own identifying values."""
        return self._specific is not None and self._specific.search(text) is not None

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Spans (start, end, why) of identifying content in ``text``."""
        spans: list[tuple[int, int, str]] = []
        for why, pattern in (
            ("identifier", self._specific),
            ("pattern", _generic()),
            ("policy pattern", self._extra),
        ):
            if pattern is not None:
                spans.extend(
                    (m.start(), m.end(), why) for m in pattern.finditer(text) if m.end() > m.start()
                )
        return sorted(spans)

    def clean(self, text: str) -> str:
        """``text`` with every identifying span replaced by ``***``."""
        if not text:
            return text
        out = text
        for pattern in (_generic(), self._specific, self._extra):
            if pattern is not None:
                out = pattern.sub(MARK, out)
        if out != text:
            out = re.sub(r"(?:\*\*\*[\s\^,.:;/-]*)+\*\*\*", MARK, out)
        return out
