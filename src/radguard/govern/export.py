"""Exports of the ledger for auditors: a GDPR Art. 30 record of processing, IHE ATNA / DICOM
audit messages (PS3.15 A.5.3 "Data Export", EventID 110106) as XML, and FHIR R4 AuditEvent
resources as JSON. Patients appear only as the keyed hashes the ledger holds.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree as ET

from radguard import __version__
from radguard.govern.disclosure import PURPOSE_TEXT

DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_V3_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_PURPOSE_CODES = {  # radguard purpose -> v3 ActReason code used in audit records
    "ai-training": ("HRESCH", "healthcare research"),
    "research": ("HRESCH", "healthcare research"),
    "quality-improvement": ("HQUALIMP", "health quality improvement"),
    "commercial": ("HMARKT", "healthcare marketing"),
}


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> ET.Element:
    return ET.SubElement(
        parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": text}
    )


def audit_message(entry: dict[str, Any], source: str = "radguard") -> ET.Element:
    """One DICOM audit message (PS3.15 A.5.3.5 Data Export) for a ledger entry."""
    msg = ET.Element("AuditMessage")
    event = ET.SubElement(
        msg,
        "EventIdentification",
        {
            "EventActionCode": "R",
            "EventDateTime": str(entry.get("time", "")),
            "EventOutcomeIndicator": "0",
        },
    )
    _code(event, "EventID", "110106", "DCM", "Export")
    code, text = _PURPOSE_CODES.get(str(entry.get("purpose", "")), ("", ""))
    if code:
        _code(event, "PurposeOfUse", code, "v3-ActReason", text)
    exporter = ET.SubElement(
        msg, "ActiveParticipant", {"UserID": source, "UserIsRequestor": "true"}
    )
    _code(exporter, "RoleIDCode", "110153", "DCM", "Source Role ID")
    recipient = entry.get("recipient", {})
    dest = ET.SubElement(
        msg,
        "ActiveParticipant",
        {
            "UserID": str(recipient.get("name", "")),
            "AlternativeUserID": str(recipient.get("address", "")),
            "UserIsRequestor": "false",
        },
    )
    _code(dest, "RoleIDCode", "110154", "DCM", "Destination Media")
    ET.SubElement(msg, "AuditSourceIdentification", {"AuditSourceID": source})
    for patient in entry.get("patients", []):
        person = ET.SubElement(
            msg,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": str(patient.get("patient", "")),
                "ParticipantObjectTypeCode": "1",
                "ParticipantObjectTypeCodeRole": "1",
            },
        )
        _code(person, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
        for study in patient.get("studies", []):
            obj = ET.SubElement(
                msg,
                "ParticipantObjectIdentification",
                {
                    "ParticipantObjectID": str(study),
                    "ParticipantObjectTypeCode": "2",
                    "ParticipantObjectTypeCodeRole": "3",
                },
            )
            _code(obj, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
    return msg


def audit_xml(entries: Iterable[tuple[int, dict[str, Any]]]) -> str:
    """Every entry as a DICOM audit message, wrapped in one ``AuditMessages`` document."""
    root = ET.Element("AuditMessages")
    for _, entry in entries:
        root.append(audit_message(entry))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def audit_event(index: int, entry: dict[str, Any]) -> dict[str, Any]:
    """One FHIR R4 AuditEvent for a ledger entry."""
    recipient = entry.get("recipient", {})
    code, text = _PURPOSE_CODES.get(str(entry.get("purpose", "")), ("", ""))
    entities: list[dict[str, Any]] = []
    for patient in entry.get("patients", []):
        entities.append(
            {
                "what": {"identifier": {"value": patient.get("patient", "")}},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
        for study in patient.get("studies", []):
            entities.append(
                {
                    "what": {
                        "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{study}"}
                    },
                    "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": _OBJECT_ROLE, "code": "3", "display": "Report"},
                }
            )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"radguard-ledger-{index}",
        "type": {"system": DCM, "code": "110106", "display": "Export"},
        "action": "R",
        "recorded": str(entry.get("time", "")),
        "outcome": "0",
        "agent": [
            {
                "type": {
                    "coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]
                },
                "who": {"display": "radguard"},
                "requestor": True,
            },
            {
                "type": {
                    "coding": [{"system": DCM, "code": "110154", "display": "Destination Media"}]
                },
                "who": {"display": str(recipient.get("name", ""))},
                "requestor": False,
                **(
                    {"network": {"address": str(recipient["address"]), "type": "5"}}
                    if recipient.get("address")
                    else {}
                ),
            },
        ],
        "source": {"observer": {"display": "radguard"}},
        "entity": entities,
    }
    if code:
        event["purposeOfEvent"] = [
            {"coding": [{"system": _V3_REASON, "code": code, "display": text}]}
        ]
    return event


def audit_bundle(entries: Iterable[tuple[int, dict[str, Any]]]) -> str:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": audit_event(i, e)} for i, e in entries],
    }
    return json.dumps(bundle, indent=1) + "\n"


def gdpr_record(
    entries: Iterable[tuple[int, dict[str, Any]]],
    controller: str = "",
    contact: str = "",
) -> dict[str, Any]:
    """A GDPR Art. 30(1) record of processing activities built from the ledger."""
    purposes: Counter[str] = Counter()
    recipients: dict[str, dict[str, Any]] = {}
    agreements: set[str] = set()
    bases: set[str] = set()
    patients: set[str] = set()
    first = last = ""
    count = 0
    for _, entry in entries:
        count += 1
        time = str(entry.get("time", ""))
        first = min(first, time) if first else time
        last = max(last, time)
        purposes[str(entry.get("purpose", ""))] += 1
        name = str(entry.get("recipient", {}).get("name", ""))
        slot = recipients.setdefault(
            name,
            {
                "name": name,
                "address": entry.get("recipient", {}).get("address", ""),
                "disclosures": 0,
            },
        )
        slot["disclosures"] += 1
        if entry.get("agreement"):
            agreements.add(str(entry["agreement"]))
        if entry.get("legal_basis"):
            bases.add(str(entry["legal_basis"]))
        patients.update(p.get("patient", "") for p in entry.get("patients", []))
    return {
        "record": "GDPR Art. 30(1) record of processing activities",
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "generator": f"radguard {__version__}",
        "controller": {"name": controller, "contact": contact},
        "purposes_of_processing": [
            {"purpose": p, "description": PURPOSE_TEXT.get(p, p), "disclosures": n}
            for p, n in sorted(purposes.items())
        ],
        "categories_of_data_subjects": ["patients whose imaging studies were released"],
        "categories_of_personal_data": [
            "medical images (DICOM) de-identified per PS3.15 Annex E; pseudonymous identifiers"
        ],
        "categories_of_recipients": sorted(recipients.values(), key=lambda r: str(r["name"])),
        "legal_bases": sorted(bases),
        "data_use_agreements": sorted(agreements),
        "transfers_to_third_countries": "as stated in the data-use agreements listed",
        "time_limits_for_erasure": "ledger kept at least six years (HIPAA 164.528)",
        "security_measures": [
            "de-identification (DICOM PS3.15 Annex E) with keyed pseudonyms",
            "signed release manifests (per-file sha256 and pixel hashes)",
            "tamper-evident disclosure ledger (RFC 9162 Merkle log, Ed25519 signed heads)",
        ],
        "disclosures": count,
        "distinct_patients": len(patients),
        "period": {"first": first, "last": last},
    }
