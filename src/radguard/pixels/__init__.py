"""Clean Pixel Data: find burned-in text with OCR, redact what identifies, prove it is gone.

Names load on first use (PEP 562), so ``radguard --help`` does not pay for NumPy or OpenCV.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radguard.pixels.classify import Classifier, Decision, Verdict, header_identifiers
    from radguard.pixels.clean import PixelCleaner, PixelReport, TextFound, triage
    from radguard.pixels.detect import Pass, ScanStats, read_frame, read_frames
    from radguard.pixels.engines import (
        Box,
        EngineName,
        EngineUnavailable,
        Line,
        OcrEngine,
        RapidOcrEngine,
        TesseractEngine,
        get_engine,
    )

_WHERE = {
    "Classifier": "classify",
    "Decision": "classify",
    "Verdict": "classify",
    "header_identifiers": "classify",
    "PixelCleaner": "clean",
    "PixelReport": "clean",
    "TextFound": "clean",
    "triage": "clean",
    "Pass": "detect",
    "ScanStats": "detect",
    "read_frame": "detect",
    "read_frames": "detect",
    "Box": "engines",
    "EngineName": "engines",
    "EngineUnavailable": "engines",
    "Line": "engines",
    "OcrEngine": "engines",
    "RapidOcrEngine": "engines",
    "TesseractEngine": "engines",
    "get_engine": "engines",
}

__all__ = [
    "Box",
    "Classifier",
    "Decision",
    "EngineName",
    "EngineUnavailable",
    "Line",
    "OcrEngine",
    "Pass",
    "PixelCleaner",
    "PixelReport",
    "RapidOcrEngine",
    "ScanStats",
    "TesseractEngine",
    "TextFound",
    "Verdict",
    "get_engine",
    "header_identifiers",
    "read_frame",
    "read_frames",
    "triage",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'radguard.pixels' has no attribute {name!r}")
    return getattr(import_module(f"radguard.pixels.{module}"), name)
