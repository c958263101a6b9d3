"""The phantom generator: determinism, readability, geometry, an honest answer key, and the
engine run over it (nothing identifying left outside the pixels, nothing research needs lost).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import unpack_bits

import radguard.phantom as phantom
from radguard.deid import Keyring
from radguard.phantom import AnswerKey, Category, Expect, default_key_path, generate, values_at
from radguard.phantom.burn import Font, text_mask
from radguard.pipeline import RunOptions, run_deid, run_dir_for
from radguard.pixels.graphics import read_overlay
from radguard.settings import load_policy

from conftest import require_tool

SEED = 11
# Categories that must never survive anywhere outside the pixel data of a research release.
IDENTITY = {
    Category.PATIENT_NAME,
    Category.PATIENT_ID,
    Category.ADDRESS,
    Category.PHONE,
    Category.ACCESSION,
    Category.STAFF_NAME,
    Category.INSTITUTION,
}


@dataclass(frozen=True)
class Phantom:
    out: Path
    key: AnswerKey


@dataclass(frozen=True)
class Release:
    out: Path
    outputs: dict[str, str]  # phantom file -> released file, from the manifest


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Phantom:
    """A 2-patient phantom, made with every pydicom warning turned into an error."""
    out = tmp_path_factory.mktemp("phantom") / "studies"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key = generate(out, 2, SEED)
    return Phantom(out, key)


@pytest.fixture(scope="module")
def datasets(made: Phantom) -> dict[str, Dataset]:
    return {f.file: pydicom.dcmread(made.out / f.file) for f in made.key.files}


@pytest.fixture(scope="module")
def released(made: Phantom, tmp_path_factory: pytest.TempPathFactory) -> Release:
    """The phantom de-identified by the pipeline under the research policy."""
    out = tmp_path_factory.mktemp("released") / "out"
    summary = run_deid(
        RunOptions(made.out, out, workers=1), load_policy("research"), Keyring(b"\x01" * 32)
    )
    lines = [
        json.loads(line) for line in (run_dir_for(out) / "manifest.jsonl").read_text().splitlines()
    ]
    not_released = {e["input"]: e["reasons"] for e in lines if e["status"] != "released"}
    # the pixel stage removes burned-in text, so every phantom file leaves (flagged ones too)
    assert not not_released, not_released
    assert summary.counts["released"] == len(made.key.files), summary.counts
    flagged = [f.file for f in made.key.files if _burned_in_flag(made.out / f.file)]
    assert flagged, "the phantom plants Burned In Annotation YES files"
    for file in flagged:
        released_ds = pydicom.dcmread(out / _output_of(lines, file), stop_before_pixels=True)
        assert released_ds.BurnedInAnnotation == "NO", file
    outputs = {e["input"]: e["output"] for e in lines if e["status"] == "released"}
    return Release(out, outputs)


def _output_of(lines: list[dict[str, str]], file: str) -> str:
    return next(e["output"] for e in lines if e["input"] == file)


def _burned_in_flag(path: Path) -> bool:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.get("BurnedInAnnotation", "") or "").upper() == "YES"


def test_public_api_names() -> None:
    for name in phantom.__all__:
        assert getattr(phantom, name) is not None, name


def test_answer_key_beside_not_inside(made: Phantom) -> None:
    key_path = default_key_path(made.out)
    assert key_path == made.out.parent / "studies.answer.json"
    assert key_path.is_file()
    assert made.out not in key_path.resolve().parents
    assert not list(made.out.rglob("*.json"))
    assert AnswerKey.load(key_path).to_json() == made.key.to_json()


def test_answer_key_inside_output_refused(tmp_path: Path) -> None:
    out = tmp_path / "studies"
    with pytest.raises(ValueError, match="must not be inside"):
        generate(out, 1, SEED, answer_key=out / "key.json")
    assert not out.exists()


def test_non_empty_output_refused(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "old.dcm").write_bytes(b"")
    with pytest.raises(FileExistsError):
        generate(tmp_path / "studies", 1, SEED)


def _only_first_patient(key: AnswerKey) -> AnswerKey:
    files = [f for f in key.files if f.patient == 0]
    names = {f.file for f in files}
    return AnswerKey(
        seed=key.seed,
        policy=key.policy,
        patients=key.patients[:1],
        files=files,
        planted=[p for p in key.planted if p.file in names],
        burned_in=[b for b in key.burned_in if b.file in names],
        transfer_syntaxes=dict(sorted(Counter(f.transfer_syntax_uid for f in files).items())),
        skipped_transfer_syntaxes=key.skipped_transfer_syntaxes,
        fonts=key.fonts,
    )


def test_deterministic(made: Phantom, tmp_path: Path) -> None:
    """Same seed: the same bytes and key (a patient never depends on how many follow him)."""
    again = generate(tmp_path / "same", 1, SEED, workers=2)  # the fixture used one process
    assert again.to_json() == _only_first_patient(made.key).to_json()
    assert (tmp_path / "same.answer.json").read_text() == again.to_json()
    for record in again.files:
        assert (tmp_path / "same" / record.file).read_bytes() == (
            made.out / record.file
        ).read_bytes(), record.file
    other = generate(tmp_path / "other", 1, SEED + 1)
    assert other.patients[0].patient_id != again.patients[0].patient_id
    assert not {f.sop_instance_uid for f in other.files} & {f.sop_instance_uid for f in again.files}
    assert not _digests(tmp_path / "other") & _digests(tmp_path / "same")


def _digests(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_contents(made: Phantom, datasets: dict[str, Dataset]) -> None:
    """Every file reads and decodes; the key lists exactly the files written; studies vary."""
    on_disk = {str(p.relative_to(made.out)) for p in made.out.rglob("*") if p.is_file()}
    assert on_disk == {f.file for f in made.key.files}
    for record in made.key.files:
        ds = datasets[record.file]
        assert str(ds.SOPInstanceUID) == record.sop_instance_uid
        assert str(ds.file_meta.TransferSyntaxUID) == record.transfer_syntax_uid
        if "PixelData" in ds:
            pixels = ds.pixel_array
            assert pixels.shape[:2] == (ds.Rows, ds.Columns) or pixels.shape[1:3] == (
                ds.Rows,
                ds.Columns,
            )
            assert int(ds.get("NumberOfFrames", 1)) == record.number_of_frames
    modalities = Counter(f.modality for f in made.key.files)
    assert set(modalities) >= {"CT", "MR", "DX", "CR", "US", "SR", "RTSTRUCT", "PR"}
    classes = {f.sop_class_uid for f in made.key.files}
    assert "1.2.840.10008.5.1.4.1.1.7" in classes  # secondary capture
    assert "1.2.840.10008.5.1.4.1.1.3.1" in classes  # ultrasound multi-frame
    syntaxes = set(made.key.transfer_syntaxes)
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"} <= syntaxes
    assert "1.2.840.10008.1.2.1.99" in syntaxes  # deflated
    for uid in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):  # JPEG-LS, JPEG 2000
        assert (uid in syntaxes) != (uid in made.key.skipped_transfer_syntaxes)


def test_studies_and_intervals(made: Phantom, datasets: dict[str, Dataset]) -> None:
    for patient in made.key.patients:
        assert 2 <= len(patient.studies) <= 3
        assert len(patient.intervals_days) == len(patient.studies) - 1
        days = [s.day for s in patient.studies]
        assert days == [sum(patient.intervals_days[:i]) for i in range(len(days))]
        dates = [dt.datetime.strptime(s.study_date, "%Y%m%d").date() for s in patient.studies]
        assert [(d - dates[0]).days for d in dates] == days
        for study in patient.studies:
            files = [f for f in made.key.files if f.study_instance_uid == study.study_instance_uid]
            assert len({f.series_instance_uid for f in files}) >= 2
            for record in files:
                ds = datasets[record.file]
                assert ds.StudyDate == study.study_date
                assert ds.PatientID == patient.patient_id
                assert record.file.startswith(study.folder + "/")


def test_geometry(made: Phantom, datasets: dict[str, Dataset]) -> None:
    """Slices step along the normal, one Frame of Reference per study, numbers in order."""
    series: defaultdict[str, list[Dataset]] = defaultdict(list)
    for record in made.key.files:
        if record.modality in ("CT", "MR") and "ImagePositionPatient" in datasets[record.file]:
            series[record.series_instance_uid].append(datasets[record.file])
    frames: defaultdict[str, set[str]] = defaultdict(set)
    for slices in series.values():
        slices.sort(key=lambda ds: int(ds.InstanceNumber))
        assert [int(ds.InstanceNumber) for ds in slices] == list(range(1, len(slices) + 1))
        orientation = np.array(slices[0].ImageOrientationPatient, float)
        row, col = orientation[:3], orientation[3:]
        assert np.isclose(row @ row, 1) and np.isclose(col @ col, 1) and np.isclose(row @ col, 0)
        normal = np.cross(row, col)
        positions = np.array([ds.ImagePositionPatient for ds in slices], float)
        steps = np.diff(positions, axis=0)
        if len(slices) > 1:
            along = steps @ normal
            assert np.allclose(steps, np.outer(along, normal), atol=1e-3)
            assert np.allclose(along, along[0], atol=1e-3) and along[0] > 0
            expected = float(slices[0].get("SpacingBetweenSlices", slices[0].SliceThickness))
            assert np.isclose(along[0], expected, atol=1e-3)
        for ds in slices:
            assert list(ds.ImageOrientationPatient) == list(slices[0].ImageOrientationPatient)
            assert len(ds.PixelSpacing) == 2 and float(ds.SliceThickness) > 0
    for record in made.key.files:
        if record.frame_of_reference_uid:
            frames[record.study_instance_uid].add(record.frame_of_reference_uid)
    assert all(len(uids) == 1 for uids in frames.values())
    assert len(series) >= 5 * len(made.key.patients)


def test_pixels_are_anatomy(made: Phantom, datasets: dict[str, Dataset]) -> None:
    """CT in HU with air, soft tissue and bone; the head volume has a face (a nose in front)."""
    chest = [f for f in made.key.files if "/002_CT/" in f.file or "/003_CT/" in f.file]
    for record in chest:
        ds = datasets[record.file]
        assert ds.RescaleIntercept == -1024 and ds.BitsStored == 12
        hu = ds.pixel_array.astype(float) + float(ds.RescaleIntercept)
        assert hu[0, 0] < -900 and hu.max() > 500  # air outside, bone inside
        assert -100 < np.median(hu[28:36, 28:36]) < 150  # mediastinum
    head = [f for f in made.key.files if f.patient == 0 and "/004_CT/" in f.file]
    volume = np.stack([datasets[f.file].pixel_array for f in head]).astype(float) - 1024
    assert volume.shape == (48, 64, 64)
    tissue = volume > -300  # (slice, row: anterior to posterior, column: right to left)
    front = [int(np.flatnonzero(s.any(axis=1))[0]) if s.any() else 64 for s in tissue]
    nose_slice = int(np.argmin(front))
    forehead = front[nose_slice + 8]  # 40 mm higher: brow and cranium
    assert forehead - front[nose_slice] >= 3  # the nose stands out at least ~10 mm
    columns = np.flatnonzero(tissue[nose_slice, front[nose_slice]])
    assert abs(columns.mean() - 31.5) < 4  # on the midline


def _pixels_of(ds: Dataset, source: str, frame: int) -> np.ndarray:
    if source.startswith("(60"):
        group = int(source[1:5], 16) << 16
        rows, cols = int(ds[group | 0x0010].value), int(ds[group | 0x0011].value)
        bits: np.ndarray = unpack_bits(ds[group | 0x3000].value)
        return bits[: rows * cols].reshape(rows, cols)
    pixels: np.ndarray = ds.pixel_array
    return pixels[frame] if int(ds.get("NumberOfFrames", 1)) > 1 else pixels


def test_planted_values_are_where_the_key_says(made: Phantom, datasets: dict[str, Dataset]) -> None:
    burned = defaultdict(set)
    for box in made.key.burned_in:
        burned[box.file].add(box.text)
    missing = []
    values: dict[tuple[str, str], str] = {}
    for entry in made.key.planted:
        if entry.path == "filename":
            found = entry.value in entry.file
        elif entry.category is Category.BURNED_IN:
            found = entry.value in burned[entry.file]
        else:
            where = (entry.file, entry.path)
            if where not in values:
                values[where] = "\n".join(values_at(datasets[entry.file], entry.path)).lower()
            found = entry.value.lower() in values[where]
        if not found:
            missing.append(entry)
    assert not missing, missing[:5]
    categories = {p.category for p in made.key.planted}
    assert categories == set(Category)
    assert {p.expect for p in made.key.planted} == set(Expect)


def test_burned_in_text_is_in_the_pixels(made: Phantom, datasets: dict[str, Dataset]) -> None:
    """Every pixel under the glyphs of each recorded box has the recorded ink."""
    assert {b.source for b in made.key.burned_in} == {"(7FE0,0010)", "(6000,3000)"}
    assert len({b.font for b in made.key.burned_in}) >= 2
    for box in made.key.burned_in:
        ds = datasets[box.file]
        assert ds.BurnedInAnnotation == "YES"
        image = _pixels_of(ds, box.source, box.frame)
        mask = text_mask(box.text, Font(box.font, box.size))
        assert mask.shape == (box.h, box.w) and mask.any()
        region = image[box.y : box.y + box.h, box.x : box.x + box.w]
        ink = box.ink if image.ndim == 3 else box.ink[0]
        assert np.all(region[mask] == ink), (box.file, box.text)


def test_references_resolve(made: Phantom, datasets: dict[str, Dataset]) -> None:
    by_uid = {f.sop_instance_uid: f for f in made.key.files}
    kinds = set()
    for record in made.key.files:
        for ref in record.references:
            target = by_uid[ref.sop_instance_uid]
            assert (target.sop_class_uid, target.series_instance_uid) == (
                ref.sop_class_uid,
                ref.series_instance_uid,
            )
            assert target.study_instance_uid == record.study_instance_uid
            path = ref.path + "/(0008,1155)"
            assert ref.sop_instance_uid in values_at(datasets[record.file], path)
            kinds.add(record.modality)
        if record.references:
            assert len({r.sop_instance_uid for r in record.references}) > 1
    assert kinds == {"SR", "RTSTRUCT", "PR"}


def test_release_leaves_no_identity_outside_pixels(made: Phantom, released: Release) -> None:
    """Research release: no name part, ID, address, phone, accession, staff or institution
    of any patient is left in the released bytes outside PixelData, nor in the file names."""
    needles: set[str] = set()
    for entry in made.key.planted:
        if entry.expect is Expect.REMOVE and entry.category in IDENTITY:
            if entry.category in (Category.PATIENT_NAME, Category.STAFF_NAME):
                needles.update(c.lower() for c in entry.value.split("^") if len(c) >= 3)
            else:
                needles.add(entry.value.lower())
    assert len(needles) > 40
    sample = made.out / made.key.files[0].file  # the search finds them where they are
    assert sum(n in sample.read_bytes().decode("latin-1").lower() for n in needles) > 10
    leaks = []
    for name in released.outputs.values():
        path = released.out / name
        with path.open("rb") as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
            header_end = handle.tell()
        data = path.read_bytes()
        text = data[:header_end].decode("latin-1").lower() + "\n" + name.lower()
        assert "PixelData" not in ds
        leaks += [(name, n) for n in needles if n in text]
    assert not leaks, leaks[:10]


def test_release_leaves_no_burned_in_text(made: Phantom, released: Release) -> None:
    """No released file shows a planted identifier in its pixels (the pixel stage redacted
    every identifying box, in files flagged Burned In Annotation YES and the others)."""
    identifying = {(p.file, p.value) for p in made.key.planted if p.category is Category.BURNED_IN}
    survivors = []
    for box in made.key.burned_in:
        if (box.file, box.text) not in identifying:
            continue  # e.g. the dose table of a dose screen
        assert box.file in released.outputs, box.file
        ds = pydicom.dcmread(released.out / released.outputs[box.file])
        if box.source.startswith("(60"):
            group = int(box.source[1:5], 16)
            if not any(tag >> 16 == group for tag in ds.keys()):
                continue  # the overlay was removed whole
            image = read_overlay(ds, group).astype(np.uint8)[box.frame]  # cleaned and kept
        else:
            image = _pixels_of(ds, box.source, box.frame)
        region = image[box.y : box.y + box.h, box.x : box.x + box.w]
        mask = text_mask(box.text, Font(box.font, box.size))
        if np.all(region[mask] == (box.ink if image.ndim == 3 else box.ink[0])):
            survivors.append((box.file, box.text))
    assert not survivors, survivors[:5]


def test_release_keeps_what_research_needs(made: Phantom, released: Release) -> None:
    """Research release: patient characteristics, geometry, acquisition parameters, clinical
    words and safe private attributes survive at their paths."""
    cache: dict[str, Dataset] = {}
    values: dict[tuple[str, str], str] = {}
    lost = []
    for entry in made.key.planted:
        if entry.expect is not Expect.KEEP:
            continue
        name = released.outputs[entry.file]
        if name not in cache:
            cache[name] = pydicom.dcmread(released.out / name, stop_before_pixels=True)
        where = (name, entry.path)
        if where not in values:
            values[where] = "\n".join(values_at(cache[name], entry.path)).lower()
        if entry.value.lower() not in values[where]:
            lost.append(entry)
    assert not lost, lost[:5]


@pytest.mark.integration
def test_objects_validate(made: Phantom) -> None:
    """dciodvfy finds no error in one file of each SOP class (it cannot read deflate)."""
    tool = require_tool("dciodvfy")
    seen: set[str] = set()
    for record in made.key.files:
        if record.sop_class_uid in seen or record.transfer_syntax_uid.endswith(".99"):
            continue
        seen.add(record.sop_class_uid)
        result = subprocess.run(
            [tool, str(made.out / record.file)], capture_output=True, text=True, timeout=60
        )
        errors = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if line.startswith("Error")
        ]
        assert not errors, (record.file, errors)
    assert len(seen) >= 9
