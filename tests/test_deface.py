"""Defacing: geometry, offline models, NIfTI/DICOM round trips, and the proof on real volumes
(the project's phantom head as a DICOM series, and pydeface's real whole-head template)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from tests.conftest import IN_CI, require_tool
from tests.deface_data import BRAIN_TISSUES, head_labels, pydeface_template, write_head_series

import radguard.deface as deface
from radguard.cli import main
from radguard.deface import DefaceSettings, Modality, Status, Volume, deface_volume
from radguard.deface.frame import Frame, all_frames, compose, from_affine
from radguard.deface.io import CLEAN_VISUAL_FEATURES_CODE, read_nifti, write_nifti


def test_exports() -> None:
    for name in deface.__all__:
        assert hasattr(deface, name), name


def test_frames_round_trip_and_compose() -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    frames = all_frames()
    assert len(frames) == 24 and len(set(frames)) == 24
    for frame in frames:
        assert np.array_equal(frame.unview(frame.view(array)), array)
    base, turn = frames[5], frames[17]
    assert np.array_equal(compose(base, turn).view(array), turn.view(base.view(array)))
    lps_axial = np.diag([-1.0, -1.0, 2.0, 1.0])  # DICOM axial read as RAS: i to the left
    assert from_affine(lps_axial) == Frame((0, 1, 2), (True, True, False))


def test_models_load_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from radguard.deface import detect

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a face model tried to reach the network")

    monkeypatch.setattr(socket, "socket", refuse)
    detect._models.cache_clear()
    detect.check_models()
    blank = np.zeros((200, 200), np.uint8)
    assert detect.find_faces(blank, sensitive=True) == []


def test_nifti_round_trip_keeps_stored_values(tmp_path: Path) -> None:
    import nibabel as nib

    data = np.random.default_rng(3).integers(-500, 3000, (20, 22, 24)).astype(np.int16)
    image = nib.Nifti1Image(data, np.diag([0.9, 1.1, 1.3, 1.0]))
    image.header.set_slope_inter(0.5, -10.0)
    nib.save(image, tmp_path / "in.nii.gz")
    source = read_nifti(tmp_path / "in.nii.gz", "CT")
    assert source.volume.data.dtype == np.int16
    assert np.array_equal(source.volume.data, data)
    changed = source.volume.data.copy()
    changed[:5] = source.volume.fill_value()[0]
    write_nifti(source, changed, tmp_path / "out.nii.gz")
    back = nib.load(tmp_path / "out.nii.gz")
    assert np.array_equal(np.asarray(back.dataobj.get_unscaled()), changed)
    assert back.dataobj.slope == 0.5 and back.dataobj.inter == -10.0
    assert np.allclose(back.affine, image.affine)


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray, object]:
    """A phantom head CT series (2 mm) defaced through the CLI."""
    root = tmp_path_factory.mktemp("deface-ct")
    labels = write_head_series(root / "in" / "head", 2.0, "CT")
    result = CliRunner().invoke(main, ["deface", str(root / "in"), str(root / "out"), "--json"])
    return root, root / "out", labels, result


def test_ct_series_defaced_with_proof(ct_run: tuple[Path, Path, np.ndarray, object]) -> None:
    root, out, labels, result = ct_run
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    line = json.loads(result.output.splitlines()[0])  # type: ignore[attr-defined]
    assert line["status"] == "defaced", line
    proof = line["proof"]
    assert proof["checks"]["face_found_before"] and proof["checks"]["no_face_after"]
    assert proof["embedding_distance"] > deface.SAME_PERSON_DISTANCE
    assert proof["brain_voxels_changed"] == 0 and proof["removed_ml"] > 50
    originals = sorted((root / "in" / "head").glob("*.dcm"))
    written = sorted(next(out.iterdir()).glob("*.dcm"))
    assert len(written) == len(originals)
    before = np.stack([pydicom.dcmread(p).pixel_array.T for p in originals], axis=2)
    after = np.stack([pydicom.dcmread(p).pixel_array.T for p in written], axis=2)
    brain = np.isin(labels, BRAIN_TISSUES)  # the phantom's own truth, not our mask
    assert np.array_equal(before[brain], after[brain])
    changed = before != after
    assert changed.any()
    # the cut is in front (+y is posterior): nothing changed in the back 30% of the field
    assert not changed[:, int(labels.shape[1] * 0.7) :, :].any()
    first_in, first_out = pydicom.dcmread(originals[0]), pydicom.dcmread(written[0])
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        assert first_out.get(keyword) == first_in.get(keyword)
    assert first_out.SOPInstanceUID != first_in.SOPInstanceUID
    assert first_out.SeriesInstanceUID != first_in.SeriesInstanceUID
    assert first_out.RecognizableVisualFeatures == "NO"
    codes = [i.CodeValue for i in first_out.DeidentificationMethodCodeSequence]
    assert CLEAN_VISUAL_FEATURES_CODE[0] in codes
    assert first_out.SourceImageSequence[0].ReferencedSOPInstanceUID == first_in.SOPInstanceUID
    # a validator finds nothing new in a defaced slice (the generator's own omissions aside)
    dciodvfy = require_tool("dciodvfy")

    def problems(path: Path) -> set[str]:
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
        lines = (run.stdout + run.stderr).splitlines()
        return {line for line in lines if line.startswith(("Error", "Warning"))}

    assert problems(written[60]) <= problems(originals[60])
    report = (root / "out.deface.html").read_text()
    assert report.count("data:image/png;base64,") == 10  # five views, before and after


def test_no_face_in_field_of_view_is_released_as_is() -> None:
    labels = head_labels(2.0)[:, :, 95:]  # the top of the head only: above the brows
    hu = np.array([-1000, 30, -95, 42, 1100, 8, 38, 27, 12], np.int16)[np.minimum(labels, 8)]
    volume = Volume(hu, np.diag([2.0, 2.0, 2.0, 1.0]), Modality.CT)
    outcome = deface_volume(volume)
    assert outcome.status is Status.NO_FACE, outcome.reason
    assert outcome.data is None


def test_ears_cleared_on_request() -> None:
    """The phantom's pinnae (x = +-74 mm, 9 mm proud of the skull) go with ``ears=True``."""
    labels = head_labels(2.0)
    hu = np.array([-1000, 30, -95, 42, 1100, 8, 38, 27, 12], np.int16)[np.minimum(labels, 8)]
    affine = np.diag([-2.0, -2.0, 2.0, 1.0])  # the LPS grid read as RAS
    affine[:3, 3] = [100.0, 130.0, -140.0]
    volume = Volume(hu, affine, Modality.CT)
    outcome = deface_volume(volume, DefaceSettings(ears=True))
    assert outcome.status is Status.DEFACED, outcome.reason
    assert len(outcome.proof.ears_mm) == 2 and min(outcome.proof.ears_mm) > 4.0
    assert outcome.data is not None
    for x in (9, 91):  # x = -82 and +82 mm: the outer rims of the two ears, at ear height
        assert labels[x, 68, 70] != 0 and outcome.data[x, 68, 70] == -1000
    assert np.array_equal(
        outcome.data[np.isin(labels, BRAIN_TISSUES)], hu[np.isin(labels, BRAIN_TISSUES)]
    )


