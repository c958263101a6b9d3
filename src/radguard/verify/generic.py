"""Generic PHI detection for outputs whose originals are not at hand (``radguard verify DEID``).

Person names are found with the US Census 1990 name lists (first names and surnames, public
domain data shipped by the ``names`` package): a first name followed by a surname, or a person
name value that is neither empty, a radguard pseudonym nor a dummy. Identifiers, phone numbers,
e-mail addresses and dates are found with the same generic patterns the cleaner removes.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from importlib import resources

from pydicom.datadict import tag_for_keyword

from radguard.deid.text import GENERIC_PATTERNS

# Attributes whose values are technical and legitimately look like IDs or dates.
_TECHNICAL = frozenset(
    t
    for t in (
        tag_for_keyword(k)
        for k in (
            "SoftwareVersions",
            "ManufacturerModelName",
            "Manufacturer",
            "DeidentificationMethod",
            "ImplementationVersionName",
            "SpecificCharacterSet",
            "CodeValue",
            "CodeMeaning",
            "CodingSchemeDesignator",
            "CodingSchemeVersion",
            "ContextIdentifier",
            "MappingResource",
            "TemplateIdentifier",
            "PatientID",
            "PatientName",
            "SeriesNumber",
            "InstanceNumber",
            "AcquisitionNumber",
            "ImageType",
            "PrivateCreator",
            "TransferSyntaxUID",
            "SOPClassUID",
            "ContextGroupVersion",
        )
    )
    if t is not None
)
_FREE_TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "SH", "UC", "PN"})
_DUMMY_NAMES = frozenset({"", "ANONYMIZED", "ANONYMOUS", "UNKNOWN"})
# Words of radiology reports that the census lists also hold as names ("HEAD, BRAIN").
CLINICAL_WORDS = frozenset(
    """
ABDOMEN ANGLE ANKLE AORTA APEX ARCH ARM ARMS AXIAL BACK BASE BELL BLACK BLOOD BODY BONE BOWEL
BRAIN BREAST BROWN CALF CAP CARDIAC CAST CHEST CHILD CLEAR COLON CONE CONTRAST CORE CROSS CT
DAY DELAY DENSE DOSE DRY EAR EARLY EYE FACE FAST FAT FIELD FILM FINE FLAT FLOW FOOT FORD FRONT
FULL GAIN GOLD GRAY GREEN GREY HAND HARD HART HEAD HEART HEEL HIGH HILL HIP HOLD HOOK JOINT KING
KNEE LAKE LANE LARGE LATE LEFT LEG LIGHT LINE LIVER LONG LOW LUNG MAIN MARK MASS MEDIAN MILD MOON
NECK NORMAL NOSE PAGE PALM PATCH PEAK PELVIS PLAIN PORT POST RAY REED RIB RIGHT RING ROOT ROSE
ROUND SALT SCAN SHARP SHORT SIDE SKULL SLICE SMALL SOFT SPINE SPOT STAR STEM STONE TAIL THIN TOP
TRUE VEIN VIEW WALL WATER WAVE WEST WHITE WIDE WINDOW WRIST YOUNG
""".split()
)


@lru_cache(maxsize=1)
def _names() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames) of the US Census 1990 lists, upper case."""
    try:
        files = resources.files("names")
    except ModuleNotFoundError:  # pragma: no cover - a declared dependency
        return frozenset(), frozenset()

    def read(name: str) -> frozenset[str]:
        text = files.joinpath(name).read_text()
        return frozenset(line.split()[0] for line in text.splitlines() if line.strip())

    first = read("dist.male.first") | read("dist.female.first")
    return first, read("dist.all.last")


@lru_cache(maxsize=1)
def _patterns() -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in GENERIC_PATTERNS), re.IGNORECASE)


_WORDS = re.compile(r"[A-Za-z]{2,}")


def person_names(text: str) -> list[str]:
    """'First Last' pairs where both words are in the census lists."""
    first, last = _names()
    words = [w for w in _WORDS.findall(text) if w.upper() not in CLINICAL_WORDS]
    found = []
    for a, b in itertools.pairwise(words):
        if a.upper() in first and b.upper() in last:
            found.append(f"{a} {b}")
        elif a.upper() in last and b.upper() in first and "," in text:
            found.append(f"{a}, {b}")  # 'Smith, John'
    return found


def generic_findings(
    tag: int, vr: str, text: str, pseudonyms: re.Pattern[str]
) -> list[tuple[str, str]]:
    """(what, why) for PHI-looking content in one value of a de-identified file."""
    if not text or vr not in _FREE_TEXT_VRS:
        return []
    found: list[tuple[str, str]] = []
    if tag in (0x00100010,):
        for value in text.split("\\"):
            if value.strip().upper() not in _DUMMY_NAMES and not pseudonyms.fullmatch(
                value.strip()
            ):
                found.append((value, "patient name that is not a radguard pseudonym"))
        return found
    if tag in _TECHNICAL:
        return []
    if vr == "PN":
        for value in text.split("\\"):
            if value.strip().strip("^").upper() not in _DUMMY_NAMES:
                found.append((value, "person name present"))
        return found
    for match in _patterns().finditer(text):
        if match.group().strip():
            found.append((match.group(), "looks like an identifier, phone, e-mail or date"))
    for name in person_names(text):
        found.append((name, "first name and surname from the census name lists"))
    return found


def pseudonym_pattern(*formats: str) -> re.Pattern[str]:
    """Regex for values the pseudonym formats produce (``RG{hash:12}`` -> ``RG[A-Z2-7]{12}``)."""
    bodies = []
    for fmt in formats:
        pieces = re.split(r"(\{hash:\d+\})", fmt)
        bodies.append(
            "".join(
                f"[A-Z2-7]{{{piece[6:-1]}}}" if piece.startswith("{hash:") else re.escape(piece)
                for piece in pieces
            )
        )
    return re.compile("|".join(f"(?:{b})" for b in bodies))
