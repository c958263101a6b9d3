"""Recording disclosures: the ledger entry of a release (or of one forwarded study).

``ReleaseRecorder`` is what a de-identification run uses: it collects, per patient, the keyed
hash of the original Patient ID and the released study UIDs (from ``file_released`` events),
then writes the signed release manifest into OUT and appends the ledger entry. Gateways that
forward studies one at a time call ``record_forward``.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.deid.keys import Keyring, default_key_path
from radguard.errors import RadguardError
from radguard.govern.consent import ConsentGate, ConsentRegistry, Purpose, patient_hash
from radguard.govern.keys import KeyKind, load_signer, public_keys
from radguard.govern.ledger import Ledger, Receipt

# Brief statements of purpose for accountings (HIPAA 164.528(b)(2)(iv)).
PURPOSE_TEXT = {
    Purpose.AI_TRAINING.value: "development, training and validation of AI models",
    Purpose.RESEARCH.value: "research",
    Purpose.QUALITY_IMPROVEMENT.value: "quality assessment and improvement",
    Purpose.COMMERCIAL.value: "commercial sharing under a data-use agreement",
}


def default_ledger() -> str:
    """``$RADGUARD_HOME/ledger.sqlite`` (beside the default keys)."""
    return str(default_key_path().parent / "ledger.sqlite")


def open_ledger(url: str | None = None, *, write: bool = True, home: Path | None = None) -> Ledger:
    """The site ledger (SQLite path or ``postgresql://`` URL) with its signing/verifying keys."""
    signer = load_signer(KeyKind.LEDGER, home) if write else None
    trusted = public_keys(KeyKind.LEDGER, home) or None
    return Ledger.open(url or default_ledger(), signer, trusted)


def consent_gate(
    keyring: Keyring, purpose: str, require: bool, registry: str | None = None
) -> ConsentGate:
    """The gate a run enforces. A missing registry is an error (fail closed): a mistyped path
    must not look like "nobody opted out"; import an empty CSV to record that none did."""
    from radguard.govern.consent import ConsentError, default_registry_path

    path = Path(registry) if registry else default_registry_path()
    if not path.exists():
        raise ConsentError(
            f"--purpose {purpose}: no consent registry at {path}; import the site's consents "
            "('radguard consent import FILE'; a CSV with only its header records that there "
            "are none) or name the registry with --consent-registry"
        )
    with ConsentRegistry(path, keyring) as store:
        return store.gate(purpose, require)


def describe(modalities: Counter[str], studies: int, files: int) -> str:
    """A brief description of the information disclosed (no identifiers)."""
    kinds = ", ".join(f"{m} ({n})" for m, n in sorted(modalities.items())) or "none"
    return (
        f"de-identified DICOM images: {files} file(s) in {studies} study(ies); "
        f"modalities {kinds}; identifiers removed per the recorded policy"
    )


def disclosure_entry(
    *,
    keyring: Keyring,
    recipient: str,
    address: str = "",
    purpose: str,
    agreement: str = "",
    legal_basis: str = "",
    patients: dict[bytes, set[str]],
    files: int,
    description: str,
    manifest_sha256: str = "",
    release_id: str = "",
    kind: str = "release",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of one ledger entry (the ledger adds seq, prev_root, time and format)."""
    if not recipient.strip():
        raise RadguardError("a disclosure needs a recipient name")
    return {
        "kind": kind,
        "recipient": {"name": recipient.strip(), "address": address.strip()},
        "purpose": Purpose.parse(purpose).value,
        "agreement": agreement,
        "legal_basis": legal_basis,
        "description": description,
        "files": files,
        "manifest_sha256": manifest_sha256,
        "release_id": release_id,
        "key_fingerprint": keyring.fingerprint,
        "patients": [
            {"patient": digest.hex(), "studies": sorted(studies)}
            for digest, studies in sorted(patients.items())
        ],
        **(extra or {}),
    }


def record_forward(
    ledger: Ledger,
    keyring: Keyring,
    *,
    recipient: str,
    address: str = "",
    purpose: str,
    patient_id: str,
    study_uids: list[str],
    files: int,
    agreement: str = "",
    legal_basis: str = "",
    modalities: dict[str, int] | None = None,
    manifest_sha256: str = "",
) -> Receipt:
    """Record one forwarded study (a gateway's unit of release) as a ledger entry.

    ``patient_id`` is the ORIGINAL Patient ID (hashed with the run key here, never stored);
    ``study_uids`` are the de-identified Study Instance UIDs the recipient received.
    """
    entry = disclosure_entry(
        keyring=keyring,
        recipient=recipient,
        address=address,
        purpose=purpose,
        agreement=agreement,
        legal_basis=legal_basis,
        patients={patient_hash(keyring, patient_id): set(study_uids)},
        files=files,
        description=describe(Counter(modalities or {}), len(set(study_uids)), files),
        manifest_sha256=manifest_sha256,
        kind="forward",
    )
    return ledger.append(entry)


@dataclass
class ReleaseRecorder:
    """Collects what a run released and writes the signed manifest and the ledger entry."""

    keyring: Keyring
    recipient: str = ""
    address: str = ""
    purpose: str = ""
    agreement: str = ""
    legal_basis: str = ""
    ledger_url: str = ""
    sign_manifest: bool = True
    sign_dicom: bool = False
    workers: int = 1
    patients: dict[bytes, set[str]] = field(default_factory=dict)
    modalities: Counter[str] = field(default_factory=Counter)
    files: int = 0
    excluded_by_consent: int = 0

    def check_keys(self) -> None:
        """Fail before any file is processed when a needed key is missing."""
        if self.sign_manifest or self.sign_dicom:
            load_signer(KeyKind.RELEASE)
        if self.recipient:
            load_signer(KeyKind.LEDGER)
            if not self.purpose:
                raise RadguardError("--release-to needs --purpose (the ledger records why)")

    def collect(self, out: Path) -> None:
        """Patients, studies and counts of what OUT holds, from the run records.

        The run's manifest says which outputs were released (this run or an earlier one that
        was resumed); the vault maps each output's Patient ID pseudonym back to the original,
        which is hashed with the run key here and never stored.
        """
        import json

        from radguard.deid.vault import Vault
        from radguard.pipeline.run import run_dir_for

        run_dir = run_dir_for(out.resolve())
        manifest_path = run_dir / "manifest.jsonl"
        if not manifest_path.exists():
            raise RadguardError(f"{out}: no run records at {run_dir} (made by radguard deid?)")
        self.patients.clear()
        self.modalities.clear()
        self.files = self.excluded_by_consent = 0
        vault = Vault(run_dir / "vault.sqlite", self.keyring)
        try:
            with manifest_path.open(encoding="utf-8") as handle:
                for text in handle:
                    line = json.loads(text)
                    if line.get("status") != "released":
                        first = " ".join(line.get("reasons", [])[:1])
                        if line.get("status") == "excluded" and "consent" in first:
                            self.excluded_by_consent += 1
                        continue
                    pseudonym, study = _output_keys(out / line["output"])
                    found = vault.lookup(pseudonym, kind="patient_id") if pseudonym else []
                    original = found[0][1] if found else f"(no patient id) {study}"
                    self.files += 1
                    self.modalities[line.get("modality") or "??"] += 1
                    digest = patient_hash(self.keyring, original)
                    self.patients.setdefault(digest, set()).add(study)
        finally:
            vault.close()

    def complete(self, out: Path, summary: Any) -> dict[str, Any]:
        """Sign the released set and append the ledger entry; returns what was recorded.

        ``summary`` is the run's ``RunSummary`` (or its ``summary.json`` as a dict).
        """
        from radguard.govern.release import sign_release

        self.collect(out)
        record: dict[str, Any] = {}
        if self.sign_dicom:
            from radguard.govern.dsig import sign_tree

            record["dicom_signed"] = sign_tree(out, load_signer(KeyKind.RELEASE), self.workers)
        fields = ("policy", "policy_sha256", "options", "key_fingerprint", "counts")
        run = {
            name: summary.get(name) if isinstance(summary, dict) else getattr(summary, name, None)
            for name in fields
        }
        extra = {"run": {**run, "excluded_by_consent": self.excluded_by_consent}}
        recipient = {"name": self.recipient, "address": self.address} if self.recipient else {}
        manifest, digest = sign_release(
            out,
            load_signer(KeyKind.RELEASE),
            recipient=recipient,
            purpose=self.purpose,
            agreement=self.agreement,
            legal_basis=self.legal_basis,
            extra=extra,
            workers=self.workers,
        )
        record.update(manifest_sha256=digest, release_id=manifest["release_id"])
        if self.recipient:
            entry = disclosure_entry(
                keyring=self.keyring,
                recipient=self.recipient,
                address=self.address,
                purpose=self.purpose,
                agreement=self.agreement,
                legal_basis=self.legal_basis,
                patients=self.patients,
                files=self.files,
                description=describe(
                    self.modalities, len({s for v in self.patients.values() for s in v}), self.files
                ),
                manifest_sha256=digest,
                release_id=manifest["release_id"],
            )
            try:
                with open_ledger(self.ledger_url or None) as ledger:
                    receipt = ledger.append(entry)
            except RadguardError:
                raise
            except Exception as error:  # a database error: say what to do, no traceback
                from radguard.govern.store import LedgerStoreError

                raise LedgerStoreError(
                    f"{out}: the release was signed but the ledger entry could not be written "
                    f"({type(error).__name__}); record it with 'radguard release {out} --to "
                    f'"{self.recipient}" --purpose {self.purpose}\''
                ) from error
            record.update(
                ledger_index=receipt.index,
                ledger_size=receipt.head.size,
                ledger_root=receipt.head.root.hex(),
            )
        return record


def release_existing(
    out: Path,
    keyring: Keyring,
    *,
    recipient: str,
    purpose: str,
    address: str = "",
    agreement: str = "",
    legal_basis: str = "",
    ledger_url: str = "",
    sign_dicom: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """``radguard release OUT --to NAME``: govern a set de-identified earlier.

    Patients and studies come from the run's manifest and vault (``OUT.run``), which map each
    output to its original patient key; the vault needs the same pseudonym key.
    """
    import json

    from radguard.pipeline.run import run_dir_for

    run_dir = run_dir_for(out.resolve())
    recorder = ReleaseRecorder(
        keyring,
        recipient,
        address,
        purpose,
        agreement,
        legal_basis,
        ledger_url,
        True,
        sign_dicom,
        workers,
    )
    recorder.check_keys()
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("key_fingerprint", keyring.fingerprint) != keyring.fingerprint:
        raise RadguardError(
            f"{out} was de-identified with pseudonym key {summary['key_fingerprint']}, not "
            f"{keyring.fingerprint}: use the run's key (patients are hashed with it)"
        )
    return recorder.complete(out, summary)


def _output_keys(path: Path) -> tuple[str, str]:
    """(Patient ID pseudonym, Study Instance UID) of a released file."""
    import pydicom

    ds = pydicom.dcmread(
        path, stop_before_pixels=True, specific_tags=["PatientID", "StudyInstanceUID"]
    )
    return str(ds.get("PatientID", "") or ""), str(ds.get("StudyInstanceUID", "") or "")


def cpu_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))
