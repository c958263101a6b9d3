"""Clean Graphics (PS3.15 E.3.3): overlays read with real OCR and cleaned, text objects judged."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from radguard.cli import main
from radguard.deid import Engine, Keyring, Pseudonymizer
from radguard.phantom.answer import Planter
from radguard.phantom.burn import Box, Font, burn, text_mask
from radguard.phantom.headers import StudyInfo, add_overlay
from radguard.phantom.identity import make_patient, make_site
from radguard.pipeline import RunOptions, run_deid
from radguard.pixels.classify import header_identifiers
from radguard.pixels.engines import Box as EngineBox
from radguard.pixels.engines import EngineName, Image, Line, get_engine
from radguard.pixels.graphics import (
    GraphicsCleaner,
    clean_annotations,
    clean_overlays,
    read_overlay,
    write_overlay,
)
from radguard.settings import load_policy

from conftest import pydicom_file

RESEARCH = load_policy("research")  # selects clean-graphics
BASIC = load_policy("basic")  # no options: overlays removed
CLINICAL = "LIVER TRV"


@pytest.fixture(scope="module")
def cleaner() -> GraphicsCleaner:
    return GraphicsCleaner(RESEARCH.pixels, get_engine(RESEARCH.pixels.engine.value))


def _phantom_ct(seed: int = 1) -> tuple[Dataset, list[Box], Box]:
    """CT_small with the phantom's patient and its overlay 6000 (name and ID burned in), plus
    a clinical label written into the same overlay."""
    rng = np.random.default_rng(seed)
    patient = make_patient(rng, seed)
    study = StudyInfo(
        seed, patient, make_site(rng, 0), 0, "2.25.11", "2.25.12", dt.date(2021, 3, 4),
        "101010", "ACC7654321", "S54321", "CT CHEST", "CHEST", "cough",
    )  # fmt: skip
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PatientName = patient.name.pn
    ds.PatientID = patient.patient_id
    fonts = [Font("pil-aileron", 11), Font("DejaVuSans.ttf", 12)]
    boxes = add_overlay(ds, study, Planter(), fonts)
    planes = read_overlay(ds, 0x6000)
    clinical = burn(planes[0], CLINICAL, Font("DejaVuSans.ttf", 12), 6, 6, (1,))
    write_overlay(ds, 0x6000, planes)
    return ds, [Box(b.x, b.y, b.w, b.h, b.text, b.font, b.ink) for b in boxes], clinical


def _glyphs_left(planes: np.ndarray, box: Box) -> int:
    """Ink pixels of ``box``'s glyphs still set in the released plane."""
    region = planes[0, box.y : box.y + box.h, box.x : box.x + box.w]
    return int(region[text_mask(box.text, box.font)].sum())


