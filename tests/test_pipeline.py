"""End-to-end runs: the CLI over real files, run records, bad input, resume, Dask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner

from radguard.cli import main
from radguard.deid import Keyring, Vault
from radguard.pipeline import RunOptions, run_deid, run_dir_for
from radguard.settings import load_policy

from conftest import pydicom_file

GOOD = [
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "rtplan.dcm",
    "JPEG2000.dcm",
    "examples_rgb_color.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "image_dfl.dcm",
    "examples_overlay.dcm",
]


def _corpus(root: Path) -> Path:
    """A hospital-like tree of real files, some without suffix, plus bad inputs."""
    src = root / "in"
    for index, name in enumerate(GOOD):
        folder = src / f"PAT{index % 3}" / "series"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pydicom_file(name), folder / (f"IM{index:04d}" if index % 2 else name))
    bad = src / "odd"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image\n")
    (bad / "empty.dcm").write_bytes(b"")
    data = pydicom_file("CT_small.dcm").read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) // 2])
    shutil.copyfile(pydicom_file("MR_truncated.dcm"), bad / "mr_truncated.dcm")
    return src


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _manifest(out: Path) -> list[dict[str, object]]:
    lines = (run_dir_for(out) / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_cli_deid_end_to_end(tmp_path: Path, key_file: Path) -> None:
    src = _corpus(tmp_path)
    before = _digests(src)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["deid", str(src), str(out), "--key-file", str(key_file), "--workers", "2", "--quarantine"],
    )
    assert result.exit_code == 1, result.output  # the bad inputs were quarantined
    assert _digests(src) == before  # inputs never modified
    lines = _manifest(out)
    assert len(lines) == len(GOOD) + 4  # every input accounted for
    status = {Path(str(line["input"])).name: line["status"] for line in lines}
    assert status["notes.txt"] == "quarantined"
    assert status["empty.dcm"] == "quarantined"
    assert status["truncated.dcm"] == "quarantined"
    assert status["mr_truncated.dcm"] == "quarantined"
    assert sum(1 for s in status.values() if s == "released") == len(GOOD)
    for line in lines:
        if line["status"] != "released":
            assert line["reasons"], line
    # OUT holds released files only, named by pseudonyms and new UIDs
    outputs = sorted(out.rglob("*"))
    files = [p for p in outputs if p.is_file()]
    assert len(files) == len(GOOD)
    for path in files:
        parts = path.relative_to(out).parts
        assert len(parts) == 4 and parts[0].startswith("RG") and path.suffix == ".dcm"
        ds = pydicom.dcmread(path)
        assert path.stem == ds.SOPInstanceUID
        assert ds.PatientIdentityRemoved == "YES"
    names = " ".join(str(p.relative_to(out)) for p in outputs)
    assert "PAT" not in names and "IM0" not in names and "series" not in names
    summary = json.loads((run_dir_for(out) / "summary.json").read_text())
    assert summary["counts"] == {
        "released": len(GOOD),
        "excluded": 0,
        "quarantined": 4,
        "failed": 0,
    }
    assert summary["key_fingerprint"] == Keyring(_secret(key_file)).fingerprint
    assert summary["profile_edition"] == "2026c" and len(summary["policy_sha256"]) == 64
    key_text = key_file.read_text().split()[1]
    for record in run_dir_for(out).rglob("*.json*"):
        assert key_text not in record.read_text()
    quarantine = run_dir_for(out) / "quarantine"
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o700
    assert len(list(quarantine.iterdir())) == 4


def _secret(key_file: Path) -> bytes:
    from radguard.deid.keys import load_key

    return load_key(key_file).secret


def test_outputs_identical_across_worker_counts_and_resume(
    tmp_path: Path, keyring: Keyring
) -> None:
    src = _corpus(tmp_path)
    policy = load_policy("research")
    one = tmp_path / "one"
    run_deid(RunOptions(src, one, workers=1), policy, keyring)
    two = tmp_path / "two"
    run_deid(RunOptions(src, two, workers=2), policy, keyring)
    assert _digests(one) == _digests(two)
    # simulate a run killed half way: drop half the outputs and the tail of the manifest
    manifest = run_dir_for(two) / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])
    cut = 0
    for line in lines[5:]:
        output = json.loads(line)["output"]
        if output:
            target = two / output
            if cut == 0:  # a file half written when the power went: must be replaced
                target.write_bytes(target.read_bytes()[:100])
            else:
                target.unlink()
            cut += 1
    summary = run_deid(RunOptions(src, two, workers=2), policy, keyring)
    assert summary.resumed >= 1
    assert _digests(one) == _digests(two)
    final = _manifest(two)
    assert len(final) == len(GOOD) + 4
    assert len({line["input_digest"] for line in final}) == len(final)


def test_dry_run_writes_nothing(tmp_path: Path, key_file: Path) -> None:
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["deid", str(src), str(out), "--key-file", str(key_file), "--dry-run", "--workers", "1"],
    )
    assert result.exit_code == 1
    assert "dry run" in result.output
    assert not out.exists() and not run_dir_for(out).exists()


def test_exit_code_zero_when_all_released_or_excluded(tmp_path: Path, key_file: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "a")
    doc = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    doc.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF
    doc.save_as(src / "b.dcm")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["deid", str(src), str(out), "--key-file", str(key_file)])
    assert result.exit_code == 0, result.output
    status = {Path(str(x["input"])).name: x for x in _manifest(out)}
    assert status["b.dcm"]["status"] == "excluded"
    assert "Encapsulated PDF" in status["b.dcm"]["reasons"][0]


def test_vault_maps_pseudonyms_back(tmp_path: Path, key_file: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "ct")
    out = tmp_path / "out"
    assert (
        CliRunner()
        .invoke(main, ["deid", str(src), str(out), "--key-file", str(key_file)])
        .exit_code
        == 0
    )
    pseudo = pydicom.dcmread(next(out.rglob("*.dcm"))).PatientID
    vault_path = run_dir_for(out) / "vault.sqlite"
    assert b"1CT1" not in vault_path.read_bytes()  # the vault holds nothing in the clear
    result = CliRunner().invoke(
        main, ["vault", "lookup", str(vault_path), pseudo, "--key-file", str(key_file)]
    )
    assert result.exit_code == 0
    assert "patient_id\t1CT1\t" + pseudo in result.output
    other = Keyring(b"\x09" * 32)
    with pytest.raises(Exception, match="another key"):
        Vault(vault_path, other)


def test_refuses_nonempty_foreign_output(tmp_path: Path, key_file: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "a")
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    result = CliRunner().invoke(main, ["deid", str(src), str(out), "--key-file", str(key_file)])
    assert result.exit_code == 2
    assert "not empty" in result.output


def test_duplicate_instance_uid_with_other_content_is_not_overwritten(
    tmp_path: Path, keyring: Keyring
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "a")
    other = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    other.SliceThickness = "2.5"
    other.save_as(src / "b")
    out = tmp_path / "out"
    summary = run_deid(RunOptions(src, out, workers=1), load_policy("research"), keyring)
    assert summary.counts["released"] == 1 and summary.counts["quarantined"] == 1
    reasons = [x["reasons"][0] for x in _manifest(out) if x["status"] == "quarantined"]
    assert "duplicate instance UID" in reasons[0]


def test_default_key_is_created_once_with_notice(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "a")
    first = CliRunner().invoke(main, ["deid", str(src), str(tmp_path / "o1")])
    assert "created your default pseudonym key" in first.output
    key = Path(os.environ["RADGUARD_HOME"]) / "pseudonym.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    second = CliRunner().invoke(main, ["deid", str(src), str(tmp_path / "o2")])
    assert "created your default" not in second.output
    assert _digests(tmp_path / "o1") == _digests(tmp_path / "o2")


def test_dask_cluster_gives_identical_outputs(tmp_path: Path, keyring: Keyring) -> None:
    distributed = pytest.importorskip("distributed")
    src = _corpus(tmp_path)
    policy = load_policy("research")
    local = tmp_path / "local"
    run_deid(RunOptions(src, local, workers=2), policy, keyring)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = tmp_path / "dask"
        summary = run_deid(
            RunOptions(src, remote, executor="dask", scheduler=cluster.scheduler_address),
            policy,
            keyring,
        )
    assert summary.counts["released"] == len(GOOD)
    assert _digests(local) == _digests(remote)


def test_policy_exclusions_are_reported(tmp_path: Path, keyring: Keyring) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(pydicom_file("CT_small.dcm"), src / "ct")
    shutil.copyfile(pydicom_file("MR_small.dcm"), src / "mr")
    sr = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    sr.SOPInstanceUID = "1.2.3.4.5.6.7.8"
    sr.StudyDescription = "research hold"
    sr.save_as(src / "held")
    policy_file = tmp_path / "p.toml"
    policy_file.write_text(
        'extends = "research"\n[exclude]\nmodalities = ["MR"]\n'
        'study_descriptions = ["RESEARCH HOLD"]\n'
    )
    out = tmp_path / "out"
    summary = run_deid(RunOptions(src, out, workers=1), load_policy(policy_file), keyring)
    assert summary.counts == {"released": 1, "excluded": 2, "quarantined": 0, "failed": 0}
    assert summary.exit_code == 0
    reasons = sorted(str(x["reasons"][0]) for x in _manifest(out) if x["status"] == "excluded")
    assert "modality MR" in reasons[0] and "study description" in reasons[1]


def test_risk_gate_withholds_a_risky_set(tmp_path: Path, key_file: Path) -> None:
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "deid",
            str(src),
            str(out),
            "--key-file",
            str(key_file),
            "--max-risk",
            "0.1",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "withheld" in result.output
    assert not any(out.iterdir())  # nothing released
    lines = _manifest(out)
    assert {line["status"] for line in lines} <= {"withheld", "quarantined"}
    assert any("risk gate" in str(line["reasons"][0]) for line in lines)
    summary = json.loads((run_dir_for(out) / "summary.json").read_text())
    assert summary["risk"]["prosecutor_risk"] > 0.1 and summary["withheld"]
    # with a limit the set meets, the same run releases everything (resume re-processes)
    again = CliRunner().invoke(
        main,
        [
            "deid",
            str(src),
            str(out),
            "--key-file",
            str(key_file),
            "--max-risk",
            "1",
            "--workers",
            "1",
        ],
    )
    assert again.exit_code == 1  # the odd inputs are still quarantined
    assert len(list(out.rglob("*.dcm"))) == len(GOOD)


def test_risk_command_json(tmp_path: Path, keyring: Keyring) -> None:
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    run_deid(RunOptions(src, out, workers=1), load_policy("research"), keyring)
    result = CliRunner().invoke(main, ["risk", str(out), "--json", "--population", "1000"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["k_anonymity"] >= 1 and 0 <= data["unique_fraction"] <= 1
    assert data["marketer_risk"] is not None and data["suggestions"]
    text = CliRunner().invoke(main, ["risk", str(out), "--qi", "PatientSex", "--unit", "study"])
    assert text.exit_code == 0 and "k-anonymity" in text.output
    page = tmp_path / "risk.html"
    made = CliRunner().invoke(main, ["risk", str(out), "--report", str(page)])
    assert made.exit_code == 0
    html = page.read_text()
    assert "<svg" in html and "Equivalence classes" in html
    assert json.loads(page.with_suffix(".json").read_text())["k_anonymity"] >= 1


def test_any_batch_split_gives_the_same_outputs(tmp_path: Path, keyring: Keyring) -> None:
    """Stateless per file: two separate runs over halves of the input write exactly the files
    (same names, same bytes) that one run over all of it writes, references included."""
    src = _corpus(tmp_path)
    policy = load_policy("research")
    whole = tmp_path / "whole"
    run_deid(RunOptions(src, whole, workers=2), policy, keyring)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    halves = [tmp_path / "half-a", tmp_path / "half-b"]
    for index, half in enumerate(halves):
        part = tmp_path / f"in-{index}"
        for path in files[index::2]:
            target = part / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        run_deid(RunOptions(part, half, workers=1), policy, keyring)
    merged = {**_digests(halves[0]), **_digests(halves[1])}
    assert merged == _digests(whole)
