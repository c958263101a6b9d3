"""The answer key: what the phantom planted where, and what a research release must do with it.

See the package docstring for the JSON schema. :class:`Planter` records values as a generator
sets them; :func:`values_at` reads them back by tag path (for tests and verifiers).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

SCHEMA = "radguard-phantom-answer-key/1"


class Category(enum.Enum):
    """What kind of value was planted."""

    PATIENT_NAME = "patient_name"
    PATIENT_ID = "patient_id"
    DATE = "date"
    TIME = "time"
    ADDRESS = "address"
    PHONE = "phone"
    INSTITUTION = "institution"
    STAFF_NAME = "staff_name"
    DEVICE = "device"
    ACCESSION = "accession"
    FREE_TEXT = "free_text"
    PRIVATE = "private"
    UID = "uid"
    BURNED_IN = "burned_in"
    FILENAME = "filename"
    RESEARCH = "research"


class Expect(enum.Enum):
    """What a release under radguard's research policy must do with the original value."""

    REMOVE = "remove"  # the original value must not be found in the released file
    KEEP = "keep"  # the original value must still be there, at the same path


@dataclass(frozen=True)
class Planted:
    """One planted value in one file (``path``: tag path, ``filename`` or pixel data)."""

    file: str
    path: str
    category: Category
    value: str
    expect: Expect
    creator: str = ""  # private creator, for private attributes

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "file": self.file,
            "path": self.path,
            "category": self.category.value,
            "value": self.value,
            "expect": self.expect.value,
        }
        if self.creator:
            data["creator"] = self.creator
        return data


@dataclass(frozen=True)
class BurnedText:
    """One line of text burned into a frame of pixel data or of an overlay."""

    file: str
    frame: int
    x: int
    y: int
    w: int
    h: int
    text: str
    font: str
    size: int
    ink: list[int]
    source: str = "(7FE0,0010)"  # (7FE0,0010) pixel data, or (60xx,3000) overlay data


@dataclass(frozen=True)
class Reference:
    """An instance that a file refers to, and where the reference sits."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str = ""
    study_instance_uid: str = ""


@dataclass
class FileRecord:
    """One written file: its original UIDs and the instances it refers to."""

    file: str
    patient: int
    study: int
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    transfer_syntax_uid: str
    number_of_frames: int = 1
    references: list[Reference] = field(default_factory=list)


@dataclass
class StudyRecord:
    """One study of a patient: when (day after the first study) and what."""

    study_instance_uid: str
    study_date: str
    day: int
    description: str
    accession_number: str
    folder: str


@dataclass
class PatientRecord:
    """One patient: identity, folder, studies and the days between consecutive studies."""

    index: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    folder: str
    studies: list[StudyRecord] = field(default_factory=list)
    intervals_days: list[int] = field(default_factory=list)


@dataclass
class AnswerKey:
    """Everything the phantom planted, for a verifier to check a release against."""

    seed: int
    policy: str = "research"
    patients: list[PatientRecord] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)
    burned_in: list[BurnedText] = field(default_factory=list)
    transfer_syntaxes: dict[str, int] = field(default_factory=dict)
    skipped_transfer_syntaxes: dict[str, str] = field(default_factory=dict)
    fonts: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The key as JSON text: stable (same key, same bytes), one list entry per line."""
        head = {
            "schema": SCHEMA,
            "seed": self.seed,
            "policy": self.policy,
            "transfer_syntaxes": self.transfer_syntaxes,
            "skipped_transfer_syntaxes": self.skipped_transfer_syntaxes,
            "fonts": self.fonts,
        }
        lists = {
            "patients": [asdict(p) for p in self.patients],
            "files": [asdict(f) for f in self.files],
            "burned_in": [asdict(b) for b in self.burned_in],
            "planted": [p.to_json() for p in self.planted],
        }
        parts = [f" {json.dumps(k)}: {_dumps(v)}" for k, v in head.items()]
        for name, entries in lists.items():
            body = ",\n".join(f"  {_dumps(e)}" for e in entries)
            parts.append(f" {json.dumps(name)}: [\n{body}\n ]" if entries else f' "{name}": []')
        return "{\n" + ",\n".join(parts) + "\n}\n"

    def write(self, path: Path) -> None:
        """Write the key to ``path`` (UTF-8 JSON)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> AnswerKey:
        """Read a key written by :meth:`write`."""
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{path}: not a radguard phantom answer key ({data.get('schema')!r})")
        patients = [
            PatientRecord(**{**p, "studies": [StudyRecord(**s) for s in p["studies"]]})
            for p in data["patients"]
        ]
        files = [
            FileRecord(**{**f, "references": [Reference(**r) for r in f["references"]]})
            for f in data["files"]
        ]
        planted = [
            Planted(
                p["file"],
                p["path"],
                Category(p["category"]),
                p["value"],
                Expect(p["expect"]),
                p.get("creator", ""),
            )
            for p in data["planted"]
        ]
        return cls(
            seed=data["seed"],
            policy=data["policy"],
            patients=patients,
            files=files,
            planted=planted,
            burned_in=[BurnedText(**b) for b in data["burned_in"]],
            transfer_syntaxes=data["transfer_syntaxes"],
            skipped_transfer_syntaxes=data["skipped_transfer_syntaxes"],
            fonts=data["fonts"],
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def tag_text(tag: int) -> str:
    """``(GGGG,EEEE)`` for a tag."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def parse_path(path: str) -> list[int]:
    """The tags of a path such as ``(0040,0275)/(0032,1060)``."""
    tags = []
    for part in path.split("/"):
        group, element = part.strip("()").split(",")
        tags.append(int(group, 16) << 16 | int(element, 16))
    return tags


