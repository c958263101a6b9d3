"""Clean Pixel Data: find burned-in text with OCR, redact what identifies, prove it is gone."""

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
