"""The bridge to the disclosure ledger (``[ledger]`` in the gateway configuration).

Each forwarded study becomes one :class:`~radguard.gateway.events.StudyForwarded`; this module
turns it into one ``forward`` entry of the tamper-evident ledger (``radguard.govern``): the
recipient, address, purpose, agreement and legal basis of the destination, the keyed hash of
the patient (never the ID), the de-identified Study Instance UID, the number of files, a
description by modality and the digest of the released files. The ledger's signing key is
checked when the gateway starts: a gateway asked to record every disclosure does not start
without it (fail closed).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import Any

from radguard.deid.keys import Keyring
from radguard.errors import RadguardError
from radguard.gateway.config import GatewayConfig
from radguard.gateway.events import Hook, StudyForwarded


def ledger_hook(config: GatewayConfig, keyring: Keyring) -> Hook | None:
    """The recording hook for ``config.ledger``, or None when the ledger is not configured."""
    settings = config.ledger
    if not settings.enabled:
        return None
    try:
        from radguard.govern.consent import Purpose
        from radguard.govern.disclosure import describe, disclosure_entry, open_ledger
    except ImportError as error:  # pragma: no cover - a radguard without governance
        raise RadguardError(
            "[ledger] is enabled but this radguard has no disclosure ledger (radguard.govern)"
        ) from error
    for destination in config.destinations:
        Purpose.parse(destination.purpose)  # a purpose the ledger knows, checked at start
    open_ledger(settings.url or None).close()  # the signing key and the store, checked now
    destinations = {d.name: d for d in config.destinations}
    lock = threading.Lock()  # one writer at a time from this process's forwarders

    def record(event: StudyForwarded) -> None:
        destination = destinations[event.destination]
        summary = event.summary
        patient = summary.get("patient_hash")
        if not patient:
            raise RadguardError("the study carries no patient hash: it cannot be recorded")
        files = len(event.files)
        entry = disclosure_entry(
            keyring=keyring,
            recipient=event.recipient,
            address=destination.address,
            purpose=event.purpose,
            agreement=destination.agreement,
            legal_basis=destination.legal_basis,
            patients={bytes.fromhex(patient): {event.study}},
            files=files,
            description=describe(Counter(summary.get("modalities", {})), 1, files),
            kind="forward",
            extra={"gateway": gateway_fields(event)},
        )
        with lock:
            ledger = open_ledger(settings.url or None)
            try:
                ledger.append(entry)
            finally:
                ledger.close()

    return record


def gateway_fields(event: StudyForwarded) -> dict[str, Any]:
    """What the gateway adds to the entry: where it went and a digest of exactly what."""
    digest = hashlib.sha256()
    for item in sorted(event.files, key=lambda f: f.sop_instance_uid):
        digest.update(f"{item.sop_instance_uid}:{item.sha256}\n".encode())
    return {
        "destination": event.destination,
        "batch": event.summary.get("batch", ""),
        "policy": event.summary.get("policy", ""),
        "policy_sha256": event.summary.get("policy_sha256", ""),
        "files_sha256": digest.hexdigest(),
    }
