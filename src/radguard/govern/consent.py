"""The consent registry: opt-outs and permissions per patient and purpose, with validity periods.

Patients are stored only as keyed hashes of their Patient ID (HMAC with a sub-key of the run's
pseudonym key), so the registry holds no plain identifier and answers only to someone holding
the key. Imports: CSV (``patient_id,purpose,decision[,start,end]``) and FHIR R4 ``Consent``
resources, alone or in a Bundle (purpose codes mapped by ``FHIR_PURPOSES``, see
docs/governance.md).

Decision rule, for one patient, purpose and date: among the rules in force that date, the most
specific wins (a nested FHIR provision beats its parent; a rule naming the purpose beats one
for all purposes); between equally specific rules, deny wins.
"""

from __future__ import annotations

import bisect
import csv
import datetime as _dt
import hmac
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from radguard.deid.keys import Keyring, default_key_path
from radguard.errors import RadguardError

HASH_BYTES = 16
ALL = "*"


class ConsentError(RadguardError):
    """A consent file or registry is invalid."""


class Purpose(Enum):
    """Purposes radguard releases data for (the values are what the CLI accepts)."""

    AI_TRAINING = "ai-training"
    RESEARCH = "research"
    QUALITY_IMPROVEMENT = "quality-improvement"
    COMMERCIAL = "commercial"

    @classmethod
    def parse(cls, value: str | Purpose) -> Purpose:
        if isinstance(value, Purpose):
            return value
        text = value.strip().lower().replace("_", "-").replace(" ", "-")
        text = _ALIASES.get(text, text)
        try:
            return cls(text)
        except ValueError as error:
            names = ", ".join(p.value for p in cls)
            raise ConsentError(f"unknown purpose {value!r} (one of: {names})") from error


_ALIASES = {
    "ai": "ai-training",
    "training": "ai-training",
    "ml-training": "ai-training",
    "qi": "quality-improvement",
    "quality": "quality-improvement",
    "commercial-sharing": "commercial",
}


class Decision(Enum):
    PERMIT = "permit"
    DENY = "deny"


V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
RADGUARD_PURPOSE = "https://radguard.org/fhir/CodeSystem/purpose"
# FHIR purpose codings -> radguard purposes (documented in docs/governance.md).
FHIR_PURPOSES: dict[tuple[str, str], Purpose] = {
    (V3_ACT_REASON, "HRESCH"): Purpose.RESEARCH,  # healthcare research
    (V3_ACT_REASON, "CLINTRCH"): Purpose.RESEARCH,  # clinical trial research
    (V3_ACT_REASON, "BIORCH"): Purpose.RESEARCH,  # biomedical research
    (V3_ACT_REASON, "PATRCH"): Purpose.RESEARCH,  # patient requested research
    (V3_ACT_REASON, "HQUALIMP"): Purpose.QUALITY_IMPROVEMENT,  # health quality improvement
    (V3_ACT_REASON, "HMARKT"): Purpose.COMMERCIAL,  # healthcare marketing
    (V3_ACT_REASON, "COMMERCIAL"): Purpose.COMMERCIAL,
    **{(RADGUARD_PURPOSE, p.value): p for p in Purpose},
}


def patient_hash(keyring: Keyring, patient_id: str) -> bytes:
    """The keyed hash that stands for a Patient ID in the registry and the ledger."""
    key = keyring.derive("patient-hash")
    return hmac.digest(key, patient_id.strip().encode("utf-8"), "sha256")[:HASH_BYTES]


@dataclass(frozen=True)
class HashSet:
    """A compact, picklable set of fixed-size hashes (sorted, concatenated, binary search)."""

    blob: bytes = b""

    @classmethod
    def of(cls, hashes: Iterable[bytes]) -> HashSet:
        return cls(b"".join(sorted(set(hashes))))

    def __len__(self) -> int:
        return len(self.blob) // HASH_BYTES

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, bytes) or len(value) != HASH_BYTES:
            return False
        view = _Slices(self.blob)
        i = bisect.bisect_left(view, value)
        return i < len(view) and view[i] == value


