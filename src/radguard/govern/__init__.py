"""Governance: consent, the tamper-evident disclosure ledger, signed releases, DICOM signatures.

Heavy pieces (``cryptography``, psycopg, pydicom's pixel decoders) load only when used.
"""

from radguard.govern.consent import (
    ConsentError,
    ConsentGate,
    ConsentRegistry,
    Decision,
    Purpose,
    patient_hash,
)
from radguard.govern.disclosure import (
    ReleaseRecorder,
    consent_gate,
    default_ledger,
    open_ledger,
    record_forward,
    release_existing,
)
from radguard.govern.keys import KeyKind, load_signer, new_signing_key, public_keys
from radguard.govern.ledger import Ledger, LedgerCheck, LedgerTampered, TreeHead
from radguard.govern.release import ReleaseCheck, sign_release, verify_release

__all__ = [
    "ConsentError",
    "ConsentGate",
    "ConsentRegistry",
    "Decision",
    "KeyKind",
    "Ledger",
    "LedgerCheck",
    "LedgerTampered",
    "Purpose",
    "ReleaseCheck",
    "ReleaseRecorder",
    "TreeHead",
    "consent_gate",
    "default_ledger",
    "load_signer",
    "new_signing_key",
    "open_ledger",
    "patient_hash",
    "public_keys",
    "record_forward",
    "release_existing",
    "sign_release",
    "verify_release",
]