def test_head_found_whatever_the_header_says() -> None:
    """A wrong affine (axes swapped and flipped): the orientation search still finds the face."""
    labels = head_labels(2.0)
    hu = np.array([-1000, 30, -95, 42, 1100, 8, 38, 27, 12], np.int16)[np.minimum(labels, 8)]
    turned = np.ascontiguousarray(np.flip(np.transpose(hu, (2, 0, 1)), axis=0))
    volume = Volume(turned, np.diag([2.0, 2.0, 2.0, 1.0]), Modality.CT)
    outcome = deface_volume(volume, DefaceSettings())
    assert outcome.status is Status.DEFACED, outcome.reason
    assert outcome.proof.frame != "+x,+y,+z"
    truth = np.flip(np.transpose(np.isin(labels, BRAIN_TISSUES), (2, 0, 1)), axis=0)
    assert outcome.data is not None
    assert np.array_equal(outcome.data[truth], turned[truth])


def test_real_head_template(tmp_path: Path) -> None:
    """pydeface's mean whole-head T1 (a real, averaged head with its face)."""
    template = pydeface_template()
    if template is None:
        if IN_CI:
            pytest.fail("pydeface (its template) is required in CI")
        pytest.skip("pydeface not installed")
    result = deface.deface_path(template, tmp_path / "out")
    assert len(result) == 1
    proof = result[0].proof
    assert result[0].status is Status.DEFACED, result[0].reason
    assert proof["passed"] and proof["embedding_distance"] > deface.SAME_PERSON_DISTANCE
    assert proof["brain_voxels_changed"] == 0
    written = tmp_path / "out" / template.name
    import nibabel as nib

    before, after = nib.load(template), nib.load(written)
    assert np.allclose(before.affine, after.affine)
    assert after.get_data_dtype() == before.get_data_dtype()
    raw_before = np.asarray(before.dataobj.get_unscaled())
    raw_after = np.asarray(after.dataobj.get_unscaled())
    changed = raw_before != raw_after
    assert 0 < changed.mean() < 0.2  # the face and the (noisy) air in front of it, not the head


