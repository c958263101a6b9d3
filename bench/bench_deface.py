"""Defacing bench: the phantom heads (CT and MR, 1 mm) and pydeface's real whole-head template;
radguard beside radveil and quickshear where they are installed.

Per volume: face found before, no face after, embedding distance before/after (dlib 128-d;
same person below 0.6), share of brain voxels changed (phantom: its true brain labels), and
seconds. Run: ``OMP_NUM_THREADS=2 nice .venv/bin/python bench/bench_deface.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.deface_data import BRAIN_TISSUES, head_labels, pydeface_template

from radguard.deface import (
    Modality,
    Volume,
    deface_volume,
    detect,
)
from radguard.deface.engine import _PROOF_VIEWS
from radguard.deface.frame import from_affine
from radguard.deface.io import read_nifti
from radguard.deface.render import View, render
from radguard.deface.segment import segment
from radguard.phantom.volumes import HU, MR_SIGNAL


def _phantom(modality: str) -> tuple[Volume, np.ndarray]:
    labels = head_labels(1.0)  # 200 x 250 x 270 at 1 mm (about 256^3)
    values = HU[labels] + 1024 if modality == "CT" else MR_SIGNAL["T1"][labels]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # the LPS grid read as RAS
    volume = Volume(values.astype(np.uint16), affine, Modality(modality))
    if modality == "CT":
        volume.intercept[:] = -1024.0
    return volume, np.isin(labels, BRAIN_TISSUES)


def _judge(before: Volume, after_data: np.ndarray) -> dict[str, object]:
    """The same measures for any tool's output: detections and embedding on renders."""
    frame = from_affine(before.affine)
    spacing = frame.spacing(before.spacing)
    seg = segment(before.physical(), before.modality, before.spacing)
    after = Volume(after_data, before.affine, before.modality, before.slope, before.intercept)
    after_head = (after.physical() > seg.air_threshold) & seg.head
    shot = render(frame.view(seg.head), spacing, View.FRONT)
    face = detect.best([f for f in detect.find_faces(shot.image) if f.detector == "dlib-hog"])
    if face is None:
        return {"face_before": False}
    hits = 0  # the same rule as radguard's own gate (engine._faces_in, _still_a_face)
    for view in _PROOF_VIEWS:
        image = render(frame.view(after_head), spacing, view).image
        sensitive = view not in (View.LEFT, View.RIGHT)
        hits += sum(
            f.detector == "dlib-hog" and f.box[2] >= 0.6 * face.box[2]
            for f in detect.find_faces(image, sensitive=sensitive)
        )
    front = render(frame.view(after_head), spacing, View.FRONT).image
    distance = float(
        np.linalg.norm(detect.embedding(front, face.box) - detect.embedding(shot.image, face.box))
    )
    return {"face_before": True, "hog_hits_after": hits, "embedding_distance": round(distance, 3)}


def main() -> None:
    cases: list[tuple[str, Volume, Any, Path | None]] = []
    for modality in ("CT", "MR"):
        volume, brain = _phantom(modality)
        cases.append((f"phantom {modality} 1 mm {volume.data.shape}", volume, brain, None))
    template = pydeface_template()
    if template is not None:
        source = read_nifti(template)
        cases.append(
            (f"pydeface template {source.volume.data.shape}", source.volume, None, template)
        )
        padded = np.pad(source.volume.data, ((40, 40), (0, 0), (0, 0)))  # exactly 256^3
        affine = source.volume.affine.copy()
        affine[:3, 3] -= affine[:3, 0] * 40
        full = Volume(padded, affine, source.volume.modality)
        cases.append(("pydeface template padded to 256^3", full, None, None))
    for name, volume, brain, path in cases:
        started, cpu = time.perf_counter(), time.process_time()
        outcome = deface_volume(volume)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        proof = outcome.proof.to_json()
        truth = ""
        if brain is not None and outcome.data is not None:
            moved = int((volume.data[brain] != outcome.data[brain]).sum())
            truth = f", true brain voxels changed {moved}"
        print(
            f"radguard  {name}: {outcome.status.value} in {seconds:.1f} s wall, {cpu:.1f} s CPU; "
            f"embedding distance "
            f"{proof['embedding_distance']}, removed {proof['removed_ml']} ml, brain voxels "
            f"changed {proof['brain_voxels_changed']}/{proof['brain_voxels']}{truth}; "
            f"checks {proof['checks']}"
        )
        if path is not None:
            _others(name, path, volume)


def _others(name: str, path: Path, volume: Volume) -> None:
    """radveil and quickshear on the same NIfTI file, judged by the same renders."""
    import nibabel as nib

    with tempfile.TemporaryDirectory() as folder:
        try:
            import radveil

            out = Path(folder) / "radveil.nii.gz"
            started, cpu = time.perf_counter(), time.process_time()
            report = radveil.deface_auto(str(path), str(out), mode="adaptive")
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            written: Any = nib.load(out)
            data = np.asarray(written.dataobj.get_unscaled()).astype(volume.data.dtype)
            own = {k: report.get(k) for k in ("views_detected", "residual_detections")}
            print(
                f"radveil   {name}: {seconds:.1f} s wall, {cpu:.1f} s CPU; its own report "
                f"{own}; by radguard's renders {_judge(volume, data)}"
            )
        except Exception as error:  # noqa: BLE001 - report and go on
            print(f"radveil   {name}: did not run ({type(error).__name__}: {error})")
        try:
            from quickshear import quickshear  # type: ignore[import-untyped]

            seg = segment(volume.physical(), volume.modality, volume.spacing)
            image: Any = nib.load(path)
            mask = nib.Nifti1Image(seg.brain.astype(np.uint8), image.affine)  # type: ignore[no-untyped-call]
            started = time.perf_counter()
            sheared = quickshear(image, mask)
            seconds = time.perf_counter() - started
            data = np.asarray(sheared.dataobj).astype(volume.data.dtype)
            changed = int((volume.data[seg.brain] != data[seg.brain]).sum())
            print(
                f"quickshear {name}: {seconds:.1f} s (brain mask from radguard); "
                f"brain voxels changed {changed}; {_judge(volume, data)}"
            )
        except Exception as error:  # noqa: BLE001
            print(f"quickshear {name}: did not run ({type(error).__name__}: {error})")


if __name__ == "__main__":
    main()
