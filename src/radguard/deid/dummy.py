"""Dummy values (action D): non-empty, valid for their VR, and carrying no information."""

from __future__ import annotations

from typing import Any

DUMMY_TEXT = "ANONYMIZED"

_DUMMIES: dict[str, Any] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "AT": 0x00000000,
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000.000000",
    "FD": 0.0,
    "FL": 0.0,
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "PN": "ANONYMIZED^",
    "SH": DUMMY_TEXT,
    "SL": 0,
    "SS": 0,
    "ST": DUMMY_TEXT,
    "SV": 0,
    "TM": "000000.00",
    "UC": DUMMY_TEXT,
    "UL": 0,
    "UN": b"\x00\x00",
    "UR": "",
    "US": 0,
    "UT": DUMMY_TEXT,
    "UV": 0,
}


def dummy_for(vr: str) -> Any:
    """The dummy value for ``vr`` (UI and SQ are handled by the engine, not here)."""
    return _DUMMIES.get(vr, b"\x00\x00")
