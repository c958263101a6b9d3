"""Identifying values of the originals, and a multi-pattern search for them in outputs.

Values are compared word by word, case- and separator-insensitively: both sides are
upper-cased and every run of characters other than letters and digits becomes one space, so
``SMITH^JOHN``, ``Smith, John`` and ``smith john`` all read ``SMITH JOHN``. The search is an
Aho-Corasick automaton (pyahocorasick) over every pattern of the whole set, padded with spaces
so that only whole words match: it stays linear in the size of the outputs however many
patients the originals hold.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword

from radguard.deid.text import date_variants
from radguard.profile.options import Option
from radguard.verify.generic import CLINICAL_WORDS
from radguard.verify.scan import Scanned

_NON_WORD = re.compile(r"[^0-9A-Za-z\u00C0-\uFFFF]+")
_PARTICLES = frozenset(
    {
        "DR",
        "MR",
        "MRS",
        "MS",
        "JR",
        "SR",
        "DE",
        "VAN",
        "VON",
        "LA",
        "DA",
        "DI",
        "DU",
        "LE",
        "EL",
        "II",
        "III",
        "MD",
        "PHD",
    }
)


class Category(enum.Enum):
    PATIENT_NAME = "patient_name"
    STAFF_NAME = "staff_name"
    PATIENT_ID = "patient_id"
    ACCESSION = "accession"
    DATE = "date"
    ADDRESS = "address"
    PHONE = "phone"
    INSTITUTION = "institution"
    DEVICE = "device"
    UID = "uid"


# Which option, when in force, keeps a category on purpose ("retained by option").
RETAINING_OPTION: dict[Category, Option] = {
    Category.INSTITUTION: Option.RETAIN_INSTITUTION_IDENTITY,
    Category.DEVICE: Option.RETAIN_DEVICE_IDENTITY,
    Category.UID: Option.RETAIN_UIDS,
    Category.DATE: Option.RETAIN_LONGITUDINAL_FULL_DATES,
}


def _tags(*keywords: str) -> frozenset[int]:
    return frozenset(t for t in (tag_for_keyword(k) for k in keywords) if t is not None)


_BY_TAG: dict[int, Category] = {}
for _category, _keywords in (
    (
        Category.PATIENT_NAME,
        (
            "PatientName",
            "OtherPatientNames",
            "PatientBirthName",
            "PatientMotherBirthName",
            "ResponsiblePerson",
        ),
    ),
    (
        Category.PATIENT_ID,
        (
            "PatientID",
            "OtherPatientIDs",
            "MedicalRecordLocator",
            "ClinicalTrialSubjectID",
            "ClinicalTrialSubjectReadingID",
        ),
    ),
    (
        Category.ACCESSION,
        (
            "AccessionNumber",
            "StudyID",
            "RequestedProcedureID",
            "ScheduledProcedureStepID",
            "PerformedProcedureStepID",
            "AdmissionID",
            "PlacerOrderNumberImagingServiceRequest",
            "FillerOrderNumberImagingServiceRequest",
        ),
    ),
    (
        Category.ADDRESS,
        ("PatientAddress", "PersonAddress", "ReferringPhysicianAddress", "RegionOfResidence"),
    ),
    (
        Category.PHONE,
        ("PatientTelephoneNumbers", "PersonTelephoneNumbers", "ReferringPhysicianTelephoneNumbers"),
    ),
    (
        Category.INSTITUTION,
        ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName"),
    ),
    (Category.DEVICE, ("DeviceSerialNumber", "StationName", "DetectorID")),
    (Category.DATE, ("PatientBirthDate",)),
):
    for _tag in _tags(*_keywords):
        _BY_TAG[_tag] = _category


_BENIGN_TAGS = _tags(
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "Modality",
    "BodyPartExamined",
    "ImageType",
    "ConversionType",
    "CodeMeaning",
    "CodeValue",
    "CodingSchemeDesignator",
    "ValueType",
)
_DUMMIES = ("ANONYMIZED", "ANONYMOUS", "ANONYMIZED^")


def normalize(text: str) -> str:
    """Upper-case words separated by single spaces, padded with a space on both sides."""
    return " " + _NON_WORD.sub(" ", text.upper()).strip() + " "


@dataclass
class IdentifierSet:
    """Every identifying value found in a set of originals, by normalized value.

    Two scopes: *strong* patterns (whole names, name components of five letters or more
    that are not clinical words, IDs, accession numbers, addresses, phone numbers,
    institutions, devices, birth dates) are searched in every output, since any of them
    anywhere is a leak; short name components are searched only in the outputs of the same
    patient (``per_patient``), because a component such as "TEST" or "LI" is an ordinary word
    in another patient's report.

    Values that the originals also carry in attributes kept on purpose because they identify
    no one (manufacturer, model, software, modality, body part, coded values and meanings) are
    not searched: a site named after its scanner vendor would otherwise flag every
    manufacturer field. radguard's own dummy values are benign too.
    """

    patterns: dict[str, Category] = field(default_factory=dict)
    per_patient: dict[str, dict[str, Category]] = field(default_factory=dict)
    uids: set[str] = field(default_factory=set)
    benign: set[str] = field(default_factory=lambda: {normalize(d) for d in _DUMMIES})

    def add(self, category: Category, value: str, patient: str = "") -> None:
        own = self.per_patient.setdefault(patient, {})
        for pattern, strong in _patterns(category, value):
            # strong patterns are searched set-wide already; the patient keeps the weak ones
            (self.patterns if strong else own).setdefault(pattern, category)

    def add_file(self, scanned: Scanned) -> str:
        """Collect the identifying values of one original file; returns its patient key."""
        patient = scanned.patient_id
        for item in scanned.fields:
            if not item.text:
                continue
            if item.tag in _BENIGN_TAGS or item.vr == "CS":
                self.benign.update(normalize(v) for v in item.text.split("\\"))
                continue
            category = _BY_TAG.get(item.tag)
            if category is None and item.vr == "PN":
                category = Category.STAFF_NAME
            if category is not None:
                for value in item.text.split("\\"):
                    self.add(category, value, patient)
        self.uids.update(scanned.instance_uids)
        return patient

    def automaton(self) -> Matcher:
        return Matcher({p: c for p, c in self.patterns.items() if p not in self.benign})

    def own(self, patient: str) -> list[tuple[str, Category]]:
        """The patient's own weak patterns (short name components), benign values left out."""
        return [
            (p, c) for p, c in self.per_patient.get(patient, {}).items() if p not in self.benign
        ]


