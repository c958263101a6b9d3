"""A patient's accounting of disclosures (HIPAA 45 CFR 164.528) from the ledger.

For each disclosure: the date, the recipient and its address if known, a brief description of
the information and a brief statement of the purpose; six years back by default. Every line is
checked against the signed tree head with an inclusion proof before it is reported.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
from dataclasses import dataclass

from radguard.deid.keys import Keyring
from radguard.errors import RadguardError
from radguard.govern import merkle
from radguard.govern.consent import patient_hash
from radguard.govern.disclosure import PURPOSE_TEXT
from radguard.govern.keys import verify_signature
from radguard.govern.ledger import Ledger, LedgerTampered, canonical

RETENTION_YEARS = 6  # 164.528(a): disclosures in the six years before the request


@dataclass
class Disclosure:
    date: str
    recipient: str
    address: str
    description: str
    purpose: str
    agreement: str
    legal_basis: str
    studies: int
    entry: int
    verified: bool


def default_since(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    try:
        then = now.replace(year=now.year - RETENTION_YEARS)
    except ValueError:  # 29 February
        then = now.replace(year=now.year - RETENTION_YEARS, day=28)
    return then.strftime("%Y-%m-%d")


def account(
    ledger: Ledger, keyring: Keyring, patient_id: str, since: str | None = None
) -> list[Disclosure]:
    """The disclosures of one patient since ``since`` (ISO date; default six years back)."""
    since = since or default_since()
    digest = patient_hash(keyring, patient_id).hex()
    head = ledger.latest_head()
    if head is None:
        return []
    trusted = ledger.trusted or {}
    pem = trusted.get(head.key_id)
    if pem is None or not verify_signature(pem, head.signed_bytes(), head.signature):
        raise LedgerTampered(
            "the latest signed head does not verify with the site's ledger keys "
            "(run 'radguard ledger verify')"
        )
    found: list[Disclosure] = []
    for index, entry in ledger.search(digest):
        studies = [p for p in entry.get("patients", []) if p.get("patient") == digest]
        if not studies or str(entry.get("time", ""))[:10] < since:
            continue
        if entry.get("key_fingerprint") not in ("", keyring.fingerprint):
            continue
        leaf = merkle.leaf_hash(canonical(entry))
        verified = index < head.size and merkle.verify_inclusion(
            leaf, index, head.size, ledger.inclusion_proof(index, head.size), head.root
        )
        if not verified:
            raise LedgerTampered(f"entry {index} is not included in the signed head (altered)")
        recipient = entry.get("recipient", {})
        purpose = str(entry.get("purpose", ""))
        count = sum(len(s.get("studies", [])) for s in studies)
        found.append(
            Disclosure(
                date=str(entry.get("time", ""))[:10],
                recipient=str(recipient.get("name", "")),
                address=str(recipient.get("address", "")),
                # the patient's own share first, then what the whole release held
                description=f"{count} study(ies) of this patient, in a release of "
                + str(entry.get("description", "")),
                purpose=PURPOSE_TEXT.get(purpose, purpose),
                agreement=str(entry.get("agreement", "")),
                legal_basis=str(entry.get("legal_basis", "")),
                studies=count,
                entry=index,
                verified=verified,
            )
        )
    return found


_COLUMNS = ("date", "recipient", "address", "description", "purpose", "agreement", "entry")


def to_csv(rows: list[Disclosure]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    for r in rows:
        writer.writerow(
            [r.date, r.recipient, r.address, r.description, r.purpose, r.agreement, r.entry]
        )
    return out.getvalue()


def to_text(rows: list[Disclosure], since: str) -> str:
    lines = [
        "Accounting of disclosures (45 CFR 164.528)",
        f"Period: {since} to {_dt.date.today().isoformat()}",
        f"Disclosures: {len(rows)}",
        "",
    ]
    for r in rows:
        lines += [
            f"Date: {r.date}",
            f"  Recipient: {r.recipient}" + (f", {r.address}" if r.address else ""),
            f"  Information: {r.description}",
            f"  Purpose: {r.purpose}" + (f" (agreement {r.agreement})" if r.agreement else ""),
            f"  Ledger entry: {r.entry} (verified against the signed log)",
            "",
        ]
    if not rows:
        lines.append("No disclosures recorded in this period.")
    return "\n".join(lines) + "\n"


def to_html(rows: list[Disclosure], since: str) -> str:
    e = html.escape
    body = "".join(
        f"<tr><td>{e(r.date)}</td><td>{e(r.recipient)}</td><td>{e(r.address)}</td>"
        f"<td>{e(r.description)}</td><td>{e(r.purpose)}</td><td>{e(r.agreement)}</td>"
        f"<td>{r.entry}</td></tr>"
        for r in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Accounting of disclosures"
        "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;text-align:left}</style></head><body>"
        "<h1>Accounting of disclosures</h1><p>45 CFR 164.528; period "
        f"{e(since)} to {_dt.date.today().isoformat()}; {len(rows)} disclosure(s), each "
        "verified against the signed disclosure ledger.</p><table><tr>"
        + "".join(f"<th>{c}</th>" for c in _COLUMNS)
        + f"</tr>{body}</table></body></html>\n"
    )


def render(rows: list[Disclosure], since: str, fmt: str) -> str:
    if fmt == "text":
        return to_text(rows, since)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "html":
        return to_html(rows, since)
    raise RadguardError(f"unknown format {fmt!r} (text, csv or html)")
