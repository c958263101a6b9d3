"""Command line for governance: ``consent``, ``ledger``, ``release`` and ``verify-release``.

Thin: each command parses, calls a ``radguard.govern`` function and maps the outcome to the
exit codes of ``radguard.cli`` (0 ok, 1 a finding, 2 usage/key errors).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

_key_option = click.option(
    "--key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Pseudonym key file (default: your own key). Patients are hashed with it.",
)
_ledger_option = click.option(
    "--ledger",
    "ledger_url",
    default=None,
    metavar="PATH|URL",
    help="Ledger: a SQLite file or postgresql://... (default: $RADGUARD_HOME/ledger.sqlite).",
)
_registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Consent registry file (default: $RADGUARD_HOME/consent.sqlite).",
)
_PURPOSES = ["ai-training", "research", "quality-improvement", "commercial"]


def _keyring(key_file: Path | None) -> Any:
    from radguard.cli import _keyring as load

    return load(key_file)


def _registry(registry: Path | None, key_file: Path | None) -> Any:
    from radguard.govern.consent import ConsentRegistry, default_registry_path

    return ConsentRegistry(registry or default_registry_path(), _keyring(key_file))


@click.group("consent")
def consent() -> None:
    """Consent registry: opt-outs and permissions per patient and purpose (keyed hashes)."""


@consent.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_registry_option
@_key_option
@click.option(
    "--identifier-system",
    default=None,
    metavar="URI",
    help="FHIR: use the patient identifier of this system (default: MR, else the first).",
)
def consent_import(
    file: Path, registry: Path | None, key_file: Path | None, identifier_system: str | None
) -> None:
    """Import a CSV (patient_id,purpose,decision[,start,end]) or FHIR R4 Consent/Bundle file."""
    with _registry(registry, key_file) as store:
        report = store.import_file(file, identifier_system)
    click.echo(f"imported {report.rules} rule(s) from {report.resources} record(s) of {file.name}")
    for note in report.skipped:
        click.echo(f"  skipped: {note}", err=True)


@consent.command("show")
@click.argument("patient_id")
@_registry_option
@_key_option
@click.option("--at", "at", default=None, metavar="DATE", help="Decide at this date (ISO 8601).")
def consent_show(
    patient_id: str, registry: Path | None, key_file: Path | None, at: str | None
) -> None:
    """One patient's decision for every purpose (the ID is hashed, never stored or printed)."""
    import datetime as _dt

    moment = None
    if at:
        moment = _dt.datetime.fromisoformat(at)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
    with _registry(registry, key_file) as store:
        rules = store.rules_for(patient_id)
        for purpose in _PURPOSES:
            rule = store.decision(patient_id, purpose, moment)
            verdict = rule.decision.value if rule else "no decision on record"
            source = f" ({rule.source})" if rule else ""
            click.echo(f"{purpose:22s} {verdict}{source}")
    click.echo(f"{len(rules)} rule(s) on record for this patient")


@consent.command("list")
@_registry_option
@_key_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
def consent_list(registry: Path | None, key_file: Path | None, as_json: bool) -> None:
    """Every rule on record; patients appear as keyed-hash prefixes only."""
    with _registry(registry, key_file) as store:
        for rule in store.all_rules():
            row = {
                "patient": rule.patient.hex()[:12],
                "purpose": rule.purpose,
                "decision": rule.decision.value,
                "start": rule.start,
                "end": rule.end,
                "source": rule.source,
            }
            if as_json:
                click.echo(json.dumps(row))
            else:
                click.echo(
                    f"{row['patient']}  {rule.purpose:20s} {rule.decision.value:6s} "
                    f"{rule.start[:10] or '-'} .. {rule.end[:10] or '-'}  {rule.source}"
                )


@click.group("ledger")
def ledger() -> None:
    """The tamper-evident disclosure ledger (Merkle log with signed tree heads)."""


def _open(ledger_url: str | None, write: bool = False) -> Any:
    from radguard.govern.disclosure import open_ledger

    return open_ledger(ledger_url, write=write)