def _patterns(category: Category, value: str) -> Iterator[tuple[str, bool]]:
    """(normalized pattern, strong) pairs for one identifying value."""
    text = value.strip()
    if not text:
        return
    if category is Category.DATE:
        for form in {text, *date_variants(text)}:
            yield normalize(form), True
        return
    if category in (Category.PATIENT_NAME, Category.STAFF_NAME):
        for group in text.split("="):  # alphabetic, ideographic, phonetic groups
            words = normalize(group).split()
            if len(words) > 1:
                yield " " + " ".join(words) + " ", True
            for word in words:
                if len(word) >= 2 and word not in _PARTICLES and not word.isdigit():
                    # long, uncommon components are searched set-wide too; short ones and
                    # clinical words only in the patient's own files
                    strong = len(word) >= 5 and word not in CLINICAL_WORDS
                    yield f" {word} ", strong
        return
    normalized = normalize(text)
    if _informative(normalized):
        yield normalized, True


def _informative(pattern: str) -> bool:
    """Long enough to mean something: 3+ characters, and 4+ digits when only digits."""
    compact = pattern.replace(" ", "")
    return len(compact) >= 4 if compact.isdigit() else len(compact) >= 3


class Matcher:
    """Aho-Corasick search of normalized text for whole-word identifier patterns."""

    def __init__(self, patterns: dict[str, Category]) -> None:
        import ahocorasick

        self._automaton = ahocorasick.Automaton()
        for pattern, category in patterns.items():
            self._automaton.add_word(pattern, (pattern, category))
        self._empty = not patterns
        if not self._empty:
            self._automaton.make_automaton()

    def find(self, text: str) -> list[tuple[str, Category]]:
        """(pattern, category) of every identifier in ``text`` (already normalized)."""
        if self._empty or not text.strip():
            return []
        found = {hit for _, hit in self._automaton.iter(text)}
        return sorted(found, key=lambda h: h[0])


def date_patterns(values: Iterable[str]) -> set[str]:
    """Normalized written forms of DICOM dates (for the per-file date check)."""
    forms: set[str] = set()
    for value in values:
        for part in value.split("\\"):
            part = part.strip()
            if re.fullmatch(r"\d{8}", part):
                forms.update(normalize(f) for f in {part, *date_variants(part)})
    return forms
