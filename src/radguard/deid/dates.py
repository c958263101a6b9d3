"""Date, time and age transforms: per-patient shifts, granularity, age aggregation."""

from __future__ import annotations

import datetime as dt
import re

from radguard.settings import Granularity

_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_AS = re.compile(r"^(\d{3})([DWMY])$")


class BadTemporalValue(ValueError):
    """A DA/DT/AS value that cannot be parsed: the caller removes it (fail closed)."""


def shift_da(value: str, days: int, granularity: Granularity) -> str:
    """Shift one DA value (YYYYMMDD; legacy YYYY.MM.DD accepted) by ``days``."""
    text = value.strip().replace(".", "")
    if not text:
        return ""
    match = _DA.match(text)
    if not match:
        raise BadTemporalValue(f"not a DICOM date: {len(text)} characters")
    try:
        day = dt.date(int(match[1]), int(match[2]), int(match[3])) + dt.timedelta(days=days)
    except (ValueError, OverflowError) as error:
        raise BadTemporalValue(str(error)) from error
    if granularity is Granularity.YEAR:
        return f"{day.year:04d}0101"
    return day.strftime("%Y%m%d")


def shift_da_multi(value: str, days: int, granularity: Granularity) -> str:
    """Shift a DA value that may be multi-valued or a range (``A-B``)."""
    out = []
    for part in value.split("\\"):
        if "-" in part:
            out.append(
                "-".join(shift_da(p, days, granularity) if p else "" for p in part.split("-"))
            )
        else:
            out.append(shift_da(part, days, granularity))
    return "\\".join(out)


def shift_dt(value: str, days: int, granularity: Granularity) -> str:
    """Shift a DT value by whole days, keeping its precision, time of day and offset."""
    text = value.strip()
    if not text:
        return ""
    match = _DT.match(text)
    if not match:
        raise BadTemporalValue(f"not a DICOM date-time: {len(text)} characters")
    year, month, day_, time, zone = match.groups()
    shifted = shift_da(f"{year}{month or '01'}{day_ or '01'}", days, granularity)
    if granularity is Granularity.YEAR:
        return shifted[:4]
    precision = 4 + (2 if month else 0) + (2 if day_ else 0)
    return shifted[:precision] + (time or "") + (zone or "")


def shift_dt_multi(value: str, days: int, granularity: Granularity) -> str:
    return "\\".join(shift_dt(p, days, granularity) for p in value.split("\\"))


def aggregate_age(value: str, over: int | None) -> str:
    """Patient's Age (AS): ages above ``over`` years become ``over+1`` ('90Y' = 90 or older)."""
    text = value.strip()
    if not text or over is None:
        return text
    match = _AS.match(text)
    if not match:
        raise BadTemporalValue("not a DICOM age string")
    if match[2] == "Y" and int(match[1]) > over:
        return f"{over + 1:03d}Y"
    return text
