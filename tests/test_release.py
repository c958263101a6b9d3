"""Signed release manifests, verify-release, and the governed `deid --release-to` round trip."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

from radguard.cli import main
from radguard.govern.keys import KeyKind, load_signer, new_signing_key, public_keys
from radguard.govern.release import (
    MANIFEST,
    SIGNATURE,
    ReleaseCheck,
    classify,
    sign_release,
    verify_release,
)

from conftest import pydicom_file


@pytest.fixture
def release(tmp_path: Path) -> Path:
    new_signing_key(KeyKind.RELEASE)
    folder = tmp_path / "release"
    (folder / "a").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), folder / "a" / "ct.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), folder / "mr.dcm")
    shutil.copy(pydicom_file("rtplan.dcm"), folder / "a" / "plan.dcm")
    sign_release(folder, load_signer(KeyKind.RELEASE), purpose="research")
    return folder


def _trusted() -> dict[str, bytes]:
    return public_keys(KeyKind.RELEASE)


def test_untouched_release_verifies(release: Path) -> None:
    check = verify_release(release, _trusted())
    assert check.ok and check.files == 3 and check.key_trusted
    manifest = json.loads((release / MANIFEST).read_text())
    lines = {f["path"]: f for f in manifest["files"]}
    assert lines["a/plan.dcm"]["pixels"] is None and lines["a/ct.dcm"]["pixels"]


def test_every_single_byte_change_of_a_released_file_is_detected(release: Path) -> None:
    manifest = json.loads((release / MANIFEST).read_text())
    entry = next(f for f in manifest["files"] if f["path"] == "mr.dcm")
    target = release / "mr.dcm"
    original = target.read_bytes()
    tag = original.rfind(b"\xe0\x7f\x10\x00")
    pixels = range(tag + 12, tag + 12 + int.from_bytes(original[tag + 8 : tag + 12], "little"))
    sampled_pixels = sampled_headers = 0
    for position in range(len(original)):
        data = bytearray(original)
        data[position] ^= 0xFF
        if position % 97 == 0:  # the full check, which decodes the pixels, on a sample
            target.write_bytes(bytes(data))
            check = ReleaseCheck(signature_valid=True)
            classify(entry, target, check)
            if position in pixels:
                assert check.pixels_changed == ["mr.dcm"], position
                sampled_pixels += 1
            else:  # header, or the trailing padding after the pixels
                assert check.pixels_changed or check.header_changed, position
                sampled_headers += 1
        else:  # every other byte: the sha256 the manifest pins no longer matches
            assert hashlib.sha256(data).hexdigest() != entry["sha256"], position
    target.write_bytes(original)
    assert sampled_pixels and sampled_headers
    assert verify_release(release, _trusted()).ok


def test_every_single_byte_change_of_the_manifest_or_signature_is_detected(
    release: Path,
) -> None:
    for name in (MANIFEST, SIGNATURE):
        path = release / name
        original = path.read_bytes()
        step = 1 if name == MANIFEST else 7  # the signature file is mostly a base64 blob
        for position in range(0, len(original), step):
            data = bytearray(original)
            data[position] = (data[position] + 1) % 256
            path.write_bytes(bytes(data))
            assert not verify_release(release, _trusted()).ok, (name, position)
        path.write_bytes(original)
    assert verify_release(release, _trusted()).ok


def test_re_encoded_image_keeps_its_pixel_hash(release: Path) -> None:
    path = release / "a" / "ct.dcm"
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(path)
    mr = pydicom.dcmread(release / "mr.dcm")
    mr.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    mr.save_as(release / "mr.dcm", implicit_vr=True, little_endian=True)
    check = verify_release(release, _trusted())
    assert sorted(check.header_changed) == ["a/ct.dcm", "mr.dcm"]
    assert not check.pixels_changed and not check.ok


def test_added_removed_and_untrusted(release: Path, tmp_path: Path) -> None:
    shutil.copy(pydicom_file("CT_small.dcm"), release / "extra.dcm")
    (release / "a" / "plan.dcm").unlink()
    check = verify_release(release, _trusted())
    assert check.added == ["extra.dcm"] and check.removed == ["a/plan.dcm"]
    other = tmp_path / "otherhome"
    new_signing_key(KeyKind.RELEASE, other)
    check = verify_release(release, public_keys(KeyKind.RELEASE, other))
    assert check.signature_valid and check.key_trusted is False and not check.ok


def test_rotation_keeps_old_releases_verifiable(release: Path) -> None:
    new_signing_key(KeyKind.RELEASE, rotate=True)
    assert verify_release(release, _trusted()).ok


def test_governed_deid_round_trip(tmp_path: Path, key_file: Path) -> None:
    runner = CliRunner()
    for kind in ("ledger", "release"):
        assert runner.invoke(main, ["key", "new", "--kind", kind]).exit_code == 0
    public = runner.invoke(main, ["key", "show-public", "--kind", "release"])
    assert "BEGIN CERTIFICATE" in public.output
    source = tmp_path / "in"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(pydicom_file(name), source / name)
    ids = [str(pydicom.dcmread(source / n).PatientID) for n in ("CT_small.dcm", "MR_small.dcm")]
    empty = tmp_path / "none.csv"
    empty.write_text("patient_id,purpose,decision\n")  # the site has no opt-outs on record
    imported = runner.invoke(main, ["consent", "import", str(empty), "--key-file", str(key_file)])
    assert imported.exit_code == 0, imported.output
    ledger = tmp_path / "ledger.sqlite"
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "deid",
            str(source),
            str(out),
            "--key-file",
            str(key_file),
            "--workers",
            "1",
            "--purpose",
            "research",
            "--release-to",
            "Example University",
            "--release-address",
            "1 Campus Way",
            "--agreement",
            "DUA-2026-01",
            "--ledger",
            str(ledger),
            "--sign-dicom",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out.run" / "summary.json").read_text())
    assert summary["release"]["ledger_index"] == 0 and summary["release"]["dicom_signed"] == 2
    verified = runner.invoke(main, ["verify-release", str(out), "--dicom", "--json"])
    assert verified.exit_code == 0, verified.output
    signatures = json.loads(verified.output)["dicom_signatures"]
    assert len(signatures) == 2 and all(x["valid"] and x["trusted"] for x in signatures)
    # the ledger entry holds keyed hashes, never the IDs
    entry_text = ledger.read_bytes()
    assert not any(i.encode() in entry_text for i in ids)
    account = runner.invoke(
        main,
        [
            "ledger",
            "account",
            "--patient",
            ids[0],
            "--ledger",
            str(ledger),
            "--key-file",
            str(key_file),
            "--format",
            "csv",
        ],
    )
    assert account.exit_code == 0, account.output
    rows = account.output.strip().splitlines()
    assert len(rows) == 2 and "Example University" in rows[1] and "DUA-2026-01" in rows[1]
    nobody = runner.invoke(
        main,
        [
            "ledger",
            "account",
            "--patient",
            "NOT-A-PATIENT",
            "--ledger",
            str(ledger),
            "--key-file",
            str(key_file),
        ],
    )
    assert "No disclosures" in nobody.output
    html = runner.invoke(
        main,
        [
            "ledger",
            "account",
            "--patient",
            ids[1],
            "--ledger",
            str(ledger),
            "--key-file",
            str(key_file),
            "--format",
            "html",
        ],
    )
    assert "<table>" in html.output and "Example University" in html.output
    # a second release of the same set, recorded with `radguard release`
    again = runner.invoke(
        main,
        [
            "release",
            str(out),
            "--to",
            "Other Lab",
            "--purpose",
            "quality-improvement",
            "--ledger",
            str(ledger),
            "--key-file",
            str(key_file),
        ],
    )
    assert again.exit_code == 0, again.output
    assert runner.invoke(main, ["ledger", "verify", "--ledger", str(ledger)]).exit_code == 0
    xml = runner.invoke(main, ["ledger", "export", "--format", "atna-xml", "--ledger", str(ledger)])
    root = ET.fromstring(xml.output.split("\n", 1)[1])
    messages = root.findall("AuditMessage")
    assert len(messages) == 2
    event = messages[0].find("EventIdentification/EventID")
    assert event is not None and event.get("csd-code") == "110106"
    fhir = json.loads(
        runner.invoke(
            main, ["ledger", "export", "--format", "fhir", "--ledger", str(ledger)]
        ).output
    )
    assert [e["resource"]["type"]["code"] for e in fhir["entry"]] == ["110106", "110106"]
    gdpr = json.loads(
        runner.invoke(
            main, ["ledger", "export", "--ledger", str(ledger), "--controller", "Hospital"]
        ).output
    )
    assert gdpr["disclosures"] == 2 and gdpr["distinct_patients"] == 2
    assert {r["name"] for r in gdpr["categories_of_recipients"]} == {
        "Example University",
        "Other Lab",
    }
    # a changed released file is reported
    victim = next(out.rglob("*.dcm"))
    ds = pydicom.dcmread(victim)
    ds.PatientName = "Changed"
    ds.save_as(victim)
    failed = runner.invoke(main, ["verify-release", str(out)])
    assert failed.exit_code == 1 and "header changed" in failed.output