def _as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00 ")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_as_text(v) for v in value)
    return "" if value is None else str(value)


def values_at(ds: Dataset, path: str) -> list[str]:
    """Every value found at a tag path, in every item of every sequence on the way, as text.

    Multiple values are joined with ``\\``; binary values (OB, UN) are decoded as Latin-1, and a
    sequence stored as UN is returned whole.
    """
    found: list[str] = []

    def walk(item: Dataset, tags: list[int]) -> None:
        tag = tags[0]
        if tag not in item:
            return
        element = item[tag]
        if len(tags) == 1 or isinstance(element.value, bytes):
            # a sequence read as bytes (an unknown private sequence in an implicit VR file is
            # VR UN) cannot be walked: its whole value stands for everything inside it
            found.append(_as_text(element.value))
            return
        if element.VR in ("SQ", "UN") and isinstance(element.value, Iterable):
            for child in element.value:
                if isinstance(child, Dataset):
                    walk(child, tags[1:])

    walk(ds, parse_path(path))
    return found


_Entry = tuple[str, Category, str, Expect, str]


class Planter:
    """Records the values a generator plants into one dataset, before its file name is known."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def put(
        self,
        ds: Dataset,
        keyword: str,
        value: Any,
        category: Category | None = None,
        expect: Expect = Expect.REMOVE,
        under: tuple[int, ...] = (),
    ) -> None:
        """Set ``ds.<keyword> = value`` and record it (``under``: the sequence tags above ds).

        An existing element is replaced, not assigned to: slices of a series share element
        objects with their series template.
        """
        if keyword in ds:
            delattr(ds, keyword)
        setattr(ds, keyword, value)
        if category is not None:
            tag = tag_for_keyword(keyword)
            assert tag is not None, keyword
            self.mark((*under, tag), category, _as_text(value), expect)

    def mark(
        self,
        tags: tuple[int, ...],
        category: Category,
        value: str,
        expect: Expect = Expect.REMOVE,
        creator: str = "",
    ) -> None:
        """Record ``value`` (or a part of the value) found at ``tags``."""
        path = "/".join(tag_text(t) for t in tags)
        self.entries.append((path, category, value, expect, creator))

    def mark_path(
        self, path: str, category: Category, value: str, expect: Expect = Expect.REMOVE
    ) -> None:
        """Record a value at a non-tag path (``filename``)."""
        self.entries.append((path, category, value, expect, ""))

    def planted(self, file: str) -> list[Planted]:
        """The recorded entries for the file ``file``."""
        return [Planted(file, p, c, v, e, cr) for p, c, v, e, cr in self.entries]
