"""The verifier finds what is left, and stays quiet on a clean release."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radguard.cli import main
from radguard.deid import Keyring
from radguard.pipeline import RunOptions, run_deid
from radguard.settings import load_policy
from radguard.verify import verify

from conftest import pydicom_file

FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "JPEG2000.dcm",
    "examples_rgb_color.dcm",
    "waveform_ecg.dcm",
]


@pytest.fixture
def released(tmp_path: Path, keyring: Keyring) -> tuple[Path, Path]:
    """Real files plus an object referencing the CT, de-identified under the research policy."""
    src = tmp_path / "orig"
    src.mkdir()
    for index, name in enumerate(FILES):
        shutil.copyfile(pydicom_file(name), src / f"f{index}")
    ct = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    second = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    second.SOPInstanceUID = ct.SOPInstanceUID + ".2"
    second.InstanceNumber = 2
    ref = Dataset()
    ref.ReferencedSOPClassUID = ct.SOPClassUID
    ref.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    second.ReferencedImageSequence = Sequence([ref])
    second.save_as(src / "second.dcm")
    out = tmp_path / "deid"
    summary = run_deid(RunOptions(src, out, workers=1), load_policy("research"), keyring)
    assert summary.exit_code == 0
    return src, out


def _outputs(out: Path) -> list[Path]:
    return sorted(out.rglob("*.dcm"))


def _output_of(out: Path, orig_name: str) -> Path:
    manifest = out.parent / f"{out.name}.run" / "manifest.jsonl"
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if entry["input"] == orig_name:
            return out / entry["output"]
    raise AssertionError(orig_name)


def test_clean_release_passes(released: tuple[Path, Path]) -> None:
    src, out = released
    report = verify(out, src, load_policy("research"))
    assert report.mode == "paired"
    assert report.findings == [], report.findings[:3]
    assert report.checks["references resolve"] == "passed"
    assert report.checks["series intact"] == "passed"
    assert report.checks["burned-in text (OCR)"] == "passed"
    assert report.files_checked == len(FILES) + 1


def test_planted_leak_is_found(released: tuple[Path, Path]) -> None:
    src, out = released
    target = _output_of(out, "f0")
    ds = pydicom.dcmread(target)
    ds.ImageComments = "follow-up for compressedsamples ct1"  # the original patient name
    ds.save_as(target)
    report = verify(out, src, load_policy("research"))
    assert not report.passed
    hits = [f for f in report.findings if f.path == "(0020,4000)"]
    assert hits and hits[0].category == "patient_name"
    assert "CompressedSamples" not in json.dumps(report.to_json())  # findings are masked


def test_original_uid_left_and_retained_by_option(released: tuple[Path, Path]) -> None:
    src, out = released
    target = _output_of(out, "f0")
    ds = pydicom.dcmread(target)
    original = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.FrameOfReferenceUID = original.FrameOfReferenceUID
    ds.save_as(target)
    report = verify(out, src, load_policy("research"))
    assert any(f.category == "uid" for f in report.findings)
    retained = verify(
        out,
        src,
        load_policy("research").with_options(
            add=[__import__("radguard").profile.Option.RETAIN_UIDS]
        ),
    )
    assert not any(f.category == "uid" for f in retained.findings)
    assert any(f.category == "uid" for f in retained.retained)


def test_broken_reference_and_split_series(released: tuple[Path, Path]) -> None:
    src, out = released
    target = _output_of(out, "second.dcm")
    ds = pydicom.dcmread(target)
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "2.25.1"
    ds.SeriesInstanceUID = "2.25.2"
    ds.save_as(target)
    report = verify(out, src, load_policy("research"))
    assert report.checks["references resolve"] == "failed"
    assert report.checks["series intact"] == "failed"


def test_generic_mode_and_cli_report(released: tuple[Path, Path], tmp_path: Path) -> None:
    _, out = released
    clean = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["mode"] == "generic"
    target = _output_of(out, "f1")
    ds = pydicom.dcmread(target)
    ds.ImageComments = "Reviewed by John Smith, call 555-123-4567"
    ds.save_as(target)
    html = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["verify", str(out), "--report", str(html)])
    assert result.exit_code == 1
    page = html.read_text()
    assert "FAILED" in page and "census" in page
    assert "John Smith" not in page and "555-123" not in page
    data = json.loads(html.with_suffix(".json").read_text())
    assert data["findings_by_category"]["generic"] >= 2


def test_unreadable_output_is_a_finding(released: tuple[Path, Path]) -> None:
    src, out = released
    target = _outputs(out)[0]
    target.write_bytes(b"garbage")
    report = verify(out, src, load_policy("research"))
    assert any(f.category == "unreadable" for f in report.findings)
