"""Records for risk measurement: one per released patient (or study, or series), from headers.

A record holds the released values of the quasi-identifiers of one unit. Files are read header
only and streamed; memory grows with the number of units, not files.

Rules (documented in ``docs/risk.md``):

- ``patient`` (default) groups files by Patient ID; a patient whose studies differ takes the
  values of the *first* study, ordered by Study Date, then Study Time, then Study Instance UID
  (studies without a date sort after dated ones). ``study`` groups by Study Instance UID,
  ``series`` by Series Instance UID.
- Within a unit (the first study of a patient, a study, a series) a quasi-identifier whose
  files carry several values (a CT and a PT series; localizer and axial image sizes) takes
  all of them, sorted and joined by ``" + "``: the combination is what is released.
- A quasi-identifier that no file of the unit carries (absent or empty) has the value
  ``"(missing)"``, which counts as a value of its own.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radguard.errors import DICOM_READ_ERRORS, RadguardError

MISSING = "(missing)"
"""The value of a quasi-identifier that a unit does not carry."""

MULTI_SEP = " + "
"""Joins the distinct values of a quasi-identifier within one unit."""

DEFAULT_QIS: tuple[str, ...] = (
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyDate",
    "InstitutionName",
    "Manufacturer",
    "ManufacturerModelName",
    "Modality",
    "BodyPartExamined",
    "ProtocolName",
    "Rows",
    "Columns",
)
"""Quasi-identifiers measured by default: demographics, dates, site, device, protocol, size."""

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_BINARY_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_GROUPING = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "StudyDate", "StudyTime")
_UNREADABLE = DICOM_READ_ERRORS


class RiskInputError(RadguardError):
    """Risk cannot be measured as asked: unknown quasi-identifiers, no records, bad sizes."""


class Unit(enum.Enum):
    """What one record stands for."""

    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"


@dataclass(frozen=True)
class Record:
    """The released quasi-identifier values of one unit.

    ``record_id`` is the pseudonymous Patient ID (patient unit; the Study Instance UID when a
    file carries no Patient ID), the Study Instance UID (study unit) or the Series Instance UID
    (series unit): never any other value. ``values`` maps DICOM keywords to released values.
    """

    record_id: str
    values: Mapping[str, str]
    unit: Unit = Unit.PATIENT
    files: int = 1

    def value(self, keyword: str) -> str:
        """The record's value of ``keyword``; ``(missing)`` when it has none."""
        return self.values.get(keyword) or MISSING


@dataclass
class Scan:
    """What :func:`scan_folder` found: the records, and the files it could not use."""

    records: list[Record]
    files_read: int = 0
    skipped: list[Path] = field(default_factory=list)


def check_quasi_identifiers(qis: Iterable[str]) -> tuple[str, ...]:
    """The quasi-identifiers as a tuple, after checking each is a DICOM keyword with text value.

    Raises :class:`RiskInputError` listing every keyword that is unknown, repeated, or whose
    value is binary or a sequence.
    """
    chosen = tuple(qis)
    problems = []
    for keyword in chosen:
        if keyword not in keyword_dict:
            problems.append(f"{keyword!r} is not a DICOM keyword")
        elif dictionary_VR(keyword) in _BINARY_VRS:
            problems.append(f"{keyword} has VR {dictionary_VR(keyword)}, not a comparable value")
    repeated = sorted({k for k in chosen if chosen.count(k) > 1})
    problems += [f"{keyword} is given more than once" for keyword in repeated]
    if problems:
        raise RiskInputError("quasi-identifiers: " + "; ".join(problems))
    return chosen


def collect_records(
    folder: Path, qis: Sequence[str] = DEFAULT_QIS, unit: Unit | str = Unit.PATIENT
) -> list[Record]:
    """One record per patient (or study, or series) of the DICOM files under ``folder``.

    Reads headers only, streaming the folder; files that are not DICOM, DICOMDIR indexes and
    files without the identifier of their unit are skipped (see :func:`scan_folder` to list
    them). Records are sorted by ``record_id``.
    """
    return scan_folder(folder, qis, unit).records