class _Slices:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __len__(self) -> int:
        return len(self.blob) // HASH_BYTES

    def __getitem__(self, i: int) -> bytes:
        return self.blob[i * HASH_BYTES : (i + 1) * HASH_BYTES]


@dataclass(frozen=True)
class ConsentGate:
    """What a worker needs to enforce consent for one purpose at the run's date."""

    purpose: str
    require: bool
    denied: HashSet
    permitted: HashSet
    key_fingerprint: str

    def check(self, keyring: Keyring, patient_id: str) -> str | None:
        """The reason to exclude this patient, or None to go on (no PHI in the reason)."""
        if not patient_id.strip():
            return (
                f"consent for {self.purpose} cannot be checked: the file has no Patient ID "
                "(excluded, fail closed)"
            )
        digest = patient_hash(keyring, patient_id)
        if digest in self.denied:
            return f"patient opted out of {self.purpose} (consent registry: deny)"
        if self.require and digest not in self.permitted:
            return f"no consent on record permitting {self.purpose} (--require-consent)"
        return None


@dataclass
class Rule:
    patient: bytes
    purpose: str  # a Purpose value or ALL
    decision: Decision
    start: str = ""
    end: str = ""
    specificity: int = 1
    source: str = ""


@dataclass
class ImportReport:
    rules: int = 0
    resources: int = 0
    skipped: list[str] = field(default_factory=list)


def default_registry_path() -> Path:
    return default_key_path().parent / "consent.sqlite"


def _bound(text: str, end: bool) -> str:
    """An ISO 8601 date or date-time as a sortable UTC string ('' = open)."""
    text = (text or "").strip()
    if not text:
        return ""
    try:
        if len(text) == 10:
            day = _dt.date.fromisoformat(text)
            moment = _dt.datetime.combine(day, _dt.time.max if end else _dt.time.min, _dt.UTC)
        else:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=_dt.UTC)
    except ValueError as error:
        raise ConsentError(f"not an ISO 8601 date: {text!r}") from error
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(at: _dt.datetime | None) -> str:
    at = at or _dt.datetime.now(_dt.UTC)
    return at.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decide(rules: Iterable[Rule], at: str) -> Rule | None:
    """The rule in force at ``at`` that decides (most specific; deny wins ties)."""
    best: Rule | None = None
    for rule in rules:
        if (rule.start and at < rule.start) or (rule.end and at > rule.end):
            continue
        if (
            best is None
            or rule.specificity > best.specificity
            or (rule.specificity == best.specificity and rule.decision is Decision.DENY)
        ):
            best = rule
    return best