@ledger.command("verify")
@_ledger_option
@click.option(
    "--head",
    "head_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A signed head saved earlier ('ledger head'): also catches a truncated log.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def ledger_verify(ledger_url: str | None, head_file: Path | None, as_json: bool) -> None:
    """Recompute the whole log against every signed head (exit 1 on any change)."""
    from radguard.govern.ledger import TreeHead

    against = TreeHead.from_json(json.loads(head_file.read_text())) if head_file else None
    with _open(ledger_url) as store:
        check = store.verify(against)
    if as_json:
        click.echo(json.dumps(check.to_json(), indent=1))
    else:
        verdict = "VERIFIED" if check.ok else "TAMPERED"
        click.echo(
            f"{verdict}: {check.size} entries, {check.heads_checked} signed heads checked, "
            f"root {check.root[:16] or '-'}"
        )
        if check.first_bad is not None:
            click.echo(f"first bad entry: {check.first_bad}")
        for problem in check.problems:
            click.echo(f"  problem: {problem}")
        for note in check.notes:
            click.echo(f"  note: {note}")
    sys.exit(0 if check.ok else 1)


@ledger.command("head")
@_ledger_option
def ledger_head(ledger_url: str | None) -> None:
    """Print the latest signed tree head as JSON (keep a copy elsewhere, as a witness)."""
    with _open(ledger_url) as store:
        head = store.latest_head()
    if head is None:
        click.echo("the ledger is empty", err=True)
        sys.exit(1)
    click.echo(json.dumps(head.to_json(), indent=1))


@ledger.command("prove")
@click.argument("index", type=click.IntRange(0))
@_ledger_option
def ledger_prove(index: int, ledger_url: str | None) -> None:
    """An entry with its inclusion proof against the latest signed head (JSON)."""
    with _open(ledger_url) as store:
        proof = store.prove_entry(index)
    click.echo(json.dumps(proof, indent=1))
    sys.exit(0 if proof["included"] else 1)


@ledger.command("consistency")
@click.argument("first", type=click.IntRange(0))
@click.argument("second", type=click.IntRange(0), required=False)
@_ledger_option
def ledger_consistency(first: int, second: int | None, ledger_url: str | None) -> None:
    """Consistency proof between the tree heads at sizes FIRST and SECOND (default: latest)."""
    from radguard.govern import merkle
    from radguard.govern.keys import verify_signature

    with _open(ledger_url) as store:
        second = store.size if second is None else second
        trusted = store.trusted or {}
        signed = {
            h.size: h
            for h in store.heads()
            if h.size in (first, second)
            and h.key_id in trusted
            and verify_signature(trusted[h.key_id], h.signed_bytes(), h.signature)
        }
        roots = {n: signed[n].root if n in signed else store.root(n) for n in (first, second)}
        proof = store.consistency_proof(first, second)
        ok = merkle.verify_consistency(first, second, roots[first], roots[second], proof)
    click.echo(
        json.dumps(
            {
                "first": {"size": first, "root": roots[first].hex(), "signed": first in signed},
                "second": {"size": second, "root": roots[second].hex(), "signed": second in signed},
                "proof": [p.hex() for p in proof],
                "valid": ok,
            },
            indent=1,
        )
    )
    sys.exit(0 if ok else 1)


@ledger.command("account")
@click.option("--patient", "patient_id", required=True, help="The patient's original Patient ID.")
@click.option("--since", default=None, metavar="DATE", help="Start date (default: six years ago).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "csv", "html"]),
    default="text",
    help="Output format.",
)
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Write here.")
@_ledger_option
@_key_option
def ledger_account(
    patient_id: str,
    since: str | None,
    fmt: str,
    out: Path | None,
    ledger_url: str | None,
    key_file: Path | None,
) -> None:
    """A patient's accounting of disclosures (HIPAA 45 CFR 164.528), each entry verified."""
    from radguard.govern.account import account, default_since, render

    since = since or default_since()
    with _open(ledger_url) as store:
        rows = account(store, _keyring(key_file), patient_id, since)
    text = render(rows, since, fmt)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(rows)} disclosure(s) to {out}")
    else:
        click.echo(text, nl=False)


@ledger.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["gdpr", "atna-xml", "fhir"]),
    default="gdpr",
    help="gdpr: Art. 30 record (JSON); atna-xml: DICOM audit messages; fhir: AuditEvents.",
)
@click.option("--since", default="", metavar="DATE", help="Only entries from this date.")
@click.option("--controller", default="", help="Controller name (GDPR record).")
@click.option("--contact", default="", help="Controller contact (GDPR record).")
@click.option("--out", "out", type=click.Path(path_type=Path), default=None, help="Write here.")
@_ledger_option
def ledger_export(
    fmt: str,
    since: str,
    controller: str,
    contact: str,
    out: Path | None,
    ledger_url: str | None,
) -> None:
    """Export the ledger for auditors (patients appear as keyed hashes only)."""
    from radguard.govern import export

    with _open(ledger_url) as store:
        entries = [(i, e) for i, e in store.entries() if str(e.get("time", ""))[:10] >= since]
    if fmt == "gdpr":
        text = json.dumps(export.gdpr_record(entries, controller, contact), indent=1) + "\n"
    elif fmt == "atna-xml":
        text = export.audit_xml(entries)
    else:
        text = export.audit_bundle(entries)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(entries)} entr(ies) to {out}")
    else:
        click.echo(text, nl=False)