def _gsps(ds_patient: Dataset) -> Dataset:
    """A presentation state with two text objects: the patient's name, and "R"."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    ds.SOPInstanceUID = "2.25.99001"
    ds.StudyInstanceUID = "2.25.99002"
    ds.SeriesInstanceUID = "2.25.99003"
    ds.Modality = "PR"
    ds.PatientName = ds_patient.PatientName
    ds.PatientID = ds_patient.PatientID
    ds.ContentLabel = "NOTE"
    ds.ContentDescription = f"Note for {ds_patient.PatientName.family_name}"
    objects = []
    for text in (f"{ds_patient.PatientName.family_name} {ds_patient.PatientID}", "R"):
        item = Dataset()
        item.BoundingBoxAnnotationUnits = "PIXEL"
        item.UnformattedTextValue = text
        item.BoundingBoxTopLeftHandCorner = [2.0, 2.0]
        item.BoundingBoxBottomRightHandCorner = [60.0, 14.0]
        objects.append(item)
    annotation = Dataset()
    annotation.GraphicLayer = "NOTES"
    annotation.TextObjectSequence = Sequence(objects)
    ds.GraphicAnnotationSequence = Sequence([annotation])
    return ds


def _texts(ds: Dataset) -> list[str]:
    return [
        str(t.UnformattedTextValue)
        for item in ds.get("GraphicAnnotationSequence", [])
        for t in item.get("TextObjectSequence", [])
    ]


def test_overlay_text_is_cleared_and_clinical_text_kept(cleaner: GraphicsCleaner) -> None:
    ds, boxes, clinical = _phantom_ct()
    before = read_overlay(ds, 0x6000)
    assert all(_glyphs_left(before, b) > 0 for b in boxes)
    result = cleaner.clean_overlay(ds, 0x6000, cleaner.classifier(header_identifiers(ds)))
    assert result.kept, result.note()
    after = read_overlay(ds, 0x6000)
    assert [_glyphs_left(after, b) for b in boxes] == [0] * len(boxes)
    region = (slice(None), slice(clinical.y, clinical.y + clinical.h))
    columns = slice(clinical.x, clinical.x + clinical.w)
    assert np.array_equal(after[region][:, :, columns], before[region][:, :, columns])
    assert result.cleared >= 1 and result.clinical >= 1
    note = result.note()
    assert ds.PatientID not in note and ds.PatientName.family_name not in note


def test_multiframe_overlay_cleared_in_the_frame_that_holds_the_name(
    cleaner: GraphicsCleaner,
) -> None:
    """Number of Frames in Overlay 2: the name and ID only in frame 1, the label in both."""
    ds, boxes, clinical = _phantom_ct()
    single = read_overlay(ds, 0x6000)[0]
    label = np.zeros_like(single)
    rows, cols = (
        slice(clinical.y, clinical.y + clinical.h),
        slice(clinical.x, clinical.x + clinical.w),
    )
    label[rows, cols] = single[rows, cols]
    ds.add_new(0x60000015, "IS", 2)
    ds[0x60003000].value = b"\0" * (2 * single.size // 8)
    write_overlay(ds, 0x6000, np.stack([label, single]))
    result = cleaner.clean_overlay(ds, 0x6000, cleaner.classifier(header_identifiers(ds)))
    assert result.kept and result.frames == 2, result.note()
    after = read_overlay(ds, 0x6000)
    assert [_glyphs_left(after[1:], b) for b in boxes] == [0] * len(boxes)
    assert np.array_equal(after[0], label)
    assert np.array_equal(after[1][rows, cols], label[rows, cols])


def test_overlay_whose_text_stays_is_removed(
    cleaner: GraphicsCleaner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clearing that does not take: the re-read still finds the name, so the group goes."""
    ds, _, _ = _phantom_ct()
    monkeypatch.setattr(GraphicsCleaner, "_clear", lambda self, planes, reads: None)
    result = cleaner.clean_overlay(ds, 0x6000, cleaner.classifier(header_identifiers(ds)))
    assert not result.kept
    assert "still read" in result.reason
    assert not any(int(t) >> 16 == 0x6000 for t in ds.keys())


def test_undecodable_or_unreadable_overlays_are_removed() -> None:
    ds, _, _ = _phantom_ct()
    ds[0x60003000].value = ds[0x60003000].value[:10]  # truncated Overlay Data
    ids = header_identifiers(ds)
    notes = clean_overlays(ds, [0x6000], ids, RESEARCH.pixels, None)
    assert not any(int(t) >> 16 == 0x6000 for t in ds.keys())
    assert notes == ["graphics: overlay 6000 removed: no OCR engine to read it"]

    def broken() -> object:
        raise RuntimeError("no models")

    ds, _, _ = _phantom_ct()
    notes = clean_overlays(ds, [0x6000], ids, RESEARCH.pixels, broken)  # type: ignore[arg-type]
    assert "OCR engine unavailable" in notes[0]
    assert not any(int(t) >> 16 == 0x6000 for t in ds.keys())

    ds, _, _ = _phantom_ct()
    ds[0x60003000].value = ds[0x60003000].value[:10]
    unreached = GraphicsCleaner(RESEARCH.pixels, _NoEngine())
    result = unreached.clean_overlay(ds, 0x6000, unreached.classifier(ids))
    assert not result.kept and "shorter than its geometry" in result.reason
    assert not any(int(t) >> 16 == 0x6000 for t in ds.keys())


class _NoEngine:
    """An engine that must never be reached (the overlay fails before any read)."""

    name = EngineName.RAPIDOCR

    def detect(self, image: Image) -> list[EngineBox]:
        raise AssertionError("read")

    def read(self, image: Image, boxes: list[EngineBox]) -> list[Line]:
        raise AssertionError("read")


def test_overlay_planes_round_trip_big_endian_and_multiframe() -> None:
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    planes = np.zeros((3, 5, 7), bool)
    planes[0, 0, 0] = planes[1, 2, 3] = planes[2, 4, 6] = True
    ds.add_new(0x60020010, "US", 5)
    ds.add_new(0x60020011, "US", 7)
    ds.add_new(0x60020015, "IS", 3)
    ds.add_new(0x60020100, "US", 1)
    ds.add_new(0x60020102, "US", 0)
    ds.add_new(0x60023000, "OW", b"\0" * 14)
    write_overlay(ds, 0x6002, planes)
    assert len(ds[0x60023000].value) % 2 == 0
    assert ds[0x60023000].value[1] == 1  # bit 0 of the first 16-bit word, big endian
    assert np.array_equal(read_overlay(ds, 0x6002), planes)


