"""Profile options of PS3.15 Annex E and the action codes of Table E.1-1.

Values are the standard's own strings: an :class:`Action` is the code printed in the
table, an :class:`Option` carries its CID 7050 code and its column in Table E.1-1.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """Action codes of PS3.15 E.1.1 (and the combined codes of Table E.1-1)."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    REMOVE_OR_ZERO = "X/Z"
    REMOVE_OR_DUMMY = "X/D"
    ZERO_OR_DUMMY = "Z/D"
    REMOVE_ZERO_OR_DUMMY = "X/Z/D"
    REMOVE_ZERO_OR_UID = "X/Z/U*"

    @property
    def is_combined(self) -> bool:
        """True for codes whose meaning depends on the attribute's type in the IOD."""
        return "/" in self.value


class Option(enum.Enum):
    """Options of the Basic Application Level Confidentiality Profile (PS3.15 E.3).

    The value is the command-line / policy name. ``code`` is the CID 7050 code value
    recorded in De-identification Method Code Sequence (0012,0064); ``column`` is the key
    of the option's column in the Table E.1-1 JSON (empty for options with no column).
    """

    RETAIN_SAFE_PRIVATE = "retain-safe-private"
    RETAIN_UIDS = "retain-uids"
    RETAIN_DEVICE_IDENTITY = "retain-device-identity"
    RETAIN_INSTITUTION_IDENTITY = "retain-institution-identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain-patient-characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain-longitudinal-full-dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain-longitudinal-modified-dates"
    CLEAN_DESCRIPTORS = "clean-descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean-structured-content"
    CLEAN_GRAPHICS = "clean-graphics"
    CLEAN_PIXEL_DATA = "clean-pixel-data"
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES = "clean-recognizable-visual-features"

    @property
    def code(self) -> str:
        return _CODES[self][0]

    @property
    def meaning(self) -> str:
        return _CODES[self][1]

    @property
    def column(self) -> str:
        return _COLUMNS.get(self, "")

    @classmethod
    def parse(cls, value: str | Option) -> Option:
        """Accept an option name, a CID 7050 code value, or an Option."""
        if isinstance(value, Option):
            return value
        text = str(value).strip().lower()
        for option in cls:
            if text in (option.value, option.code, option.name.lower()):
                return option
        names = ", ".join(o.value for o in cls)
        raise ValueError(f"unknown profile option {value!r}; known options: {names}")


# PS3.16 CID 7050 De-identification Method.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
_CODES: dict[Option, tuple[str, str]] = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: (
        "113102",
        "Clean Recognizable Visual Features Option",
    ),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

_COLUMNS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
    Option.RETAIN_UIDS: "rtnUIDsOpt",
    Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
    Option.RETAIN_INSTITUTION_IDENTITY: "rtnInstIdOpt",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: "rtnLongFullDatesOpt",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "rtnLongModifDatesOpt",
    Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
    Option.CLEAN_STRUCTURED_CONTENT: "cleanStructContOpt",
    Option.CLEAN_GRAPHICS: "cleanGraphOpt",
}

# When several options give an attribute an action, the one listed first wins
# (PS3.15 E.3: options that retain outrank those that clean; full dates outrank modified).
PRECEDENCE: tuple[Option, ...] = (
    Option.RETAIN_UIDS,
    Option.RETAIN_DEVICE_IDENTITY,
    Option.RETAIN_INSTITUTION_IDENTITY,
    Option.RETAIN_PATIENT_CHARACTERISTICS,
    Option.RETAIN_LONGITUDINAL_FULL_DATES,
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES,
    Option.RETAIN_SAFE_PRIVATE,
    Option.CLEAN_GRAPHICS,
    Option.CLEAN_STRUCTURED_CONTENT,
    Option.CLEAN_DESCRIPTORS,
)
