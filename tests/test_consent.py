"""Consent registry (CSV, FHIR R4) and its enforcement in `radguard deid --purpose`."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from radguard.cli import main
from radguard.deid.keys import Keyring, load_key
from radguard.govern.consent import (
    RADGUARD_PURPOSE,
    V3_ACT_REASON,
    ConsentError,
    ConsentRegistry,
    Decision,
    HashSet,
    patient_hash,
)

from conftest import pydicom_file

UTC = dt.UTC


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("patient_id,purpose,decision,start,end\n" + "\n".join(rows) + "\n")
    return path


def test_csv_rules_periods_and_precedence(tmp_path: Path, keyring: Keyring) -> None:
    source = _csv(
        tmp_path / "c.csv",
        [
            "MRN-1,ai-training,deny,2024-01-01,2024-12-31",
            "MRN-1,*,permit,,",
            "MRN-2,research,permit,,",
            "MRN-2,research,deny,,",
        ],
    )
    with ConsentRegistry(tmp_path / "r.sqlite", keyring) as reg:
        report = reg.import_file(source)
        assert report.rules == 4
        during = dt.datetime(2024, 6, 1, tzinfo=UTC)
        after = dt.datetime(2025, 1, 1, tzinfo=UTC)
        rule = reg.decision("MRN-1", "ai-training", during)
        assert rule is not None and rule.decision is Decision.DENY
        rule = reg.decision("MRN-1", "ai-training", after)  # the opt-out period ended
        assert rule is not None and rule.decision is Decision.PERMIT
        rule = reg.decision("MRN-2", "research")  # equally specific: deny wins
        assert rule is not None and rule.decision is Decision.DENY
        assert reg.decision("MRN-3", "research") is None
        gate = reg.gate("ai-training", require=True, at=during)
    assert gate.check(keyring, "MRN-1") is not None
    assert gate.check(keyring, "MRN-3") is not None  # never permitted, consent required
    assert gate.check(keyring, "") is not None  # no ID: fail closed
    open_gate = ConsentRegistry(tmp_path / "r.sqlite", keyring).gate("commercial", at=after)
    assert open_gate.check(keyring, "MRN-3") is None
    # the registry holds keyed hashes only
    raw = (tmp_path / "r.sqlite").read_bytes()
    assert b"MRN-1" not in raw and patient_hash(keyring, "MRN-1") in raw


def test_bad_csv_imports_nothing_and_quotes_no_id(tmp_path: Path, keyring: Keyring) -> None:
    source = _csv(tmp_path / "c.csv", ["SECRET-ID,ai-training,maybe,,", "X,research,permit,,"])
    with ConsentRegistry(tmp_path / "r.sqlite", keyring) as reg:
        with pytest.raises(ConsentError) as error:
            reg.import_file(source)
        assert "SECRET-ID" not in str(error.value)
        assert list(reg.all_rules()) == []


def test_registry_refuses_another_key(tmp_path: Path, keyring: Keyring) -> None:
    ConsentRegistry(tmp_path / "r.sqlite", keyring).close()
    with pytest.raises(ConsentError):
        ConsentRegistry(tmp_path / "r.sqlite", Keyring(bytes(32)))


def _bundle() -> dict[str, object]:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": "urn:ssn", "value": "999-00-1111"},
            {"type": {"coding": [{"code": "MR"}]}, "system": "urn:mrn", "value": "MRN-7"},
        ],
    }
    deny_ai = {
        "resourceType": "Consent",
        "id": "c1",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "provision": {
            "type": "deny",
            "period": {"start": "2020-01-01"},
            "purpose": [{"system": RADGUARD_PURPOSE, "code": "ai-training"}],
        },
    }
    base_deny_except_research = {
        "resourceType": "Consent",
        "id": "c2",
        "status": "active",
        "patient": {"identifier": {"system": "urn:mrn", "value": "MRN-8"}},
        "provision": {
            "type": "deny",
            "provision": [
                {"type": "permit", "purpose": [{"system": V3_ACT_REASON, "code": "HRESCH"}]}
            ],
        },
    }
    inactive = {
        "resourceType": "Consent",
        "id": "c3",
        "status": "inactive",
        "patient": {"identifier": {"value": "MRN-9"}},
        "provision": {"type": "deny"},
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": patient},
            {"resource": deny_ai},
            {"resource": base_deny_except_research},
            {"resource": inactive},
        ],
    }


def test_fhir_bundle_import(tmp_path: Path, keyring: Keyring) -> None:
    source = tmp_path / "consents.json"
    source.write_text(json.dumps(_bundle()))
    with ConsentRegistry(tmp_path / "r.sqlite", keyring) as reg:
        report = reg.import_file(source)
        assert report.resources == 2 and any("inactive" in s for s in report.skipped)

        def verdict(pid: str, purpose: str) -> str | None:
            rule = reg.decision(pid, purpose)
            return None if rule is None else rule.decision.value

        assert verdict("MRN-7", "ai-training") == "deny"  # the MR identifier was chosen
        assert verdict("999-00-1111", "ai-training") is None
        assert verdict("MRN-7", "research") is None
        assert verdict("MRN-8", "research") == "permit"  # nested permit beats the base deny
        assert verdict("MRN-8", "ai-training") == "deny"
        assert verdict("MRN-9", "research") is None  # inactive consent ignored


def test_hash_set() -> None:
    items = [bytes([i]) * 16 for i in range(0, 200, 3)]
    found = HashSet.of(items)
    assert len(found) == len(items)
    assert all(i in found for i in items)
    assert bytes([1]) * 16 not in found and b"short" not in found


def test_deid_excludes_opted_out_patients(tmp_path: Path, key_file: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        shutil.copy(pydicom_file(name), source / name)
    ids = {n: str(pydicom.dcmread(source / n).PatientID) for n in ("CT_small.dcm", "MR_small.dcm")}
    table = _csv(
        tmp_path / "c.csv",
        [
            f"{ids['MR_small.dcm']},ai-training,deny,,",
            f"{ids['CT_small.dcm']},ai-training,permit,,",
        ],
    )
    registry = tmp_path / "consent.sqlite"
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["consent", "import", str(table), "--registry", str(registry), "--key-file", str(key_file)],
    )
    assert result.exit_code == 0, result.output
    show = runner.invoke(
        main,
        [
            "consent",
            "show",
            ids["MR_small.dcm"],
            "--registry",
            str(registry),
            "--key-file",
            str(key_file),
        ],
    )
    assert "ai-training" in show.output and "deny" in show.output

    def run(out: str, *extra: str) -> dict[str, dict[str, object]]:
        result = runner.invoke(
            main,
            [
                "deid",
                str(source),
                str(tmp_path / out),
                "--key-file",
                str(key_file),
                "--workers",
                "1",
                "--purpose",
                "ai-training",
                "--consent-registry",
                str(registry),
                *extra,
            ],
        )
        assert result.exit_code in (0, 1), result.output
        lines = [json.loads(x) for x in (tmp_path / f"{out}.run/manifest.jsonl").open()]
        return {str(x["input"]): x for x in lines}

    missing = runner.invoke(
        main,
        [
            "deid",
            str(source),
            str(tmp_path / "none"),
            "--key-file",
            str(key_file),
            "--purpose",
            "research",
            "--consent-registry",
            str(tmp_path / "typo.sqlite"),
        ],
    )
    assert missing.exit_code == 2 and "no consent registry" in missing.output
    assert not (tmp_path / "none").exists()
    lines = run("out")
    assert lines["MR_small.dcm"]["status"] == "excluded"
    assert "opted out" in str(lines["MR_small.dcm"]["reasons"])
    assert ids["MR_small.dcm"] not in json.dumps(lines)
    assert lines["CT_small.dcm"]["status"] == "released"
    assert lines["rtplan.dcm"]["status"] == "released"  # no decision, consent not required
    strict = run("strict", "--require-consent")
    assert strict["CT_small.dcm"]["status"] == "released"
    assert strict["rtplan.dcm"]["status"] == "excluded"
    assert "no consent on record" in str(strict["rtplan.dcm"]["reasons"])
    # nothing of an excluded patient was written
    written = [pydicom.dcmread(p).Modality for p in (tmp_path / "strict").rglob("*.dcm")]
    assert written == ["CT"]
    assert load_key(key_file).fingerprint