def test_embedded_overlay_bit_is_cleared_from_pixel_data() -> None:
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    assert int(ds.BitsStored) == 16 and int(ds.BitsAllocated) == 16
    ds.BitsStored, ds.HighBit = 12, 11
    values = np.frombuffer(ds.PixelData, "<u2") & 0x0FFF
    marked = values | np.where(np.arange(values.size) % 3 == 0, 1 << 15, 0).astype(np.uint16)
    ds.PixelData = marked.astype("<u2").tobytes()
    ds.add_new(0x60000010, "US", int(ds.Rows))
    ds.add_new(0x60000011, "US", int(ds.Columns))
    ds.add_new(0x60000100, "US", 16)
    ds.add_new(0x60000102, "US", 15)  # retired: the overlay lives in bit 15 of each pixel
    notes = clean_overlays(ds, [], (), RESEARCH.pixels, None)
    assert "embedded overlay bit 15 cleared" in notes[0]
    assert not any(int(t) >> 16 == 0x6000 for t in ds.keys())
    assert np.array_equal(np.frombuffer(ds.PixelData, "<u2"), values)


def test_text_objects_judged_under_clean_graphics(keyring: Keyring) -> None:
    ds, _, _ = _phantom_ct()
    gsps = _gsps(ds)
    notes = clean_annotations(gsps, header_identifiers(gsps), RESEARCH.pixels)
    assert _texts(gsps) == ["R"]
    assert "1 removed (1 identifying), 1 kept as clinical" in notes[0]
    assert ds.PatientName.family_name not in str(gsps.ContentDescription)
    # an item with nothing left goes; so does the sequence when no item is left
    alone = _gsps(ds)
    alone.GraphicAnnotationSequence[0].TextObjectSequence.pop()
    clean_annotations(alone, header_identifiers(alone), RESEARCH.pixels)
    assert "GraphicAnnotationSequence" not in alone
    # without the option the engine dummies the text (Table E.1-1: D), as before
    plain = _gsps(ds)
    Engine(BASIC, Pseudonymizer(keyring)).apply(plain)
    assert all(ds.PatientName.family_name not in t for t in _texts(plain))
    assert len(_texts(plain)) == 2


def test_engine_holds_overlays_only_when_asked(keyring: Keyring) -> None:
    engine = Engine(RESEARCH, Pseudonymizer(keyring))
    ds, _, _ = _phantom_ct()
    family = str(ds.PatientName.family_name)
    outcome = engine.apply(ds, hold_overlays=True)
    assert outcome.overlays_held == [0x6000] and 0x60003000 in ds
    assert family not in str(ds[0x60000022].value)  # Overlay Description: cleaned as text
    ds, _, _ = _phantom_ct()
    outcome = engine.apply(ds)
    assert outcome.overlays_held == [] and 0x60003000 not in ds


def _manifest_notes(run: Path) -> dict[str, str]:
    lines = (run / "manifest.jsonl").read_text().splitlines()
    return {Path(m["input"]).name: " ".join(m.get("reasons", [])) for m in map(json.loads, lines)}


def test_pipeline_cleans_graphics_and_verify_passes(tmp_path: Path, keyring: Keyring) -> None:
    ds, boxes, clinical = _phantom_ct()
    src = tmp_path / "orig"
    src.mkdir()
    ds.save_as(src / "ct.dcm", enforce_file_format=True)
    gsps = _gsps(ds)
    gsps.file_meta = pydicom.dataset.FileMetaDataset()
    gsps.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    gsps.save_as(src / "pr.dcm", enforce_file_format=True)
    for policy, name in ((RESEARCH, "research"), (BASIC, "basic")):
        out = tmp_path / name
        summary = run_deid(RunOptions(src, out, workers=1), policy, keyring)
        assert summary.exit_code == 0
        notes = _manifest_notes(tmp_path / f"{name}.run")
        released = {
            str(pydicom.dcmread(p).Modality): pydicom.dcmread(p) for p in out.rglob("*.dcm")
        }
        ct, pr = released["CT"], released["PR"]
        if policy is RESEARCH:
            planes = read_overlay(ct, 0x6000)
            assert [_glyphs_left(planes, b) for b in boxes] == [0] * len(boxes)
            assert _glyphs_left(planes, clinical) > 0
            assert "overlay 6000 cleaned and kept" in notes["ct.dcm"]
            assert _texts(pr) == ["R"]
            assert "1 removed" in notes["pr.dcm"]
        else:
            assert not any(int(t) >> 16 == 0x6000 for t in ct.keys())
            assert len(_texts(pr)) == 2
        assert ds.PatientID not in notes["ct.dcm"] + notes["pr.dcm"]
    result = CliRunner().invoke(
        main, ["verify", "--policy", "research", str(src), str(tmp_path / "research")]
    )
    assert result.exit_code == 0, result.output