def test_deid_option_defaces_head_series(tmp_path: Path, key_file: Path) -> None:
    """radguard deid with clean-recognizable-visual-features: the pre-pass defaces the head
    series, the per-file run releases the defaced files, the manifest says so."""
    write_head_series(tmp_path / "in" / "head", 2.0, "CT")
    result = CliRunner().invoke(
        main,
        [
            "deid",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--key-file",
            str(key_file),
            "--option",
            "clean-recognizable-visual-features",
            "--no-option",
            "clean-pixel-data",  # OCR of every CT slice is another test's business
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = [
        json.loads(line)
        for line in (tmp_path / "out.run" / "manifest.jsonl").read_text().splitlines()
    ]
    assert manifest and all(line["status"] == "released" for line in manifest)
    assert all(any("face: defaced" in r for r in line["reasons"]) for line in manifest)
    assert all(line["input"].startswith("head/") for line in manifest)  # the original named
    released = [pydicom.dcmread(p) for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(released) == len(manifest)
    assert all(ds.RecognizableVisualFeatures == "NO" for ds in released)
    assert (tmp_path / "out.run" / "deface" / "report.html").is_file()


def test_deid_refuses_what_it_cannot_check(tmp_path: Path, key_file: Path) -> None:
    """A head series too thin to render is quarantined with the reason: refused never
    counts as de-identified; the top of a head, with no face in its field of view, is
    released as it is with the finding noted."""
    head = tmp_path / "in" / "head"
    write_head_series(head, 2.0, "CT")
    for extra in sorted(head.glob("*.dcm"))[5:]:
        extra.unlink()  # five slices of a head: no face can be rendered or ruled out
    slab = tmp_path / "in" / "slab"
    write_head_series(slab, 2.0, "CT")
    for lower in sorted(slab.glob("*.dcm"))[:100]:
        lower.unlink()  # the top of a head (z above 60 mm): brain and scalp, no face
    result = CliRunner().invoke(
        main,
        [
            "deid",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--key-file",
            str(key_file),
            "--option",
            "clean-recognizable-visual-features",
            "--no-option",
            "clean-pixel-data",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 1, result.output
    lines = [
        json.loads(line)
        for line in (tmp_path / "out.run" / "manifest.jsonl").read_text().splitlines()
    ]
    heads = [line for line in lines if line["input"].startswith("head/")]
    slab = [line for line in lines if line["input"].startswith("slab/")]
    assert len(heads) == 5 and all(line["status"] == "quarantined" for line in heads)
    assert all("refused" in line["reasons"][0] for line in heads)
    assert slab and all(line["status"] == "released" for line in slab), slab[0]
    assert all(any(r.startswith("face: no-face") for r in line["reasons"]) for line in slab)


def test_plan_runs_on_dask(tmp_path: Path) -> None:
    """The series engine keeps no state: the pre-pass runs it on a Dask cluster."""
    from dask.distributed import LocalCluster

    from radguard.deface.pipeline import load_plan, plan_faces

    write_head_series(tmp_path / "in" / "head", 2.0, "CT")
    inputs = [(str(p), f"d{i}") for i, p in enumerate(sorted((tmp_path / "in").rglob("*.dcm")))]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster:
        plan = plan_faces(inputs, tmp_path / "work", scheduler=cluster.scheduler_address)
    outcomes = load_plan(str(plan.path))
    assert set(outcomes) == {d for _, d in inputs}
    assert {status for status, _ in outcomes.values()} == {"defaced"}
    assert len(plan.substitutes) == len(inputs)
    assert all(Path(p).is_file() for p in plan.substitutes.values())
    assert (tmp_path / "work" / "report.html").is_file()


def test_series_whose_output_cannot_be_written_is_refused_not_fatal(tmp_path: Path) -> None:
    """A failure inside defacing (here: the output folder cannot be created) refuses that series
    with the reason; it does not raise and stop the whole run."""
    from radguard.deface.series import deface_series

    head = tmp_path / "head"
    write_head_series(head, 2.0, "CT")
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    paths = sorted(str(p) for p in head.iterdir())
    result = deface_series("k", paths, str(blocker / "out"), None, True)
    assert result.status is Status.REFUSED
    assert result.reason.startswith("defacing failed:") and result.outputs == []