def scan_folder(
    folder: Path, qis: Sequence[str] = DEFAULT_QIS, unit: Unit | str = Unit.PATIENT
) -> Scan:
    """Like :func:`collect_records`, also counting files read and listing files skipped."""
    from radguard.pipeline.run import discover  # here: the pipeline may import risk (gate)

    unit = Unit(unit)
    keywords = check_quasi_identifiers(qis)
    if not Path(folder).exists():
        raise RiskInputError(f"{folder}: no such file or folder")
    tags = sorted(set(keywords) | set(_GROUPING))
    builder = _Builder(keywords, unit)
    scan = Scan(records=[])
    for path in discover(Path(folder)):
        header = _read_header(path, tags)
        if header is None or not builder.add(header):
            scan.skipped.append(path)
        else:
            scan.files_read += 1
    scan.records = builder.records()
    return scan


def header_of(ds: Dataset, qis: Sequence[str] = DEFAULT_QIS) -> dict[str, str]:
    """The text of the quasi-identifiers and grouping attributes of an in-memory dataset.

    For measuring de-identified datasets before they are written: feed the headers to
    :func:`records_from_headers`.
    """
    return {tag: _text(ds.get(tag)) for tag in sorted(set(qis) | set(_GROUPING))}


def records_from_headers(
    headers: Iterable[Mapping[str, str]],
    qis: Sequence[str] = DEFAULT_QIS,
    unit: Unit | str = Unit.PATIENT,
) -> list[Record]:
    """Records from file headers (keyword -> text, as :func:`header_of` gives), same rules."""
    builder = _Builder(check_quasi_identifiers(qis), Unit(unit))
    for header in headers:
        builder.add(header)
    return builder.records()


def _read_header(path: Path, tags: list[str]) -> dict[str, str] | None:
    """The text of ``tags`` in one file ('' when absent); None for non-DICOM and DICOMDIR."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decoder messages may quote values
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=tags)
            meta = getattr(ds, "file_meta", None)
            storage = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
            if storage == _MEDIA_STORAGE_DIRECTORY:
                return None
            return {tag: _text(ds.get(tag)) for tag in tags}
    except _UNREADABLE:
        return None


def _text(value: Any) -> str:
    """A header value as released text: multi-values joined by backslash, stripped."""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


@dataclass
class _Unit:
    """One unit being built: the order of the study it keeps, and its values so far."""

    order: tuple[int, str, str, str]
    values: dict[str, set[str]]
    files: int = 0


class _Builder:
    """Folds file headers into units, keeping only the first study of each patient."""

    def __init__(self, keywords: tuple[str, ...], unit: Unit) -> None:
        self.keywords = keywords
        self.unit = unit
        self.units: dict[str, _Unit] = {}

    def add(self, header: Mapping[str, str]) -> bool:
        """Fold one file in; False when it lacks the identifier of its unit."""
        study_uid = header.get("StudyInstanceUID", "")
        if self.unit is Unit.PATIENT:
            key = header.get("PatientID", "") or study_uid
        elif self.unit is Unit.STUDY:
            key = study_uid
        else:
            key = header.get("SeriesInstanceUID", "")
        if not key:
            return False
        # First study: dated before undated, then date, time, UID (DA and TM sort as text).
        date = header.get("StudyDate", "")
        order = (0 if date else 1, date, header.get("StudyTime", ""), study_uid)
        current = self.units.get(key)
        if current is None:
            current = self.units[key] = _Unit(order, {k: set() for k in self.keywords})
        elif self.unit is Unit.PATIENT and study_uid != current.order[3]:
            if order > current.order:
                return True  # a later study of this patient: read, not measured
            current = self.units[key] = _Unit(order, {k: set() for k in self.keywords})
        current.files += 1
        for keyword in self.keywords:
            if header.get(keyword):
                current.values[keyword].add(header[keyword])
        return True

    def records(self) -> list[Record]:
        return [
            Record(
                record_id=key,
                values={k: MULTI_SEP.join(sorted(v)) or MISSING for k, v in built.values.items()},
                unit=self.unit,
                files=built.files,
            )
            for key, built in sorted(self.units.items())
        ]
