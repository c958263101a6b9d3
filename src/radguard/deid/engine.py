"""The header de-identification engine: PS3.15 Annex E applied to one dataset.

Stateless per file: everything that must be consistent across files (pseudonyms, UIDs, date
offsets) is derived from the original values with the key, so files can be processed in any
order, on any machine. The engine walks every element at every sequence depth once, deciding
by tag from a rule table compiled once per policy; values are only decoded when an action
needs them, which keeps it close to the speed of a plain read and write.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]

from radguard import __version__
from radguard.deid.dates import BadTemporalValue, aggregate_age, shift_da_multi, shift_dt_multi
from radguard.deid.dummy import dummy_for
from radguard.deid.pseudonym import Pseudonymizer
from radguard.deid.text import TextCleaner
from radguard.profile.iod import load_iod_types, resolve
from radguard.profile.options import BASIC_PROFILE_CODE, PRECEDENCE, Action, Option
from radguard.profile.safe_private import SafePrivate, load_safe_private
from radguard.profile.table import (
    CURVE_ROW,
    OVERLAY_COMMENTS_ROW,
    OVERLAY_DATA_ROW,
    PRIVATE_ROW,
    load_table,
)
from radguard.settings import Granularity, OverrideAction, Policy

# radguard's implementation class UID: a 2.25 UID from a fixed name (PS3.5 B.2).
IMPLEMENTATION_UID = "2.25.287017146378066178232618734232417389201"
IMPLEMENTATION_VERSION = f"RADGUARD_{__version__.replace('.', '')}"[:16]

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "AE"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})
_CODE_ATTRIBUTES = frozenset(
    {
        0x00080100,
        0x00080102,
        0x00080103,
        0x00080104,
        0x00080119,
        0x00080120,  # code parts
        0x0040A040,
        0x0040A010,
        0x0040A050,  # ValueType, RelationshipType, ContinuityOfContent
    }
)
# UIDs that name definitions (coding schemes, context groups, templates), never instances.
DEFINITION_UIDS = frozenset(
    {
        0x0008010C,  # Coding Scheme UID
        0x0008010D,  # Context Group Extension Creator UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x0040DB0C,  # Template Extension Organization UID
        0x0040DB0D,  # Template Extension Creator UID
    }
)
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_PIXEL_DATA = 0x7FE00010

# Attributes whose values are collected (before any change) to clean free text.
_IDENTIFYING_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "AdmissionID",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "StudyID",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "RegionOfResidence",
    "MilitaryRank",
    "BranchOfService",
    "PersonAddress",
    "PersonTelephoneNumbers",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "PatientBirthDate",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "PatientInsurancePlanCodeSequence",
)
_INSTITUTION_KEYWORDS = ("InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName")
_DEVICE_KEYWORDS = ("DeviceSerialNumber", "StationName")


class Mode(enum.Enum):
    """How attributes that Table E.1-1 does not list are treated inside a sequence."""

    KEEP = "keep"  # ordinary dataset: unlisted attributes are kept (text scrubbed of identifiers)
    CLEAN = "clean"  # inside a C sequence (e.g. SR content): unlisted text is cleaned
    DUMMY = "dummy"  # inside a D sequence: unlisted text and dates become dummies


@dataclass(frozen=True, slots=True)
class Rule:
    """The action for one attribute and where it came from (for ``radguard explain``)."""

    action: Action
    source: str
    option: Option | None = None
    dates: bool = False  # the row is governed by the longitudinal-temporal options


@dataclass
class TraceLine:
    path: str
    name: str
    original: str
    action: str
    rule: str
    result: str


@dataclass
class Outcome:
    """What the engine did to one dataset."""

    patient_pseudonym: str = ""
    patient_key: str = ""
    date_offset_days: int = 0
    mappings: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, original, new)
    notes: list[str] = field(default_factory=list)
    trace: list[TraceLine] | None = None
    # Overlay groups kept for the graphics stage to clean (Clean Graphics with hold_overlays):
    # the caller must clean or remove each of them before the dataset leaves.
    overlays_held: list[int] = field(default_factory=list)


def mask(value: Any) -> str:
    """A masked rendering of an original value, safe to print."""
    text = str(value)
    if not text:
        return "''"
    if len(text) <= 2:
        return "*" * len(text)
    return f"{text[0]}{'*' * min(len(text) - 1, 10)} ({len(text)} chars)"


@dataclass(frozen=True)
class CompiledRules:
    """Per-policy lookup tables, compiled once and reused for every file."""

    by_tag: dict[int, Rule]
    private: Rule
    curve: Rule
    overlay_data: Rule
    overlay_comments: Rule
    overrides: dict[tuple[int, ...], list[Any]]


@lru_cache(maxsize=8)
def compile_rules(options: frozenset[Option], overrides: tuple[Any, ...]) -> CompiledRules:
    table = load_table()
    by_tag: dict[int, Rule] = {}
    special: dict[str, Rule] = {}
    for row in table:
        action, option = row.action(options)
        dates_row = Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in row.options
        rule = Rule(action, f"E.1-1 {row.tag} {row.name}", option, dates_row)
        if row.id in (PRIVATE_ROW, CURVE_ROW, OVERLAY_DATA_ROW, OVERLAY_COMMENTS_ROW):
            special[row.id] = rule
        else:
            by_tag[int(row.id, 16)] = rule
    for tag in DEFINITION_UIDS:
        by_tag.setdefault(tag, _DEFINITION_RULE)
    grouped: dict[tuple[int, ...], list[Any]] = {}
    for override in overrides:
        grouped.setdefault(override.path, []).append(override)
    return CompiledRules(
        by_tag,
        special[PRIVATE_ROW],
        special[CURVE_ROW],
        special[OVERLAY_DATA_ROW],
        special[OVERLAY_COMMENTS_ROW],
        grouped,
    )


@lru_cache(maxsize=4096)
def _vr_of(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _unlisted_rule(vr: str, options: frozenset[Option]) -> Rule:
    """Fail-closed rules for standard attributes Table E.1-1 does not list."""
    if vr == "PN":
        return Rule(Action.REMOVE_OR_ZERO, "radguard: unlisted person name")
    if vr in ("DA", "DT"):
        for option, action in (
            (Option.RETAIN_LONGITUDINAL_FULL_DATES, Action.KEEP),
            (Option.RETAIN_LONGITUDINAL_MODIFIED_DATES, Action.CLEAN),
        ):
            if option in options:
                return Rule(action, "radguard: unlisted date", option, True)
        return Rule(Action.REMOVE_OR_ZERO, "radguard: unlisted date", None, True)
    if vr == "UI":
        if Option.RETAIN_UIDS in options:
            return Rule(Action.KEEP, "radguard: unlisted UID", Option.RETAIN_UIDS)
        return Rule(Action.UID, "radguard: unlisted UID")
    return _KEEP_UNLISTED


_DEFINITION_RULE = Rule(Action.KEEP, "radguard: UID of a definition, not of an instance")
_KEEP_UNLISTED = Rule(Action.KEEP, "not in E.1-1: kept")


class Engine:
    """Applies a :class:`Policy` to datasets with a pseudonym key."""

    def __init__(
        self, policy: Policy, pseudonymizer: Pseudonymizer, safe_private: SafePrivate | None = None
    ) -> None:
        self.policy = policy
        self.pseudo = pseudonymizer
        self.options = policy.options
        self.rules = compile_rules(policy.options, policy.overrides)
        self.safe_private = safe_private or load_safe_private()
        self.iod_types = load_iod_types()
        self._unlisted: dict[str, Rule] = {}
        self._private_decisions: dict[tuple[str, int, int], tuple[bool, str]] = {}
        self._records = self._build_records()
        keywords = list(_IDENTIFYING_KEYWORDS)
        if Option.RETAIN_INSTITUTION_IDENTITY not in self.options:
            keywords.extend(_INSTITUTION_KEYWORDS)
        if Option.RETAIN_DEVICE_IDENTITY not in self.options:
            keywords.extend(_DEVICE_KEYWORDS)
        self._identifying_tags = tuple(
            int(tag) for tag in (tag_for_keyword(k) for k in keywords) if tag is not None
        )
        dates = policy.dates
        self._date_range = (dates.shift_min_days, dates.shift_max_days)
        self._granularity = dates.granularity

    # -- public ---------------------------------------------------------------------------

    def apply(self, ds: Dataset, *, trace: bool = False, hold_overlays: bool = False) -> Outcome:
        """De-identify ``ds`` in place and return what was done.

        ``hold_overlays``: under Clean Graphics, keep top-level Overlay Data for a caller that
        cleans it with OCR (listed in ``Outcome.overlays_held``); otherwise overlays are removed.
        """
        outcome = Outcome(trace=[] if trace else None)
        patient_key = self._patient_key(ds)
        outcome.patient_key = patient_key
        outcome.patient_pseudonym = self.pseudo.patient(
            patient_key, self.policy.pseudonyms.patient_id
        )
        low, high = self._date_range
        outcome.date_offset_days = self.pseudo.date_offset_days(patient_key, low, high)
        sop_class = str(ds.get("SOPClassUID", "") or "")
        modality = str(ds.get("Modality", "") or "").upper()
        walk = _Walk(self, outcome, self.iod_types.iod_for(sop_class), modality, sop_class)
        walk.hold_overlays = hold_overlays
        walk.dataset(ds, (), Mode.KEEP)
        # Free text is cleaned once the walk has seen every identifying value of the dataset
        # (they are collected before their own attribute is changed): one pass, not two.
        walk.finish(TextCleaner(walk.seen, self.policy.text_patterns))
        self._record_keeping(ds, outcome)
        self._rebuild_meta(ds)
        return outcome

    # -- helpers --------------------------------------------------------------------------

    def unlisted(self, vr: str) -> Rule:
        rule = self._unlisted.get(vr)
        if rule is None:
            rule = self._unlisted[vr] = _unlisted_rule(vr, self.options)
        return rule

    @staticmethod
    def _patient_key(ds: Dataset) -> str:
        """The original identity that pseudonyms and the date offset derive from.

        Patient ID when present; else name and birth date; else the study (so at least the
        files of one study stay together).
        """
        pid = str(ds.get("PatientID", "") or "").strip()
        if pid:
            return f"id:{pid}"
        name = str(ds.get("PatientName", "") or "").strip()
        birth = str(ds.get("PatientBirthDate", "") or "").strip()
        if name:
            return f"name:{name}|{birth}"
        return f"study:{str(ds.get('StudyInstanceUID', '') or '').strip()}"

    def _record_keeping(self, ds: Dataset, outcome: Outcome) -> None:
        # PS3.15 E.1.1: Patient Identity Removed, De-identification Method (+ Code Sequence)
        method, items, longitudinal = self._records
        ds.add_new(0x00120062, "CS", "YES")  # Patient Identity Removed
        ds.add_new(0x00120063, "LO", list(method))  # De-identification Method
        # The code items are the same for every file of a policy: shallow copies of items
        # built once (their elements are shared, never modified).
        ds.add_new(0x00120064, "SQ", Sequence([copy.copy(item) for item in items]))
        # PS3.3 C.12.1.1.7: Longitudinal Temporal Information Modified
        ds.add_new(0x00280303, "CS", longitudinal)

    def _build_records(self) -> tuple[tuple[str, ...], tuple[Dataset, ...], str]:
        applied = [o for o in PRECEDENCE if o in self.options]
        method = [f"radguard {__version__}", "PS3.15 E.1-1 Basic Profile"]
        method += [o.value for o in applied]
        items = []
        for value, meaning in [BASIC_PROFILE_CODE, *((o.code, o.meaning) for o in applied)]:
            item = Dataset()
            item.add_new(0x00080100, "SH", value)  # Code Value
            item.add_new(0x00080102, "SH", "DCM")  # Coding Scheme Designator
            item.add_new(0x00080104, "LO", meaning)  # Code Meaning
            items.append(item)
        if Option.RETAIN_LONGITUDINAL_FULL_DATES in self.options:
            longitudinal = "UNMODIFIED"
        elif Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.options:
            longitudinal = "MODIFIED"
        else:
            longitudinal = "REMOVED"
        return tuple(m[:64] for m in method), tuple(items), longitudinal

    @staticmethod
    def _rebuild_meta(ds: Dataset) -> None:
        old = getattr(ds, "file_meta", None) or FileMetaDataset()
        syntax: Any = old.get("TransferSyntaxUID")
        if syntax is None:
            from pydicom.uid import (
                ExplicitVRBigEndian,
                ExplicitVRLittleEndian,
                ImplicitVRLittleEndian,
            )

            if ds.is_implicit_VR is not False and ds.is_little_endian is not False:
                syntax = ImplicitVRLittleEndian
            elif ds.is_little_endian is False:
                syntax = ExplicitVRBigEndian
            else:
                syntax = ExplicitVRLittleEndian
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        meta.TransferSyntaxUID = syntax
        meta.ImplementationClassUID = IMPLEMENTATION_UID  # type: ignore[assignment]
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds.file_meta = meta


class _Walk:
    """One traversal of one dataset (kept separate so the Engine stays reusable)."""

    def __init__(
        self,
        engine: Engine,
        outcome: Outcome,
        iod: str | None,
        modality: str,
        sop_class: str,
    ) -> None:
        self.engine = engine
        self.outcome = outcome
        self.iod = iod
        self.seen: list[str] = []  # identifying values met during the walk, for the cleaner
        self._identifying = engine._identifying_tags
        self._to_clean: list[Any] = []  # text elements to clean when the walk is done
        self._to_scrub: list[tuple[Dataset, int]] = []  # kept text: remove identifiers found
        self.cleaner: TextCleaner | None = None
        self._settle: list[tuple[TraceLine, Any, Any]] = []  # explain: results after cleaning
        self.modality = modality
        self.sop_class = sop_class
        self.rules = engine.rules
        self.trace = outcome.trace
        self.hold_overlays = False

    # Each element: decide a rule, resolve combined codes, apply.
    def dataset(self, ds: Dataset, path: tuple[int, ...], mode: Mode) -> None:
        removed_overlays: set[int] = set()
        private: list[int] = []
        by_tag = self.rules.by_tag
        # Our own lookups use plain ints (BaseTag compares in Python); pydicom gets its own
        # BaseTag keys back, so its dictionary lookups hit by identity.
        for key in list(ds.keys()):
            tag = int(key)
            group = tag >> 16
            if group & 1:
                private.append(key)
                continue
            if 0x6000 <= group <= 0x601E and not group & 1:
                self._overlay(ds, key, path, removed_overlays)
                continue
            if 0x5000 <= group <= 0x501E and not group & 1:
                self._apply(ds, key, path, self.rules.curve, mode)
                continue
            vr = _vr_of(tag)
            if (
                vr == "PN"
                or tag in self._identifying
                or (vr == "UN" and getattr(ds.get_item(key), "VR", None) == "PN")
            ):
                self._collect(ds[key].value)
            rule = by_tag.get(tag)
            if rule is None:
                rule = self.engine.unlisted(vr)
            self._apply(ds, key, path, rule, mode)
        if private:
            self._private(ds, private, path)
        for group in removed_overlays:
            for tag in [t for t in ds.keys() if t >> 16 == group]:
                del ds[tag]

    def _apply(self, ds: Dataset, tag: int, path: tuple[int, ...], rule: Rule, mode: Mode) -> None:
        number = int(tag)  # ``tag`` may be pydicom's BaseTag: compare as a plain int
        full = (*path, number)
        overrides = self.rules.overrides
        if overrides:
            for key in (full, (number,)):
                for override in overrides.get(key, ()):
                    if override.applies(self.modality, self.sop_class):
                        self._override(ds, tag, full, override)
                        return
        if not path and number in (_PATIENT_ID, _PATIENT_NAME):
            self._identity(ds, tag)
            return
        action = rule.action
        if action.is_combined:
            path_key = "/".join(f"{t:08x}" for t in full)
            action = resolve(action, self.engine.iod_types.type_of(self.iod, path_key))
        if action is Action.KEEP and rule is _KEEP_UNLISTED and mode is not Mode.KEEP:
            if number in _CODE_ATTRIBUTES:
                action = Action.KEEP
            else:
                vr = _vr_of(number)
                if mode is Mode.DUMMY and (vr in _TEXT_VRS or vr in _DATE_VRS):
                    action = Action.DUMMY
                elif mode is Mode.CLEAN and vr in _TEXT_VRS:
                    action = Action.CLEAN
        self._do(ds, tag, full, action, rule, mode)

    def _do(
        self,
        ds: Dataset,
        tag: int,
        full: tuple[int, ...],
        action: Action,
        rule: Rule,
        mode: Mode,
    ) -> None:
        if action is Action.REMOVE:
            self._log(ds, tag, full, action, rule, _removed)
            del ds[tag]
            return
        if action is Action.KEEP and self.trace is None and self._keep_raw(ds, tag, rule):
            return  # fast path: nothing to change, so the value is never decoded
        elem = ds[tag]
        vr = elem.VR
        before = self._before(elem) if self.trace is not None else ""
        if vr == "SQ":
            if action is Action.ZERO:
                elem.value = Sequence()
            else:
                inner = {Action.DUMMY: Mode.DUMMY, Action.CLEAN: Mode.CLEAN}.get(action, mode)
                for item in elem.value:
                    self.dataset(item, full, inner)
            self._record(full, elem, before, action, rule)
            return
        if action is Action.KEEP:
            if rule is _KEEP_UNLISTED and vr in _TEXT_VRS and elem.value:
                self._scrub_identifiers(elem)
            elif vr == "AS":  # kept ages are still aggregated above the policy's limit
                self._clean(elem, rule)
        elif action is Action.ZERO:
            elem.value = None
        elif action is Action.DUMMY:
            elem.value = self._uid_values(elem.value) if vr == "UI" else dummy_for(vr)
        elif action is Action.UID:
            if vr == "UI":
                elem.value = self._uid_values(elem.value)
            else:
                elem.value = None
        elif action is Action.CLEAN:
            self._clean(elem, rule)
        else:  # pragma: no cover - every action is handled above
            raise AssertionError(action)
        self._record(full, elem, before, action, rule)

    def _keep_raw(self, ds: Dataset, tag: int, rule: Rule) -> bool:
        """True when a kept element needs no look at its value (the common case)."""
        raw = ds.get_item(tag)
        vr = raw.VR or _vr_of(tag)
        if vr == "SQ" or vr == "AS":
            return False
        if rule is not _KEEP_UNLISTED or vr not in _TEXT_VRS:
            return True
        # Unlisted text is scrubbed of the dataset's identifiers once they are all known.
        self._to_scrub.append((ds, tag))
        return True

    # -- actions ---------------------------------------------------------------------------

    def _identity(self, ds: Dataset, tag: int) -> None:
        elem = ds[tag]
        before = self._before(elem) if self.trace is not None else ""
        fmt = self.engine.policy.pseudonyms
        key = self.outcome.patient_key
        if tag == _PATIENT_ID:
            new = self.outcome.patient_pseudonym
            if elem.value:
                self.outcome.mappings.append(("patient_id", str(elem.value), new))
        else:
            new = self.engine.pseudo.patient(key, fmt.patient_name)
            if elem.value:
                self.outcome.mappings.append(("patient_name", str(elem.value), new))
        elem.value = new
        rule = Rule(Action.DUMMY, "radguard: keyed patient pseudonym")
        self._record((int(tag),), elem, before, Action.DUMMY, rule)

    def _uid_values(self, value: Any) -> Any:
        if value is None or value == "":
            return value
        if isinstance(value, str):
            return self._uid(value)
        return [self._uid(str(v)) for v in value]

    def _uid(self, uid: str) -> str:
        uid = uid.strip().rstrip("\x00")
        if not uid or uid in UID_dictionary:
            return uid  # registered UIDs of the standard identify no one
        return self.engine.pseudo.uid(uid)

    def _clean(self, elem: Any, rule: Rule) -> None:
        vr = elem.VR
        value = elem.value
        if value is None or value == "":
            return
        engine = self.engine
        if vr in ("DA", "DT", "TM"):
            days = self.outcome.date_offset_days
            granularity = engine._granularity
            try:
                if vr == "DA":
                    elem.value = shift_da_multi(str(value), days, granularity)
                elif vr == "DT":
                    elem.value = shift_dt_multi(str(value), days, granularity)
                elif granularity is Granularity.YEAR:
                    # a time of day is an element of a date: midnight keeps Type 1 valid
                    elem.value = "000000"
            except BadTemporalValue:
                elem.value = None
                self.outcome.notes.append(f"{elem.keyword or elem.tag}: unparseable date emptied")
            return
        if vr == "AS":
            try:
                elem.value = aggregate_age(str(value), engine.policy.ages.aggregate_over)
            except BadTemporalValue:
                elem.value = None
            return
        if vr == "UI":
            elem.value = self._uid_values(value)
            return
        if vr in _TEXT_VRS or vr in ("PN", "CS", "UR"):
            self._to_clean.append(elem)
            return
        # Clean on a binary or numeric value: nothing textual to clean.

    def _scrub_identifiers(self, elem: Any) -> None:
        self._to_scrub.append((elem, -1))

    def _collect(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            for v in value:
                self._collect(v)
            return
        if not isinstance(value, Sequence):
            text = str(value).strip()
            if text:
                self.seen.append(text)

    def finish(self, cleaner: TextCleaner) -> None:
        """Clean the free text deferred during the walk, now that every identifier is known."""
        self.cleaner = cleaner
        for elem in self._to_clean:
            vr, value = elem.VR, elem.value
            if isinstance(value, str):
                elem.value = self._fit(vr, cleaner.clean(value))
            elif value is not None:
                elem.value = [self._fit(vr, cleaner.clean(str(v))) for v in value]
        for holder, tag in self._to_scrub:
            if tag < 0:  # an element already decoded
                elem = holder
            else:
                raw = holder.get_item(tag)
                # a cheap look at the raw bytes first, valid when every identifier is ASCII
                # (then no decoding can hide one)
                if (
                    isinstance(raw, RawDataElement)
                    and cleaner.ascii_only
                    and (not raw.value or not cleaner.has_identifier(raw.value.decode("latin-1")))
                ):
                    continue
                elem = holder[tag]
            value = elem.value
            if isinstance(value, str) and cleaner.find(value):
                cleaned = cleaner.clean(value)
                if cleaned != value:
                    elem.value = self._fit(elem.VR, cleaned)
        for line, elem, original in self._settle:
            changed = elem.value != original
            if line.result == "(text to clean)":
                line.result = "(cleaned)" if changed else "(unchanged: nothing identifying)"
            elif changed:
                line.result = "(kept, identifiers of this dataset removed)"

    @staticmethod
    def _fit(vr: str, text: str) -> str:
        limits = {"SH": 16, "LO": 64, "AE": 16, "CS": 16, "ST": 1024, "LT": 10240}
        limit = limits.get(vr)
        return text[:limit] if limit else text

    def _private(self, ds: Dataset, tags: list[int], path: tuple[int, ...]) -> None:
        """Private attributes of one dataset: keep what a rule or the safe list keeps.

        A private creator stays only if an element of its block stays (PS3.5 7.8.1).
        """
        creators: dict[int, str] = {}  # (group << 8 | block) -> creator
        for tag in tags:
            element = tag & 0xFFFF
            if 0x10 <= element <= 0xFF:
                creators[(tag >> 16) << 8 | element] = str(ds[tag].value or "").strip()
        kept_blocks: set[int] = set()
        decisions = self.engine._private_decisions
        for tag in tags:
            element = tag & 0xFFFF
            if element <= 0xFF:
                continue  # group lengths and creators: decided below
            group = tag >> 16
            block = group << 8 | element >> 8
            key = (creators.get(block, ""), group, element & 0xFF)
            decision = decisions.get(key)
            if decision is None:
                decision = decisions[key] = self._private_decision(*key)
            keep, why = decision
            full = (*path, int(tag))
            if not keep:
                if self.trace is not None:
                    self._log(ds, tag, full, Action.REMOVE, Rule(Action.REMOVE, why), _removed)
                del ds[tag]
                continue
            kept_blocks.add(block)
            elem = ds[tag]
            before = self._before(elem) if self.trace is not None else ""
            if elem.VR == "SQ":
                for item in elem.value:
                    self.dataset(item, full, Mode.CLEAN)
            self._record(full, elem, before, Action.KEEP, Rule(Action.KEEP, why))
        for tag in tags:
            element = tag & 0xFFFF
            if element > 0xFF:
                continue
            if element >= 0x10 and ((tag >> 16) << 8 | element) in kept_blocks:
                continue
            self._log(ds, tag, (*path, tag), Action.REMOVE, self.rules.private, _removed)
            del ds[tag]

    def _private_decision(self, creator: str, group: int, offset: int) -> tuple[bool, str]:
        if not creator:
            return False, "private element without a private creator: removed"
        upper = creator.upper()
        for rule in self.engine.policy.private_rules:
            if (
                rule.creator == upper
                and rule.group == group
                and (not rule.elements or offset in rule.elements)
            ):
                return rule.keep, f"policy private rule for {creator!r}"
        if Option.RETAIN_SAFE_PRIVATE in self.engine.options:
            if self.engine.safe_private.is_safe(creator, group, offset):
                return True, "E.3.10-1 safe private attribute"
            return False, "private attribute not in the safe-private dictionary"
        return False, "E.1-1 private attributes: X"

    def _overlay(self, ds: Dataset, tag: int, path: tuple[int, ...], removed: set[int]) -> None:
        element = tag & 0xFFFF
        group = tag >> 16
        if element == 0x3000:
            rule = self.rules.overlay_data
            full = (*path, int(tag))
            if rule.action is Action.CLEAN and self.hold_overlays and not path:
                # PS3.15 E.3.3 Clean Graphics: the graphics stage reads the bitmap with OCR,
                # clears identifying text and keeps it only when a re-read finds none.
                self.outcome.overlays_held.append(group)
                self._log(ds, tag, full, Action.CLEAN, rule, lambda: "(held for OCR cleaning)")
                return
            # Without the pixel engine the overlay cannot be shown to be free of text: it goes.
            if rule.action is Action.CLEAN:
                self.outcome.notes.append("overlay removed: no engine to clean overlay text")
            removed.add(group)
            self._log(ds, tag, full, Action.REMOVE, rule, lambda: "(removed)")
        elif element == 0x4000:
            self._apply(ds, tag, path, self.rules.overlay_comments, Mode.KEEP)
        elif element in (0x0022, 0x1500):  # Overlay Description, Overlay Label
            self._apply(ds, tag, path, Rule(Action.CLEAN, "radguard: overlay text"), Mode.KEEP)

    # -- explain ---------------------------------------------------------------------------

    @staticmethod
    def _before(elem: Any) -> str:
        if elem.VR == "SQ":
            return f"{len(elem.value)} item(s)"
        if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            return f"<{len(elem.value or b'')} bytes>"
        return mask(elem.value if elem.value is not None else "")

    def _log(
        self,
        ds: Dataset,
        tag: int,
        full: tuple[int, ...],
        action: Action,
        rule: Rule,
        result: Callable[[], str],
    ) -> None:
        if self.trace is None:
            return
        elem = ds[tag]
        self.trace.append(
            TraceLine(
                _path_text(full),
                elem.keyword or elem.name,
                self._before(elem),
                action.value,
                _rule_text(rule),
                result(),
            )
        )

    def _record(
        self, full: tuple[int, ...], elem: Any, before: str, action: Action, rule: Rule
    ) -> None:
        if self.trace is None:
            return
        if elem.VR == "SQ":
            after = f"{len(elem.value)} item(s)"
        elif action in (Action.UID, Action.DUMMY) or (
            action is Action.CLEAN and elem.VR in ("DA", "DT", "TM", "AS", "UI")
        ):
            after = str(elem.value)  # replacement values are not PHI
        elif action is Action.KEEP:
            after = "(kept)"
        elif action is Action.ZERO:
            after = "(empty)"
        else:
            after = "(text to clean)"  # settled in finish(), once the cleaning is done
        line = TraceLine(
            _path_text(full),
            elem.keyword or elem.name,
            before,
            action.value,
            _rule_text(rule),
            after,
        )
        self.trace.append(line)
        if after == "(text to clean)" or (action is Action.KEEP and elem.VR in _TEXT_VRS):
            self._settle.append((line, elem, elem.value))

    def _override(self, ds: Dataset, tag: int, full: tuple[int, ...], override: Any) -> None:
        rule = Rule(Action.KEEP, f"policy override {override.label}: {override.action.value}")
        kind = override.action
        if kind is OverrideAction.REMOVE:
            self._do(ds, tag, full, Action.REMOVE, rule, Mode.KEEP)
            return
        elem = ds[tag]
        before = self._before(elem) if self.trace is not None else ""
        if kind is OverrideAction.KEEP:
            if elem.VR == "SQ":
                for item in elem.value:
                    self.dataset(item, full, Mode.KEEP)
            action = Action.KEEP
        elif kind is OverrideAction.EMPTY:
            elem.value = Sequence() if elem.VR == "SQ" else None
            action = Action.ZERO
        elif kind is OverrideAction.DUMMY:
            self._do(ds, tag, full, Action.DUMMY, rule, Mode.KEEP)
            return
        elif kind is OverrideAction.CLEAN:
            self._do(ds, tag, full, Action.CLEAN, rule, Mode.KEEP)
            return
        elif kind is OverrideAction.SHIFT:
            self._clean(elem, rule)
            action = Action.CLEAN
        elif kind is OverrideAction.HASH:
            if elem.VR == "UI":
                elem.value = self._uid_values(elem.value)
            elif elem.value not in (None, ""):
                elem.value = self._fit(elem.VR, self.engine.pseudo.hash_text(str(elem.value)))
            action = Action.DUMMY
        else:  # REPLACE
            elem.value = override.value
            action = Action.DUMMY
        self._record(full, elem, before, action, rule)


def _removed() -> str:
    return "(removed)"


def _path_text(full: Iterable[int]) -> str:
    return "/".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in full)


def _rule_text(rule: Rule) -> str:
    if rule.option is not None:
        return f"{rule.source} [{rule.option.value}]"
    return rule.source
