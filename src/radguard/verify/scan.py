"""Reading one DICOM file for verification: its text, its UIDs and its references.

Every element value outside the pixel data is read (private and VR UN included, at every
sequence depth), plus the 128-byte preamble; pixel data, overlay bitmaps and waveform samples
are never loaded (deferred reads).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]

from radguard.deid.engine import DEFINITION_UIDS

_BULK = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010, 0x00420011})
_TEXT_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UR",
        "UT",
        "UI",
    }
)
# UIDs that name software or classes, never a patient's instance (plus definition UIDs).
_NOT_INSTANCE_UIDS = DEFINITION_UIDS | {
    0x00020002,
    0x00020010,
    0x00020012,
    0x00080016,
    0x00081150,
    0x00020100,
}


@dataclass
class Field:
    """One element value as text, with where it was."""

    tag: int
    parent: str  # tag path of the enclosing item ("" at the top level)
    vr: str
    text: str
    private: bool = False

    @property
    def path(self) -> str:
        return _path(self.parent, self.tag)


@dataclass
class Scanned:
    """What the verifier needs from one file."""

    path: Path
    fields: list[Field] = field(default_factory=list)
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    patient_id: str = ""
    study_date: str = ""
    references: list[str] = field(default_factory=list)  # ReferencedSOPInstanceUID values
    uids: set[str] = field(default_factory=set)
    instance_uids: set[str] = field(default_factory=set)  # UIDs of instances, not definitions
    preamble: bytes = b""
    error: str = ""


def _vr(tag: int, raw: Any) -> str:
    vr = getattr(raw, "VR", None)
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _path(parent: str, tag: int) -> str:
    part = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{parent}/{part}" if parent else part


def _is_bulk(tag: int) -> bool:
    group = tag >> 16
    return (
        tag in _BULK
        or (0x6000 <= group <= 0x601E and tag & 0xFFFF == 0x3000)
        or (0x5000 <= group <= 0x501E and tag & 0xFFFF == 0x3000)
    )


# Character sets whose bytes decode without pydicom's help (ASCII, Latin-1, UTF-8).
_PLAIN_CHARSETS = {
    "": "latin-1",
    "ISO_IR 6": "latin-1",
    "ISO 2022 IR 6": "latin-1",
    "ISO_IR 100": "latin-1",
    "ISO_IR 192": "utf-8",
}


def _charset(ds: Dataset, inherited: str | None) -> str | None:
    """The codec for raw text bytes of ``ds``, or None when pydicom must decode them."""
    raw = ds.get_item(0x00080005)
    if raw is None:
        return inherited
    try:
        value = ds[0x00080005].value
    except Exception:  # noqa: BLE001 - an odd character set: let pydicom decode values
        return None
    names = [
        str(v).strip()
        for v in (
            value
            if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
            else [value]
        )
    ]
    codecs = {_PLAIN_CHARSETS.get(n) for n in names or [""]}
    return codecs.pop() if len(codecs) == 1 and None not in codecs else None


def _walk(ds: Dataset, parent: str, out: Scanned, depth: int, codec: str | None) -> None:
    codec = _charset(ds, codec)
    for tag in [int(t) for t in ds.keys()]:
        if _is_bulk(tag):
            continue
        raw = ds.get_item(tag)
        vr = _vr(tag, raw)
        private = bool(tag >> 16 & 1)
        if vr == "SQ":
            path = _path(parent, tag)
            if depth < 32:
                try:
                    items = ds[tag].value or []
                except Exception:  # noqa: BLE001 - an undecodable sequence: scan its bytes
                    value = raw.value if isinstance(raw, RawDataElement) else b""
                    out.fields.append(
                        Field(tag, parent, "UN", (value or b"").decode("latin-1"), True)
                    )
                    continue
                for index, item in enumerate(items):
                    _walk(item, f"{path}[{index}]", out, depth + 1, codec)
            continue
        if vr in _TEXT_VRS and not (private and isinstance(raw, RawDataElement) and raw.VR is None):
            if isinstance(raw, RawDataElement) and codec is not None and vr != "PN":
                # fast path: the raw bytes decode as they are (no value conversion)
                text = (raw.value or b"").decode(codec, "replace").strip(" \x00")
            else:
                try:
                    text = _as_text(ds[tag].value)
                except Exception:  # noqa: BLE001 - undecodable text: fall back to raw bytes
                    text = _as_text(raw.value if isinstance(raw, RawDataElement) else "")
            if vr == "UI":
                for uid in text.split("\\"):
                    uid = uid.strip().rstrip("\x00")
                    if uid:
                        out.uids.add(uid)
                        if tag not in _NOT_INSTANCE_UIDS and uid not in UID_dictionary:
                            out.instance_uids.add(uid)
                        if tag == 0x00081155:
                            out.references.append(uid)
            out.fields.append(Field(tag, parent, vr, text, private))
        else:
            value = raw.value if isinstance(raw, RawDataElement) else ds[tag].value
            out.fields.append(Field(tag, parent, vr, _as_text(value), private))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_as_text(v) for v in value)
    return str(value)


def scan_file(path: Path) -> Scanned:
    """Scan one file; a file that cannot be read comes back with ``error`` set."""
    scanned = Scanned(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, defer_size=4096, force=True)
            scanned.preamble = bytes(getattr(ds, "preamble", b"") or b"")
            _walk(ds, "", scanned, 0, "latin-1")
            meta = getattr(ds, "file_meta", None)
            if meta is not None:
                _walk(meta, "", scanned, 0, "latin-1")
    except Exception as error:  # noqa: BLE001 - reported as a finding by the caller
        scanned.error = f"unreadable: {type(error).__name__}"
        return scanned
    scanned.sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "")
    if not scanned.sop_instance_uid:
        scanned.error = "not a DICOM object (no SOP Instance UID)"
    scanned.sop_class_uid = str(ds.get("SOPClassUID", "") or "")
    scanned.study_uid = str(ds.get("StudyInstanceUID", "") or "")
    scanned.series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    scanned.patient_id = str(ds.get("PatientID", "") or "")
    scanned.study_date = str(ds.get("StudyDate", "") or "")
    return scanned


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root`` in a stable order (streamed)."""
    from radguard.pipeline.run import discover

    yield from discover(root)
