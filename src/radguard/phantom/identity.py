"""Synthetic people, sites and UIDs for the phantom: every value derived from the seed.

The names are invented but shaped like real ones (family, given and middle name components,
one with letters outside ASCII), and none of them is a clinical word, so a search for a name in
a de-identified file cannot be fooled by "CHEST" or "BRAIN".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import unicodedata
from dataclasses import dataclass

import numpy as np

_FAMILY = (
    "HALVORSEN",
    "OKONKWO",
    "VANTERPOOL",
    "ABERNATHY",
    "KOWALCZYK",
    "NAKAGAWA",
    "FITZGERALD",
    "NÚÑEZ",
    "PETROVSKY",
    "LINDQVIST",
    "BARRIENTOS",
    "DESROCHERS",
    "GRÖNHOLM",
    "MCALLISTER",
    "ZIMMERMANN",
    "SMITHERS",
)
_GIVEN = (
    "JOHANNA",
    "BARTHOLOMEW",
    "CORNELIUS",
    "WILHELMINA",
    "RAFAEL",
    "PRIYANKA",
    "TOBIAS",
    "MARGUERITE",
    "AUGUSTINE",
    "SIGRID",
    "LEOPOLD",
    "ROSALIND",
    "IGNATIUS",
    "FLORENTINA",
)
_MIDDLE = ("QUINCY", "BEATRIX", "EZEKIEL", "ODETTE", "PHINEAS", "HORTENSE", "CASIMIR", "LUCINDA")
_STAFF_FAMILY = (
    "KILDARE",
    "QUINNELL",
    "HOUSEMAN",
    "CRANSHAW",
    "BLACKWOOD",
    "PEMBERTON",
    "ASHWORTH",
    "THORNBURY",
    "WAVERLEY",
    "DELACROIX",
)
_STAFF_GIVEN = ("MARCUS", "EVANGELINE", "HORATIO", "PERPETUA", "ALISTAIR", "GWENDOLYN", "ULRICH")
_STREETS = ("LINDEN STREET", "ORCHARD LANE", "BIRCHWOOD AVENUE", "HAWTHORNE ROAD", "MAPLEGROVE WAY")
_CITIES = (
    ("SPRINGFIELD", "IL", "62704"),
    ("NORTHBROOK", "IL", "60062"),
    ("FAIRHAVEN", "MA", "02719"),
    ("GREENDALE", "WI", "53129"),
)
_SITES = (
    ("ST. HILDEGARD GENERAL HOSPITAL", "400 CLOISTER DRIVE, SPRINGFIELD, IL 62701", "HILDEGARD"),
    ("NORTHBROOK UNIVERSITY MEDICAL CENTER", "1 CAMPUS LOOP, NORTHBROOK, IL 60062", "NBUMC"),
    ("LAKESIDE IMAGING INSTITUTE", "77 SHORELINE BOULEVARD, FAIRHAVEN, MA 02719", "LAKESIDE"),
)


def uid(seed: int, *parts: object) -> str:
    """A fixed UID for ``parts`` under ``seed``: ``2.25.`` and 128 bits of sha256 (PS3.5 B.2)."""
    text = "|".join(["radguard-phantom", str(seed), *map(str, parts)])
    digest = hashlib.sha256(text.encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big") or 1)


def ascii_folder(text: str) -> str:
    """A file-system-friendly form of a name: ASCII letters, digits, ``_`` and ``-``."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if c.isalnum() or c in "-" else "_" for c in plain).strip("_")


@dataclass(frozen=True)
class Person:
    """A person name with its DICOM PN components (PS3.5 6.2.1)."""

    family: str
    given: str
    middle: str = ""
    prefix: str = ""

    @property
    def pn(self) -> str:
        """The PN value: ``FAMILY^GIVEN^MIDDLE^PREFIX`` without trailing empty components."""
        return "^".join([self.family, self.given, self.middle, self.prefix]).rstrip("^")

    @property
    def written(self) -> str:
        """The name as staff type it in free text: ``Given Family``."""
        return f"{self.given.title()} {self.family.title()}"


@dataclass(frozen=True)
class Site:
    """Where a study was made: institution, device and the staff working there."""

    institution: str
    address: str
    short: str
    department: str
    phone: str
    station: str
    serial: str
    referring: Person
    performing: Person
    operator: Person
    reader: Person


@dataclass(frozen=True)
class Patient:
    """One synthetic patient's identity and characteristics."""

    index: int
    name: Person
    mother: Person
    patient_id: str
    other_id: str
    issuer: str
    birth_date: dt.date
    sex: str
    weight_kg: str
    size_m: str
    address: str
    phone: str
    first_study: dt.date


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_patient(rng: np.random.Generator, index: int) -> Patient:
    """A patient: names, IDs, birth date (age 24 to 86 at the first study), address, phone."""
    family = _FAMILY[(index * 7 + int(rng.integers(3))) % len(_FAMILY)]
    name = Person(family, _pick(rng, _GIVEN), _pick(rng, _MIDDLE))
    mother = Person(_pick(rng, _FAMILY), _pick(rng, _GIVEN))
    first = dt.date(2019, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4 * 365)))
    age_days = int(rng.integers(24 * 365, 86 * 365))
    sex = "F" if rng.random() < 0.5 else "M"
    street = f"{int(rng.integers(10, 9999))} {_pick(rng, _STREETS)}"
    city, state, zipcode = _CITIES[int(rng.integers(len(_CITIES)))]
    return Patient(
        index=index,
        name=name,
        mother=mother,
        patient_id=f"HG{int(rng.integers(1_000_000, 9_999_999))}",
        other_id=f"NB-{int(rng.integers(100_000, 999_999))}",
        issuer="HILDEGARD MRN",
        birth_date=first - dt.timedelta(days=age_days),
        sex=sex,
        weight_kg=f"{rng.uniform(48, 112):.1f}",
        size_m=f"{rng.uniform(1.52, 1.95):.2f}",
        address=f"{street}, {city}, {state} {zipcode}",
        phone=f"({int(rng.integers(201, 989))}) 555-{int(rng.integers(1000, 9999))}",
        first_study=first,
    )


def make_site(rng: np.random.Generator, index: int) -> Site:
    """One of the fixed sites, with staff and a device drawn from ``rng``."""
    institution, address, short = _SITES[index % len(_SITES)]
    staff = [
        Person(_pick(rng, _STAFF_FAMILY), _pick(rng, _STAFF_GIVEN), "", prefix)
        for prefix in ("DR", "DR", "", "DR")
    ]
    return Site(
        institution=institution,
        address=address,
        short=short,
        department="DIAGNOSTIC RADIOLOGY",
        phone=f"({int(rng.integers(201, 989))}) 555-{int(rng.integers(1000, 9999))}",
        station=f"{short[:8]}-R{int(rng.integers(10, 99))}",
        serial=f"SN{int(rng.integers(100_000, 999_999))}",
        referring=staff[0],
        performing=staff[1],
        operator=staff[2],
        reader=staff[3],
    )


def age_string(birth: dt.date, on: dt.date) -> str:
    """PatientAge (AS) in years on a date: ``061Y``."""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def da(day: dt.date) -> str:
    """A DICOM DA value."""
    return day.strftime("%Y%m%d")