class ConsentRegistry:
    """The registry database (SQLite), bound to one pseudonym key."""

    def __init__(self, path: Path, keyring: Keyring) -> None:
        self.path = path
        self.keyring = keyring
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # keyed hashes only, still nobody else's business
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.conn = sqlite3.connect(path, timeout=60)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS consent (patient BLOB NOT NULL, purpose TEXT NOT NULL, "
            "decision TEXT NOT NULL, start TEXT NOT NULL, end_ TEXT NOT NULL, "
            "specificity INTEGER NOT NULL, source TEXT NOT NULL, recorded TEXT NOT NULL)"
        )
        self.conn.execute("CREATE INDEX IF NOT EXISTS consent_patient ON consent (patient)")
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        row = self.conn.execute("SELECT value FROM meta WHERE name = 'key'").fetchone()
        if row is None:
            self.conn.execute("INSERT INTO meta VALUES ('key', ?)", (keyring.fingerprint,))
            self.conn.commit()
        elif row[0] != keyring.fingerprint:
            raise ConsentError(
                f"{path}: the registry was built with pseudonym key {row[0]}, not "
                f"{keyring.fingerprint}; use the same key as the de-identification runs"
            )

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ConsentRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- import --------------------------------------------------------------------------
    def add(self, rules: Iterable[Rule]) -> int:
        recorded = _moment(None)
        rows = [
            (
                r.patient,
                r.purpose,
                r.decision.value,
                r.start,
                r.end,
                r.specificity,
                r.source,
                recorded,
            )
            for r in rules
        ]
        self.conn.executemany("INSERT INTO consent VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.conn.commit()
        return len(rows)

    def import_file(self, path: Path, identifier_system: str | None = None) -> ImportReport:
        """Import a CSV or FHIR JSON file (chosen by content); all rows or none."""
        text = path.read_text(encoding="utf-8-sig")
        if text.lstrip().startswith("{"):
            rules, report = fhir_rules(json.loads(text), self.keyring, path.name, identifier_system)
        else:
            rules, report = csv_rules(text.splitlines(), self.keyring, path.name)
        report.rules = self.add(rules)
        return report

    # ---- queries -------------------------------------------------------------------------
    def rules_for(self, patient_id: str) -> list[Rule]:
        digest = patient_hash(self.keyring, patient_id)
        rows = self.conn.execute(
            "SELECT patient, purpose, decision, start, end_, specificity, source FROM consent "
            "WHERE patient = ?",
            (digest,),
        ).fetchall()
        return [_rule(row) for row in rows]

    def decision(
        self, patient_id: str, purpose: Purpose | str, at: _dt.datetime | None = None
    ) -> Rule | None:
        value = Purpose.parse(purpose).value
        rules = [r for r in self.rules_for(patient_id) if r.purpose in (value, ALL)]
        return decide(rules, _moment(at))

    def all_rules(self) -> Iterator[Rule]:
        for row in self.conn.execute(
            "SELECT patient, purpose, decision, start, end_, specificity, source FROM consent "
            "ORDER BY patient, purpose"
        ):
            yield _rule(row)

    def gate(
        self, purpose: Purpose | str, require: bool = False, at: _dt.datetime | None = None
    ) -> ConsentGate:
        """The compact decision sets for one purpose at one moment (sent to the workers)."""
        value = Purpose.parse(purpose).value
        moment = _moment(at)
        by_patient: dict[bytes, list[Rule]] = {}
        for row in self.conn.execute(
            "SELECT patient, purpose, decision, start, end_, specificity, source FROM consent "
            "WHERE purpose IN (?, ?)",
            (value, ALL),
        ):
            rule = _rule(row)
            by_patient.setdefault(rule.patient, []).append(rule)
        denied: list[bytes] = []
        permitted: list[bytes] = []
        for patient, rules in by_patient.items():
            chosen = decide(rules, moment)
            if chosen is None:
                continue
            (denied if chosen.decision is Decision.DENY else permitted).append(patient)
        return ConsentGate(
            value, require, HashSet.of(denied), HashSet.of(permitted), self.keyring.fingerprint
        )


def _rule(row: tuple[Any, ...]) -> Rule:
    return Rule(bytes(row[0]), row[1], Decision(row[2]), row[3], row[4], int(row[5]), row[6])


def csv_rules(lines: list[str], keyring: Keyring, source: str) -> tuple[list[Rule], ImportReport]:
    """Rules from CSV rows ``patient_id,purpose,decision[,start,end]`` (header required)."""
    reader = csv.DictReader(lines)
    need = {"patient_id", "purpose", "decision"}
    if reader.fieldnames is None or not need <= {f.strip() for f in reader.fieldnames}:
        raise ConsentError(
            f"{source}: CSV header must have patient_id,purpose,decision[,start,end]"
        )
    rules: list[Rule] = []
    problems: list[str] = []
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        try:
            if not row["patient_id"]:
                raise ConsentError("empty patient_id")
            purpose = row["purpose"]
            value, specificity = (
                (ALL, 0) if purpose in ("*", "all") else (Purpose.parse(purpose).value, 1)
            )
            try:
                decision = Decision(row["decision"].lower())
            except ValueError as error:
                raise ConsentError("decision must be permit or deny") from error
            start, end = _bound(row.get("start", ""), False), _bound(row.get("end", ""), True)
        except ConsentError as error:
            # the message never quotes the patient id
            problems.append(f"{source} line {number}: {str(error).split(':')[0]}")
            continue
        rules.append(
            Rule(
                patient_hash(keyring, row["patient_id"]),
                value,
                decision,
                start,
                end,
                specificity,
                f"{source}:{number}",
            )
        )
    if problems:
        raise ConsentError("; ".join(problems[:20]) + " (nothing imported)")
    return rules, ImportReport(resources=len(rules))


def _patient_identifier(
    consent: dict[str, Any], patients: dict[str, dict[str, Any]], system: str | None
) -> str | None:
    ref = consent.get("patient") or consent.get("subject") or {}
    ident = ref.get("identifier") or {}
    if ident.get("value") and (system is None or ident.get("system") == system):
        return str(ident["value"])
    target = patients.get(str(ref.get("reference", "")))
    if target is None:
        return None
    idents = target.get("identifier") or []
    if system is not None:
        idents = [i for i in idents if i.get("system") == system]
    for ident in idents:  # a medical record number first
        codes = [c.get("code") for c in (ident.get("type") or {}).get("coding", [])]
        if "MR" in codes and ident.get("value"):
            return str(ident["value"])
    for ident in idents:
        if ident.get("value"):
            return str(ident["value"])
    return None


def fhir_rules(
    document: dict[str, Any], keyring: Keyring, source: str, system: str | None = None
) -> tuple[list[Rule], ImportReport]:
    """Rules from a FHIR R4 Consent or a Bundle of them (with their Patients)."""
    report = ImportReport()
    if document.get("resourceType") == "Bundle":
        resources = [e.get("resource") or {} for e in document.get("entry") or []]
    elif document.get("resourceType") == "Consent":
        resources = [document]
    else:
        raise ConsentError(f"{source}: expected a FHIR Consent or Bundle")
    patients: dict[str, dict[str, Any]] = {}
    for entry in document.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            if resource.get("id"):
                patients[f"Patient/{resource['id']}"] = resource
            if entry.get("fullUrl"):
                patients[str(entry["fullUrl"])] = resource
    rules: list[Rule] = []
    for number, resource in enumerate(resources):
        if resource.get("resourceType") != "Consent":
            continue
        where = f"{source} Consent #{number} ({resource.get('id', 'no id')})"
        if resource.get("status") != "active":
            report.skipped.append(f"{where}: status {resource.get('status')!r}, not active")
            continue
        patient = _patient_identifier(resource, patients, system)
        if patient is None:
            report.skipped.append(f"{where}: no patient identifier found")
            continue
        provision = resource.get("provision")
        if not provision:
            report.skipped.append(f"{where}: no provision")
            continue
        report.resources += 1
        digest = patient_hash(keyring, patient)
        rules.extend(_provision_rules(provision, digest, 0, None, ("", ""), where, report))
    return rules, report


def _provision_rules(
    provision: dict[str, Any],
    patient: bytes,
    depth: int,
    inherited: list[str] | None,
    period: tuple[str, str],
    where: str,
    report: ImportReport,
) -> list[Rule]:
    kind = provision.get("type")
    own = provision.get("period") or {}
    start = _bound(own.get("start", ""), False) or period[0]
    end = _bound(own.get("end", ""), True) or period[1]
    codings = provision.get("purpose") or []
    purposes: list[str] | None = inherited
    explicit = False
    if codings:
        mapped = [FHIR_PURPOSES.get((c.get("system", ""), c.get("code", ""))) for c in codings]
        known = sorted({p.value for p in mapped if p is not None})
        if not known:
            if kind == "deny":  # fail closed: an opt-out we cannot place covers every purpose
                report.skipped.append(f"{where}: unmapped deny purposes applied to all purposes")
                purposes, explicit = None, False
            else:
                report.skipped.append(f"{where}: permit with unmapped purposes ignored")
                purposes, kind = [], None
        else:
            purposes, explicit = known, True
    rules: list[Rule] = []
    if kind in ("deny", "permit"):
        specificity = depth * 2 + (1 if explicit or inherited else 0)
        for purpose in purposes if purposes is not None else [ALL]:
            rules.append(Rule(patient, purpose, Decision(kind), start, end, specificity, where))
    for child in provision.get("provision") or []:
        rules.extend(
            _provision_rules(child, patient, depth + 1, purposes, (start, end), where, report)
        )
    return rules
