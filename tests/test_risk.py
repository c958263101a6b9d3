"""Re-identification risk: hand-computed figures, the first-study rule, generalizations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import radguard.risk as risk
from radguard.risk import (
    MISSING,
    Generalization,
    Method,
    Record,
    RiskInputError,
    Unit,
    assess,
    collect_records,
    plan,
    scan_folder,
    suggest,
)
from radguard.risk.measures import zayatz_unique_fraction

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.22"
QIS = ("PatientSex", "PatientAge")
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _records(rows: list[tuple[str, str, str]]) -> list[Record]:
    return [Record(rid, {"PatientSex": sex, "PatientAge": age}) for rid, sex, age in rows]


# Classes: F/045Y x3, M/050Y x2, M/062Y x1 -> n = 6, K = 3, sizes 3, 2, 1.
SIX = _records(
    [
        ("RG1", "F", "045Y"),
        ("RG2", "F", "045Y"),
        ("RG3", "F", "045Y"),
        ("RG4", "M", "050Y"),
        ("RG5", "M", "050Y"),
        ("RG6", "M", "062Y"),
    ]
)


def test_every_exported_name_imports() -> None:
    for name in risk.__all__:
        assert hasattr(risk, name), name


def test_hand_computed_prosecutor_figures() -> None:
    report = assess(SIX, QIS)
    assert report.k_anonymity == 1
    assert report.figures.n_classes == 3
    assert report.class_sizes == {1: 1, 2: 1, 3: 1}
    assert report.unique_fraction == pytest.approx(1 / 6)
    assert report.prosecutor.highest == pytest.approx(1.0)
    assert report.prosecutor.average == pytest.approx(3 / 6)
    assert report.prosecutor.records_at_risk == pytest.approx(1.0)  # 1/3, 1/2, 1 all > 0.2
    assert assess(SIX, QIS, threshold=0.4).prosecutor.records_at_risk == pytest.approx(3 / 6)
    assert report.journalist is None and report.marketer is None
    assert [r.record_id for r in report.highest_risk][:3] == ["RG6", "RG4", "RG5"]
    assert report.highest_risk[0].values == {"PatientSex": "M", "PatientAge": "062Y"}


def test_hand_computed_journalist_and_marketer_with_population() -> None:
    report = assess(SIX, QIS, population=60)  # pi = 0.1: F = 30, 20, 10
    assert report.sampling_fraction == pytest.approx(0.1)
    assert report.journalist is not None
    assert report.journalist.highest == pytest.approx(1 / 10)
    assert report.marketer == pytest.approx((3 / 30 + 2 / 20 + 1 / 10) / 6)  # 0.05
    assert report.journalist.average == pytest.approx(max(3 / 60, 0.05))
    assert report.journalist.records_at_risk == 0.0
    same = assess(SIX, QIS, sampling_fraction=0.1)
    assert same.marketer == pytest.approx(report.marketer)
    assert same.population == 60


def test_population_equal_to_sample_gives_prosecutor_risk() -> None:
    report = assess(SIX, QIS, population=6)
    assert report.journalist is not None
    assert report.journalist.highest == pytest.approx(report.prosecutor.highest)
    assert report.marketer == pytest.approx(report.prosecutor.average)
    assert report.to_json()["population_unique_fraction"] == pytest.approx(1 / 6)


def test_zayatz_against_the_hypergeometric_formula() -> None:
    n, big_n = 6, 60

    def one(m: int) -> float:  # P(exactly one of m drawn), drawing n of N
        return m * math.comb(big_n - m, n - 1) / math.comb(big_n, n)

    conditional = one(1) / (one(1) + one(2) + one(3))  # (u_i / K) are all 1/3
    expected = 1 * conditional / 0.1 / big_n
    sizes = np.array([3, 2, 1], dtype=np.int64)
    assert zayatz_unique_fraction(sizes, 0.1) == pytest.approx(expected)


def test_missing_is_a_value_of_its_own() -> None:
    records = [Record("A", {"PatientSex": "F"}), Record("B", {}), Record("C", {"PatientSex": ""})]
    report = assess(records, ("PatientSex",))
    assert report.class_sizes == {1: 1, 2: 1}
    assert records[1].value("PatientSex") == MISSING


def test_json_keys_and_serializable() -> None:
    data = assess(SIX, QIS, population=60).to_json()
    for key in (
        "k_anonymity",
        "unique_fraction",
        "prosecutor_risk",
        "average_prosecutor_risk",
        "journalist_risk",
        "marketer_risk",
        "quasi_identifiers",
        "unit",
        "records",
        "highest_risk",
    ):
        assert key in data, key
    assert data["unit"] == "patient" and data["records"] == 6
    assert data["quasi_identifiers"] == list(QIS)
    json.dumps(data)
    without = assess(SIX, QIS).to_json()
    assert without["journalist_risk"] is None and without["marketer_risk"] is None


def test_release_gate() -> None:
    report = assess(SIX, QIS)
    assert report.exceeds(0.5)
    five = _records([(f"RG{i}", "F", "045Y") for i in range(5)])
    assert not assess(five, QIS).exceeds(0.2)  # 1/5 is not above 0.2


def test_bad_input_is_refused() -> None:
    with pytest.raises(RiskInputError, match="NotAKeyword"):
        assess(SIX, ("NotAKeyword",))
    with pytest.raises(RiskInputError, match="smaller"):
        assess(SIX, QIS, population=3)
    with pytest.raises(RiskInputError, match="no records"):
        assess([], QIS)
    with pytest.raises(RiskInputError, match="disagree"):
        assess(SIX, QIS, population=60, sampling_fraction=0.5)


@pytest.mark.parametrize(
    ("generalization", "value", "expected"),
    [
        (Generalization("PatientAge", Method.AGE_BANDS, 5), "047Y", "45-49"),
        (Generalization("PatientAge", Method.AGE_BANDS, 10), "047Y", "40-49"),
        (Generalization("PatientAge", Method.AGE_BANDS, 20), "047Y", "40-59"),
        (Generalization("PatientAge", Method.AGE_BANDS, 20), "085Y", "80-89"),
        (Generalization("PatientAge", Method.AGE_BANDS, 5), "090Y", "90+"),
        (Generalization("PatientAge", Method.AGE_BANDS, 5), "006M", "0-4"),
        (Generalization("PatientAge", Method.AGE_BANDS, 5), MISSING, MISSING),
        (Generalization("StudyDate", Method.MONTH), "20230415", "202304"),
        (Generalization("StudyDate", Method.YEAR), "20230415", "2023"),
        (Generalization("PatientWeight", Method.BANDS, 10), "72.5", "[70, 80)"),
        (Generalization("Modality", Method.DROP), "CT + PT", "*"),
        (Generalization("PatientAge", Method.AGE_BANDS, 10), "041Y + 043Y", "40-49"),
    ],
)
def test_generalized_values(generalization: Generalization, value: str, expected: str) -> None:
    assert generalization.apply(value) == expected


def _spread(n: int) -> list[Record]:
    """n patients, each unique on exact age and date, sharing sex and site."""
    return [
        Record(
            f"RG{i:03d}",
            {
                "PatientSex": "FM"[i % 2],
                "PatientAge": f"{30 + i:03d}Y",
                "StudyDate": f"2023{1 + i % 2:02d}{1 + i:02d}",
                "InstitutionName": "North" if i > 1 else f"Rare Clinic {i}",
            },
        )
        for i in range(n)
    ]


def test_suggestions_lower_the_risk_and_are_sorted() -> None:
    records = _spread(20)
    qis = ("PatientSex", "PatientAge", "StudyDate", "InstitutionName")
    before = assess(records, qis)
    found = suggest(records, qis, before)
    assert found
    keys = [(s.prosecutor_risk, s.unique_fraction) for s in found]
    assert keys == sorted(keys)
    for s in found:
        assert s.prosecutor_risk <= before.prosecutor.highest
        assert s.unique_fraction <= before.unique_fraction
    descriptions = {s.description for s in found}
    assert "PatientAge in 10-year bands (90 and over as one)" in descriptions
    assert "StudyDate coarsened to year (YYYY)" in descriptions
    assert "InstitutionName: values on fewer than 5 records become (other)" in descriptions
    assert "drop PatientSex" in descriptions
    json.dumps([s.to_json() for s in found])


def test_plan_reaches_the_target() -> None:
    records = _spread(20)
    qis = ("PatientSex", "PatientAge", "StudyDate", "InstitutionName")
    combined = plan(records, qis, target=0.2)
    assert combined.meets_target
    assert combined.prosecutor_risk <= 0.2
    assert combined.after.k_anonymity >= 5
    assert combined.generalizations
    impossible = plan(records[:3], qis, target=0.2)  # 3 records can never be 5-anonymous
    assert not impossible.meets_target
    already = plan(_records([(f"RG{i}", "F", "045Y") for i in range(5)]), QIS)
    assert already.meets_target and not already.generalizations


def test_plan_may_withhold_a_few_records() -> None:
    # 12 women of 45, one man of 80: the man is unique whatever the age bands.
    rows = [(f"RG{i:02d}", "F", "045Y") for i in range(12)] + [("RG99", "M", "080Y")]
    records = _records(rows)
    strict = plan(records, QIS, target=0.2)
    assert strict.meets_target and strict.withheld == 0
    assert {g.method for g in strict.generalizations} == {Method.DROP}
    lenient = plan(records, QIS, target=0.2, max_withheld=0.1)
    assert lenient.meets_target and lenient.withheld == 1
    assert not lenient.generalizations  # withholding RG99 is enough
    assert lenient.after.n_records == 12 and lenient.after.k_anonymity == 12
    assert "withhold 1 record in classes smaller than 5" in lenient.description


# --- headers on disk ------------------------------------------------------------------------


def _write(
    path: Path,
    *,
    patient: str,
    study: str,
    series: str,
    date: str,
    age: str,
    modality: str = "CT",
    rows: int | None = 512,
    time: str = "120000",
    sop_class: str = CT_IMAGE_STORAGE,
) -> None:
    """A headers-only DICOM file (no pixel data) with the attributes risk reads."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientSex = "F" if patient[-1] in "02468" else "M"
    ds.PatientAge = age
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyDate = date
    ds.StudyTime = time
    ds.Modality = modality
    ds.Manufacturer = "ACME"
    if rows is not None:
        ds.Rows = rows
        ds.Columns = rows
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def test_first_study_rule(tmp_path: Path) -> None:
    later, earlier = "1.2.826.0.1.3680043.2.2", "1.2.826.0.1.3680043.2.9"
    # The later study is found first on disk; the earlier one (by StudyDate) must win.
    _write(tmp_path / "a" / "1.dcm", patient="RG1", study=later, series="1.9.1", date="20210301",
           age="041Y")  # fmt: skip
    _write(tmp_path / "b" / "1.dcm", patient="RG1", study=earlier, series="1.9.2",
           date="20200301", age="040Y")  # fmt: skip
    # Same date: the earlier time wins, then the smaller UID.
    _write(tmp_path / "c" / "1.dcm", patient="RG2", study="1.9.5", series="1.9.3",
           date="20200301", time="150000", age="052Y")  # fmt: skip
    _write(tmp_path / "d" / "1.dcm", patient="RG2", study="1.9.6", series="1.9.4",
           date="20200301", time="090000", age="051Y")  # fmt: skip
    records = {r.record_id: r for r in collect_records(tmp_path, QIS)}
    assert records["RG1"].values["PatientAge"] == "040Y"
    assert records["RG1"].files == 1
    assert records["RG2"].values["PatientAge"] == "051Y"
    by_study = collect_records(tmp_path, QIS, unit="study")
    assert len(by_study) == 4 and {r.unit for r in by_study} == {Unit.STUDY}