@click.command("release")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "recipient", required=True, help="Recipient name.")
@click.option("--purpose", type=click.Choice(_PURPOSES), required=True, help="Why.")
@click.option("--address", default="", help="Recipient address (for the accounting).")
@click.option("--agreement", default="", metavar="REF", help="Data-use agreement reference.")
@click.option("--legal-basis", default="", help="Legal basis (e.g. GDPR Art. 9(2)(j)).")
@click.option("--sign-dicom", is_flag=True, help="Also sign every file (PS3.15 Annex C).")
@_ledger_option
@_key_option
def release_command(
    out: Path,
    recipient: str,
    purpose: str,
    address: str,
    agreement: str,
    legal_basis: str,
    sign_dicom: bool,
    ledger_url: str | None,
    key_file: Path | None,
) -> None:
    """Sign and record the release of a set de-identified earlier (radguard deid ... OUT)."""
    from radguard.govern.disclosure import cpu_workers, release_existing

    record = release_existing(
        out,
        _keyring(key_file),
        recipient=recipient,
        purpose=purpose,
        address=address,
        agreement=agreement,
        legal_basis=legal_basis,
        ledger_url=ledger_url or "",
        sign_dicom=sign_dicom,
        workers=cpu_workers(),
    )
    click.echo(
        f"release {record['release_id']}: manifest sha256 {record['manifest_sha256'][:16]}, "
        f"ledger entry {record.get('ledger_index')}"
    )


@click.command("verify-release")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trusted release public key or certificate (PEM); repeatable. Default: the site's.",
)
@click.option("--dicom", "dicom", is_flag=True, help="Also check DICOM signatures in files.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_release_command(
    folder: Path, public_keys: tuple[Path, ...], dicom: bool, as_json: bool
) -> None:
    """Check a release against its signed manifest: added, removed, modified files (exit 1)."""
    from radguard.govern import keys
    from radguard.govern.release import verify_release

    trusted: dict[str, bytes] | None
    if public_keys:
        trusted = {}
        for path in public_keys:
            pem = path.read_bytes()
            trusted[keys.key_id_of(keys.load_public(pem))] = pem
    else:
        trusted = keys.public_keys(keys.KeyKind.RELEASE) or None
    check = verify_release(folder, trusted)
    data = check.to_json()
    if dicom:
        anchors = [p.read_bytes() for p in public_keys if b"CERTIFICATE" in p.read_bytes()]
        data["dicom_signatures"] = _dicom_checks(folder, anchors or keys.certificates() or None)
        if any(not c["valid"] for c in data["dicom_signatures"]):
            data["ok"] = False
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        click.echo(
            f"{'VERIFIED' if data['ok'] else 'FAILED'}: {check.files} file(s) in the manifest; "
            f"signature {'valid' if check.signature_valid else 'INVALID'}"
            + ("" if check.key_trusted is not None else " (key not pinned: no trusted keys)")
        )
        for label in ("added", "removed", "pixels_changed", "header_changed", "modified"):
            for name in data[label]:
                click.echo(f"  {label.replace('_', ' ')}: {name}")
        for problem in check.problems:
            click.echo(f"  problem: {problem}")
        for item in data.get("dicom_signatures", []):
            if not item["valid"]:
                click.echo(f"  DICOM signature invalid: {item['file']} ({item['problem']})")
    sys.exit(0 if data["ok"] else 1)


def _dicom_checks(folder: Path, anchors: list[bytes] | None) -> list[dict[str, Any]]:
    from radguard.govern.dsig import verify_file
    from radguard.govern.release import MANIFEST, SIGNATURE

    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name in (MANIFEST, SIGNATURE):
            continue
        try:
            checks = verify_file(path, anchors)
        except Exception as error:  # noqa: BLE001 - not DICOM: nothing to check
            del error
            continue
        for c in checks:
            found.append(
                {
                    "file": path.relative_to(folder).as_posix(),
                    "valid": c.valid,
                    "signer": c.signer,
                    "trusted": c.trusted,
                    "problem": "; ".join(c.problems),
                }
            )
    return found


COMMANDS = (consent, ledger, release_command, verify_release_command)
