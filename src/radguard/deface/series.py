"""Series and files: group DICOM slices into volumes, deface each, write them back.

``deface_series`` and ``deface_nifti`` are plain top-level functions of picklable arguments
that keep no state, so a process pool or a Dask cluster can run one volume per task.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radguard.deface.engine import DefaceSettings, Outcome, Status, deface_volume
from radguard.deface.io import read_header, read_nifti, read_series, write_nifti, write_series
from radguard.deface.volume import VolumeError
from radguard.errors import DICOM_READ_ERRORS

VOLUME_MODALITIES = ("CT", "MR", "PT")
_HEAD_WORDS = (
    "HEAD",
    "BRAIN",
    "NECK",
    "SKULL",
    "FACE",
    "SINUS",
    "ORBIT",
    "CRAN",
    "NEURO",
    "IAC",
    "TEMPORAL",
    "DENTAL",
    "JAW",
    "MANDIBLE",
    "MAXILL",
)
_MIN_SLICES = 10


@dataclass
class SeriesResult:
    """What became of one volume (picklable; PNG renders for the report)."""

    key: str
    kind: str  # dicom | nifti
    status: Status
    reason: str
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    proof: dict[str, Any] = field(default_factory=dict)
    renders: dict[str, bytes] = field(default_factory=dict)  # "before/front" -> PNG
    boxes: dict[str, list[list[int]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "status": self.status.value,
            "reason": self.reason,
            "inputs": len(self.inputs),
            "outputs": len(self.outputs),
            "proof": self.proof,
        }


def head_hint(header: Any) -> bool:
    """The header names the head or neck (a hint only: the image decides)."""
    text = " ".join(
        str(header.get(k, "") or "")
        for k in ("BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName")
    ).upper()
    return any(word in text for word in _HEAD_WORDS)


def _pngs(outcome: Outcome) -> dict[str, bytes]:
    import cv2

    found: dict[str, bytes] = {}
    for stage, images in (("before", outcome.before), ("after", outcome.after)):
        for view, image in images.items():
            ok, buffer = cv2.imencode(".png", image)
            if ok:
                found[f"{stage}/{view}"] = buffer.tobytes()
    return found


def _result(key: str, kind: str, inputs: list[str], outcome: Outcome) -> SeriesResult:
    return SeriesResult(
        key,
        kind,
        outcome.status,
        outcome.reason,
        inputs,
        proof=outcome.proof.to_json(),
        renders=_pngs(outcome),
        boxes={k: [list(b) for b in v] for k, v in outcome.boxes.items()},
    )


def deface_series(
    key: str,
    paths: list[str],
    out_dir: str,
    settings: DefaceSettings | None = None,
    hint: bool = False,
) -> SeriesResult:
    """Read, deface and (when proven) write one DICOM series into ``out_dir``."""
    inputs = [str(p) for p in paths]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(paths) < _MIN_SLICES:
            return _unassembled(key, inputs, f"{len(paths)} slice(s), too few to render", hint)
        try:
            series = read_series([Path(p) for p in paths])
        except VolumeError as error:  # enough slices for a face, but no volume to look at
            return _unassembled(key, inputs, str(error), True)
        try:
            outcome = deface_volume(series.volume, settings, head_hint=hint)
            result = _result(key, "dicom", [str(p) for p in series.paths], outcome)
            if outcome.status is Status.DEFACED and outcome.data is not None:
                written = write_series(series, outcome.data, Path(out_dir))
                result.outputs = [str(p) for p in written]
        except Exception as error:  # noqa: BLE001 - one series must not stop the run
            # fail closed: the series is refused (quarantined) with the reason, the run goes on
            return SeriesResult(
                key,
                "dicom",
                Status.REFUSED,
                f"defacing failed: {type(error).__name__} (series not released)",
                inputs,
            )
    return result


def _unassembled(key: str, inputs: list[str], why: str, hint: bool) -> SeriesResult:
    """Slices that do not form a volume cannot be rendered into a face."""
    if hint:
        return SeriesResult(
            key,
            "dicom",
            Status.REFUSED,
            f"head or neck series that cannot be assembled into a volume to check for a "
            f"face: {why}",
            inputs,
        )
    return SeriesResult(
        key, "dicom", Status.NO_FACE, f"not a volume, no face can be rendered: {why}", inputs
    )


def deface_nifti(
    path: str,
    out_path: str,
    settings: DefaceSettings | None = None,
    modality: str = "MR",
) -> SeriesResult:
    """Deface one NIfTI file into ``out_path`` (same header, affine, dtype and scaling)."""
    try:
        source = read_nifti(Path(path), modality)
    except VolumeError as error:
        return SeriesResult(Path(path).name, "nifti", Status.REFUSED, str(error), [path])
    outcome = deface_volume(source.volume, settings, head_hint=True)
    result = _result(Path(path).name, "nifti", [path], outcome)
    if outcome.status is Status.DEFACED and outcome.data is not None:
        write_nifti(source, outcome.data, Path(out_path))
        result.outputs = [out_path]
    return result


def is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".nii", ".nii.gz"))


def group_series(paths: Iterable[Path]) -> Iterator[tuple[str, list[Path], bool]]:
    """(key, files, head hint) for every CT, MR and PET series among ``paths``; the key is a
    digest (no identifier in it). Slices of one series with other orientations or sizes form
    their own group."""
    groups: dict[str, list[Path]] = {}
    hints: dict[str, bool] = {}
    for path in paths:
        try:
            header = read_header(path)
        except DICOM_READ_ERRORS:
            continue
        modality = str(header.get("Modality", "") or "").upper()
        if modality not in VOLUME_MODALITIES:
            continue
        series = str(header.get("SeriesInstanceUID", "") or "")
        orientation = header.get("ImageOrientationPatient") or []
        shape = (header.get("Rows"), header.get("Columns"))
        rounded = tuple(round(float(v), 2) for v in orientation)
        key = hashlib.sha256(f"{series}|{rounded}|{shape}".encode()).hexdigest()[:16]
        groups.setdefault(key, []).append(path)
        hints[key] = hints.get(key, False) or head_hint(header)
    for key, files in groups.items():
        yield key, files, hints[key]


def deface_path(
    source: Path,
    target: Path,
    settings: DefaceSettings | None = None,
    modality: str = "MR",
    workers: int = 1,
) -> list[SeriesResult]:
    """Deface every NIfTI file and every CT/MR/PET DICOM series under ``source``."""
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    jobs: list[tuple[str, tuple[Any, ...]]] = []
    for path in files:
        if is_nifti(path):
            relative = path.name if source.is_file() else str(path.relative_to(source))
            jobs.append(("nifti", (str(path), str(target / relative), settings, modality)))
    dicom = [p for p in files if not is_nifti(p)]
    for key, group, hint in group_series(dicom):
        jobs.append(
            ("dicom", (key, [str(p) for p in group], str(target / f"series-{key}"), settings, hint))
        )
    if workers <= 1 or len(jobs) <= 1:
        return [_run(kind, args) for kind, args in jobs]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_run, [k for k, _ in jobs], [a for _, a in jobs]))


def _run(kind: str, args: tuple[Any, ...]) -> SeriesResult:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if kind == "nifti":
        return deface_nifti(*args)
    return deface_series(*args)
