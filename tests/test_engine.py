"""The header engine on real DICOM files: nothing identifying survives, research data does."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radguard.deid import Engine, Keyring, Pseudonymizer
from radguard.deid.text import TextCleaner
from radguard.profile import Option
from radguard.settings import load_policy

from conftest import TEST_FILES, pydicom_file


def _read(name: str) -> Dataset:
    return pydicom.dcmread(pydicom_file(name))


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _all_text(ds: Dataset) -> str:
    return _bytes(ds).decode("latin-1")


IDENTIFYING = ("PatientName", "PatientID", "InstitutionName", "StationName", "StudyID")


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm"])
@pytest.mark.parametrize("policy", ["basic", "research", "safe-harbor"])
def test_identifying_values_do_not_survive(name: str, policy: str, keyring: Keyring) -> None:
    original = _read(name)
    values = [str(original.get(k, "") or "") for k in IDENTIFYING]
    ds = _read(name)
    Engine(load_policy(policy), Pseudonymizer(keyring)).apply(ds)
    text = _all_text(ds)
    for value in values:
        if len(value) >= 3:
            assert value not in text, f"{value[:1]}... survived {policy}"
    for uid_kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert str(original[uid_kw].value) not in text
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID


def test_same_key_same_bytes_other_key_other_values(keyring: Keyring) -> None:
    outputs = []
    for secret in (keyring.secret, keyring.secret, bytes(32)):
        ds = _read("CT_small.dcm")
        Engine(load_policy("research"), Pseudonymizer(Keyring(secret))).apply(ds)
        outputs.append((_bytes(ds), ds.PatientID, ds.StudyInstanceUID))
    assert outputs[0] == outputs[1]
    assert outputs[0][1] != outputs[2][1]
    assert outputs[0][2] != outputs[2][2]


def test_uid_references_stay_consistent(engine: Engine) -> None:
    # Two objects of one study keep their study UID in common, and a reference from one
    # file to another resolves to the other file's new SOP Instance UID.
    image = _read("CT_small.dcm")
    referencing = Dataset()
    referencing.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    referencing.SOPInstanceUID = "1.2.3.4.5.6.7"
    referencing.PatientID = image.PatientID
    referencing.StudyInstanceUID = image.StudyInstanceUID
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = image.SeriesInstanceUID
    series.ReferencedSOPSequence = Sequence([ref])
    evidence = Dataset()
    evidence.StudyInstanceUID = image.StudyInstanceUID
    evidence.ReferencedSeriesSequence = Sequence([series])
    referencing.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    engine.apply(image)
    engine.apply(referencing)
    assert referencing.StudyInstanceUID == image.StudyInstanceUID
    inner = referencing.CurrentRequestedProcedureEvidenceSequence[0]
    assert inner.StudyInstanceUID == image.StudyInstanceUID
    seq = inner.ReferencedSeriesSequence[0]
    assert seq.SeriesInstanceUID == image.SeriesInstanceUID
    assert seq.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == image.SOPInstanceUID
    assert seq.ReferencedSOPSequence[0].ReferencedSOPClassUID == image.SOPClassUID
    assert image.SOPInstanceUID.startswith("2.25.") and len(image.SOPInstanceUID) <= 64


def test_dates_shift_per_patient_and_keep_intervals(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    study, series = ds.StudyDate, ds.SeriesDate
    other = _read("CT_small.dcm")
    other.StudyDate = "20040301"
    engine.apply(ds)
    engine.apply(other)

    def day(text: str) -> dt.date:
        return dt.datetime.strptime(text, "%Y%m%d").date()

    original_gap = day(study) - day(series)
    assert day(ds.StudyDate) - day(ds.SeriesDate) == original_gap
    assert ds.StudyDate != study
    # same patient, other file: the same offset
    assert day(other.StudyDate) - day(ds.StudyDate) == day("20040301") - day(study)
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.StudyTime == "072730"  # whole-day shifts keep the time of day


def test_safe_harbor_keeps_only_years_and_aggregates_age(keyring: Keyring) -> None:
    ds = _read("CT_small.dcm")
    ds.PatientAge = "093Y"
    Engine(load_policy("safe-harbor"), Pseudonymizer(keyring)).apply(ds)
    assert ds.StudyDate == "20040101"
    assert ds.PatientAge == "090Y"
    assert ds.StudyTime == "000000"


def test_basic_profile_removes_dates_and_characteristics(keyring: Keyring) -> None:
    ds = _read("CT_small.dcm")
    Engine(load_policy("basic"), Pseudonymizer(keyring)).apply(ds)
    assert "StudyDate" in ds and not ds.StudyDate  # Type 2: present, zero length
    assert "PatientAge" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert [i.CodeValue for i in ds.DeidentificationMethodCodeSequence] == ["113100"]


def test_research_keeps_what_research_needs(engine: Engine) -> None:
    original = _read("CT_small.dcm")
    ds = _read("CT_small.dcm")
    engine.apply(ds)
    for keyword in (
        "PatientSex",
        "PatientAge",
        "PatientWeight",
        "SliceThickness",
        "KVP",
        "PixelSpacing",
        "ImagePositionPatient",
        "ImageOrientationPatient",
        "Manufacturer",
        "ConvolutionKernel",
        "PixelData",
    ):
        assert ds[keyword].value == original[keyword].value, keyword
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert {"113100", "113108", "113107", "113111", "113105", "113104", "113103"} == codes


def test_free_text_is_cleaned_not_dropped(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    ds.PatientName = "SMITH^JOHN"
    ds.StudyDescription = "CT CHEST SMITH FU"
    ds.ImageComments = "seen by Dr X on 01/19/2004, call 555-123-4567, MRN 1CT1"
    engine.apply(ds)
    assert ds.StudyDescription == "CT CHEST *** FU"
    assert "555" not in ds.ImageComments and "2004" not in ds.ImageComments
    assert "1CT1" not in ds.ImageComments
    assert ds.ImageComments.startswith("seen by Dr X on ***")


def test_private_attributes(keyring: Keyring) -> None:
    ds = _read("CT_small.dcm")
    Engine(load_policy("research"), Pseudonymizer(keyring)).apply(ds)
    # GEMS_ACQU_01 (0019,xx23) Table Speed is in E.3.10-1: kept with its creator
    assert ds[0x00190010].value == "GEMS_ACQU_01"
    assert 0x00191023 in ds
    assert 0x00191002 not in ds  # not in the safe list
    assert 0x00090010 not in ds  # GEMS_IDEN_01: no element kept, so no creator either
    basic = _read("CT_small.dcm")
    Engine(load_policy("basic"), Pseudonymizer(keyring)).apply(basic)
    assert not any(tag.is_private for tag in basic.keys())


def test_private_sequences_and_un(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    block = ds.private_block(0x0041, "ACME SEQ", create=True)
    item = Dataset()
    item.PatientName = "SECRET^PERSON"
    block.add_new(0x01, "SQ", Sequence([item]))
    block.add_new(0x02, "UN", b"SECRET PERSON")
    engine.apply(ds)
    assert "SECRET" not in _all_text(ds)


def test_nested_sequences_deep(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    deepest = Dataset()
    deepest.PersonName = "DEEP^NAME"
    deepest.ReferencedSOPInstanceUID = "1.2.3.999"
    level2 = Dataset()
    level2.ContentSequence = Sequence([deepest])
    level1 = Dataset()
    level1.RequestAttributesSequence = Sequence([level2])
    level1.ReferringPhysicianName = "DOC^TOR"
    ds.ReferencedStudySequence = Sequence([level1])
    engine.apply(ds)
    text = _all_text(ds)
    assert "DEEP" not in text and "DOC^TOR" not in text and "1.2.3.999" not in text


def test_overlays_are_removed_without_a_pixel_engine(engine: Engine) -> None:
    ds = _read("MR_small.dcm")
    ds.add_new(0x60000010, "US", 8)  # Overlay Rows
    ds.add_new(0x60000011, "US", 8)  # Overlay Columns
    ds.add_new(0x60000040, "CS", "G")  # Overlay Type
    ds.add_new(0x60000050, "SS", [1, 1])  # Overlay Origin
    ds.add_new(0x60000100, "US", 1)  # Overlay Bits Allocated
    ds.add_new(0x60000102, "US", 0)  # Overlay Bit Position
    ds.add_new(0x60003000, "OW", b"\xff" * 8)  # Overlay Data (could hold burned-in text)
    engine.apply(ds)
    assert not any(0x6000 <= t >> 16 <= 0x601E for t in ds.keys())


def test_policy_override_and_options(keyring: Keyring, tmp_path) -> None:  # type: ignore[no-untyped-def]
    policy_file = tmp_path / "p.toml"
    policy_file.write_text(
        'extends = "research"\n'
        "[[overrides]]\n"
        'attribute = "StationName"\naction = "keep"\n'
        "[[overrides]]\n"
        'attribute = "(0008,0080)"\naction = "replace"\nvalue = "SITE-A"\n'
    )
    policy = load_policy(policy_file).with_options(add=[Option.RETAIN_UIDS])
    ds = _read("CT_small.dcm")
    original_uid = ds.SOPInstanceUID
    Engine(policy, Pseudonymizer(keyring)).apply(ds)
    assert ds.StationName == "CT01_OC0"
    assert ds.InstitutionName == "SITE-A"
    assert ds.SOPInstanceUID == original_uid


def test_trace_masks_originals(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    outcome = engine.apply(ds, trace=True)
    assert outcome.trace
    rendered = " ".join(f"{t.original} {t.result}" for t in outcome.trace)
    assert "CompressedSamples" not in rendered and "JFK IMAGING" not in rendered
    actions = {t.name: t.action for t in outcome.trace}
    assert actions["InstitutionName"] == "X"
    assert actions["StudyDate"] == "C"


_names = st.text(
    alphabet=st.characters(min_codepoint=65, max_codepoint=90), min_size=3, max_size=12
)


@settings(max_examples=40, deadline=None)
@given(family=_names, given_name=_names, pid=st.from_regex(r"[A-Z0-9]{4,12}", fullmatch=True))
def test_property_no_identifier_survives(family: str, given_name: str, pid: str) -> None:
    ds = _read("CT_small.dcm")
    ds.PatientName = f"{family}^{given_name}"
    ds.PatientID = pid
    ds.StudyDescription = f"CT {family} {pid}"
    ds.OtherPatientNames = f"{given_name}^{family}"
    del ds.PixelData
    Engine(load_policy("research"), Pseudonymizer(Keyring(b"\x07" * 32))).apply(ds)
    assert ds.PatientID.startswith("RG") and ds.PatientName.family_name == "RG"
    ds.PatientID = ds.PatientName = ""  # keyed pseudonyms: random letters, checked above
    after = _all_text(ds).upper()
    for value in (family, given_name, pid):
        # anything still found must have been there by chance before the identifiers were
        # planted (e.g. 'CT' inside a manufacturer name), never more often than before
        assert after.count(value) <= _chance(value), value


def _chance(value: str) -> int:
    """Occurrences of ``value`` in the same file de-identified without planted identifiers
    (so words radguard writes itself, such as 'YES' in Patient Identity Removed, count)."""
    baseline = _read("CT_small.dcm")
    del baseline.PixelData
    Engine(load_policy("research"), Pseudonymizer(Keyring(b"\x07" * 32))).apply(baseline)
    baseline.PatientID = baseline.PatientName = ""
    return _all_text(baseline).upper().count(value)


def test_text_cleaner_formats() -> None:
    cleaner = TextCleaner(["DOE^JANE", "19620315", "A-123456"])
    for text in (
        "Jane Doe",
        "doe, jane",
        "DOE^JANE",
        "15.03.1962",
        "March 15, 1962",
        "1962-03-15",
        "a-123456",
    ):
        assert "***" in cleaner.clean(f"x {text} y"), text
    assert cleaner.clean("T2 FLAIR AX 5mm") == "T2 FLAIR AX 5mm"


# the charset files that are whole objects (chrSQEncoding* are fragments without SOP UIDs)
CHARSET_FILES = [
    p
    for p in sorted((TEST_FILES.parent / "charset_files").glob("chr*.dcm"))
    if "SOPInstanceUID" in pydicom.dcmread(p, stop_before_pixels=True)
]


@pytest.mark.parametrize("path", CHARSET_FILES, ids=lambda p: p.name)
def test_character_sets_names_do_not_survive(path: Path, engine: Engine) -> None:
    ds = pydicom.dcmread(path)
    name = str(ds.get("PatientName", "") or "")
    parts = [p for p in re.split(r"[\\^=\s]+", name) if len(p) >= 2]
    ds.StudyDescription = f"CT {name.split('=')[0]} FU"  # plant the name in free text too
    engine.apply(ds)
    written = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    text = " ".join(str(e.value) for e in written.iterall() if e.VR not in ("OB", "OW", "UN"))
    for part in parts:
        assert part not in text, f"{path.name}: a name component survived"
    assert written.StudyDescription.startswith("CT ***")


def test_file_without_meta_is_written_with_meta(engine: Engine, tmp_path: Path) -> None:
    ds = pydicom.dcmread(pydicom_file("ExplVR_LitEndNoMeta.dcm"), force=True)
    engine.apply(ds)
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    again = pydicom.dcmread(tmp_path / "x.dcm")
    assert again.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert again.file_meta.ImplementationClassUID.startswith("2.25.")


def test_multiframe_file(engine: Engine, tmp_path: Path) -> None:
    import numpy as np
    from pydicom.uid import ExplicitVRLittleEndian

    ds = _read("MR_small.dcm")
    frames = 64
    pixels = np.arange(frames * 128 * 128, dtype=np.uint16).reshape(frames, 128, 128)
    ds.Rows = ds.Columns = 128
    ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    engine.apply(ds)
    ds.save_as(tmp_path / "mf.dcm", enforce_file_format=True)
    again = pydicom.dcmread(tmp_path / "mf.dcm")
    assert again.PixelData == pixels.tobytes()


def test_trace_tells_cleaned_from_unchanged(engine: Engine) -> None:
    ds = _read("CT_small.dcm")
    ds.PatientName = "SMITH^JOHN"
    ds.StudyDescription = "CT CHEST SMITH FU"
    ds.ImageComments = "portal venous phase"
    ds.ConvolutionKernel = "SMITH KERNEL"  # not in E.1-1: kept, but scrubbed of the name
    outcome = engine.apply(ds, trace=True)
    results = {t.name: t.result for t in outcome.trace or []}
    assert results["StudyDescription"] == "(cleaned)"
    assert results["ImageComments"].startswith("(unchanged")
    assert results["ConvolutionKernel"] == "(kept, identifiers of this dataset removed)"
    assert ds.ConvolutionKernel == "*** KERNEL"