def test_values_of_a_study_combine(tmp_path: Path) -> None:
    study = "1.2.3.4"
    _write(tmp_path / "ct.dcm", patient="RG1", study=study, series="1.2.3.4.1",
           date="20200101", age="040Y")  # fmt: skip
    _write(tmp_path / "sr.dcm", patient="RG1", study=study, series="1.2.3.4.2",
           date="20200101", age="040Y", modality="SR", rows=None, sop_class=SR_STORAGE)  # fmt: skip
    (record,) = collect_records(tmp_path, ("Modality", "Rows", "BodyPartExamined"))
    assert record.values == {"Modality": "CT + SR", "Rows": "512", "BodyPartExamined": MISSING}
    assert record.files == 2
    assert len(collect_records(tmp_path, ("Modality",), unit=Unit.SERIES)) == 2


def test_integration_folder_of_headers(tmp_path: Path) -> None:
    ages = ["045Y", "045Y", "045Y", "052Y", "052Y", "067Y", "071Y", "071Y", "033Y", "033Y"]
    for i, age in enumerate(ages):
        study, series = f"1.2.840.99.{i}", f"1.2.840.99.{i}.1"
        for j in range(2 if i % 3 == 0 else 1):  # some series with two images
            _write(tmp_path / f"p{i}" / f"{j}.dcm", patient=f"RG{i:02d}", study=study,
                   series=series, date="20200115" if i < 5 else "20210115", age=age)  # fmt: skip
    (tmp_path / "notes.txt").write_text("not DICOM")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "DICOMDIR").write_bytes((TEST_FILES / "dicomdirtests" / "DICOMDIR").read_bytes())
    scan = scan_folder(tmp_path)
    assert len(scan.records) == 10
    assert scan.files_read == 14
    assert {p.name for p in scan.skipped} == {"notes.txt", "empty.dcm", "DICOMDIR"}
    assert all(r.record_id.startswith("RG") for r in scan.records)

    report = assess(scan.records, risk.DEFAULT_QIS, population=1000)
    # Sex (id parity), age and date vary, the rest is constant: RG00 and RG02 (F, 045Y,
    # 20200115) share a class, the 8 others are unique.
    assert report.n_records == 10
    assert report.class_sizes == {1: 8, 2: 1}
    assert report.k_anonymity == 1
    assert report.unique_fraction == pytest.approx(8 / 10)
    assert report.prosecutor.highest == 1.0
    assert report.prosecutor.average == pytest.approx(9 / 10)
    assert report.marketer == pytest.approx(0.01 * 9 / 10)
    data = report.to_json()
    assert data["quasi_identifiers"] == list(risk.DEFAULT_QIS)
    assert all(item["id"].startswith("RG") for item in data["highest_risk"])
    combined = plan(scan.records, risk.DEFAULT_QIS, report, target=0.5)
    assert combined.meets_target and combined.prosecutor_risk <= 0.5


def test_in_memory_datasets_follow_the_same_rules() -> None:
    headers = []
    for study, date, age in (("1.9.2", "20210301", "041Y"), ("1.9.1", "20200301", "040Y")):
        ds = Dataset()
        ds.PatientID, ds.StudyInstanceUID, ds.StudyDate, ds.PatientAge = "RG1", study, date, age
        headers.append(risk.header_of(ds, QIS))
    (record,) = risk.records_from_headers(headers, QIS)
    assert record.values == {"PatientSex": MISSING, "PatientAge": "040Y"}


def test_pydicom_sample_file_is_read(tmp_path: Path) -> None:
    source = TEST_FILES / "CT_small.dcm"
    ds = pydicom.dcmread(source)
    ds.PatientID = "RGPSEUDO"
    ds.save_as(tmp_path / "ct.dcm")
    (record,) = collect_records(tmp_path, ("Modality", "Rows", "Columns", "PatientSex"))
    assert record.record_id == "RGPSEUDO"
    assert record.values["Modality"] == "CT"
    assert record.values["Rows"] == str(ds.Rows)
