"""Orchestration: patients, studies, series and files, written deterministically from a seed.

Layout under ``out`` (identifiers in folder and file names, as hospitals export them)::

    FAMILY_GIVEN_PATIENTID/YYYYMMDD_ACCESSION/NNN_MODALITY/IM0001.dcm  (or FAMILY_..._US1.dcm)

Study 1 (day 0): CT head and chest: soft-tissue (6 slices) and lung (8, JPEG-LS) series, a
head volume with a face (48 axial 5 mm slices of 64x64), RT structure set, text SR and
presentation state on the soft-tissue series, a dose screen (SC) and a DX chest radiograph with
an overlay. Study 2: MR brain: axial T1 (RLE), sagittal FLAIR (implicit VR, files without a
suffix) and a 3D T1 head with a face (48 sagittal 3.75 mm slices of 64x64). Study 3 (the first
patient always, others at random): portable CR chest (deflated) and abdominal ultrasound (an
RGB frame, JPEG 2000 where an encoder exists, and a RLE cine loop). Each study is one job with
its own random stream; with ``workers`` > 1 jobs run in a process pool.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from radguard import __version__
from radguard.phantom.answer import (
    AnswerKey,
    BurnedText,
    Category,
    FileRecord,
    PatientRecord,
    Planted,
    StudyRecord,
)
from radguard.phantom.burn import available_fonts
from radguard.phantom.headers import SeriesInfo, StudyInfo
from radguard.phantom.identity import (
    Patient,
    ascii_folder,
    da,
    make_patient,
    make_site,
    uid,
)
from radguard.phantom.images import (
    AXIAL,
    FLAIR,
    MPRAGE,
    SAGITTAL,
    T1_SE,
    Geometry,
    Instance,
    ct_series,
    dose_report,
    mr_series,
    radiograph_image,
    ultrasound_image,
)
from radguard.phantom.objects import presentation_state, structure_set, text_report
from radguard.phantom.volumes import Chest, Head

# radguard's implementation class UID (PS3.5 B.2), the same one the engine writes.
_IMPLEMENTATION_UID = "2.25.287017146378066178232618734232417389201"
# Compressed syntaxes and the encoder plugin used for each (fixed, so output bytes are too).
_ENCODER_PLUGINS = {
    RLELossless: "pydicom",
    JPEGLSLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
}


def default_key_path(out: Path) -> Path:
    """Where the answer key goes by default: beside ``out``, never inside it."""
    return out.parent / f"{out.name}.answer.json"


def generate(
    out: Path, patients: int, seed: int, *, answer_key: Path | None = None, workers: int = 1
) -> AnswerKey:
    """Write a phantom of ``patients`` patients under ``out`` and its answer key beside it.

    Deterministic: the same seed gives byte-identical files and key (on a machine with the same
    fonts and encoders; the key lists which were used), whatever ``workers`` (1: this process;
    N: a pool of N processes, one study per job; 0: one process per core). ``out`` must be
    empty or absent. Each study is made from its own random stream, so a patient's files do not
    depend on how many patients follow.
    """
    if patients < 1:
        raise ValueError("patients must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    out = Path(out)
    key_path = Path(answer_key) if answer_key is not None else default_key_path(out)
    if out.resolve() in key_path.resolve().parents:
        raise ValueError(f"the answer key {key_path} must not be inside the output folder {out}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: the phantom is written into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    key = AnswerKey(seed=seed, fonts=list(available_fonts()))
    jobs: list[_Job] = []
    for index in range(patients):
        record, studies = _plan_patient(seed, index)
        key.patients.append(record)
        jobs += [_Job(out, seed, study, record.folder) for study in studies]
    syntaxes: Counter[str] = Counter()
    for part in _run(jobs, workers):
        key.files += part.files
        key.planted += part.planted
        key.burned_in += part.burned_in
        key.skipped_transfer_syntaxes.update(part.skipped)
        syntaxes.update(f.transfer_syntax_uid for f in part.files)
    key.transfer_syntaxes = dict(sorted(syntaxes.items()))
    key.skipped_transfer_syntaxes = dict(sorted(key.skipped_transfer_syntaxes.items()))
    key.write(key_path)
    return key


@dataclass(frozen=True)
class _Job:
    """One study to write (picklable: sent to a worker process)."""

    out: Path
    seed: int
    study: StudyInfo
    folder: str  # the patient's folder


@dataclass
class _Part:
    """What one study job wrote, for the answer key."""

    files: list[FileRecord] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)
    burned_in: list[BurnedText] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run(jobs: list[_Job], workers: int) -> Iterator[_Part]:
    """Parts in job order, from a process pool unless one worker (or one job) suffices."""
    count = min(len(jobs), workers if workers > 0 else _cores())
    if count <= 1:
        yield from map(_write_study, jobs)
        return
    with ProcessPoolExecutor(max_workers=count) as pool:
        yield from pool.map(_write_study, jobs)


def _plan_patient(seed: int, index: int) -> tuple[PatientRecord, list[StudyInfo]]:
    """A patient, the number of studies (2 or 3; 3 for the first) and the days between them."""
    rng = np.random.default_rng([seed, index])
    patient = make_patient(rng, index)
    count = 3 if index == 0 else int(rng.integers(2, 4))
    intervals = [int(rng.integers(14, 420)) for _ in range(count - 1)]
    folder = "_".join(
        [ascii_folder(patient.name.family), ascii_folder(patient.name.given), patient.patient_id]
    )
    record = PatientRecord(
        index=index,
        patient_id=patient.patient_id,
        patient_name=patient.name.pn,
        birth_date=da(patient.birth_date),
        sex=patient.sex,
        folder=folder,
        intervals_days=intervals,
    )
    studies = []
    day = 0
    for number in range(count):
        day += intervals[number - 1] if number else 0
        study_rng = np.random.default_rng([seed, index, number])
        date = patient.first_study + dt.timedelta(day)
        study = _study_info(seed, study_rng, patient, number, date)
        studies.append(study)
        record.studies.append(
            StudyRecord(
                study.uid,
                da(study.date),
                day,
                study.description,
                study.accession,
                f"{folder}/{_study_folder(study)}",
            )
        )
    return record, studies


def _study_folder(study: StudyInfo) -> str:
    return f"{da(study.date)}_{study.accession}"


def _write_study(job: _Job) -> _Part:
    """Write one study's files (in a worker process): its pixels have their own random stream."""
    study = job.study
    rng = np.random.default_rng([job.seed, study.patient.index, study.index, 1])
    writer = _Writer(job.out)
    builders = (_study_ct, _study_mr, _study_xr_us)
    for rel, instance in builders[study.index](study, rng):
        path = f"{job.folder}/{_study_folder(study)}/{rel}"
        _filename_plants(instance, study.patient, path)
        writer.write(path, instance, study.patient.index, study.index)
    return writer.part


ElementCache = dict[int, tuple[DataElement, bytes]]


def encode(ds: Dataset, implicit: bool, cache: ElementCache) -> bytes:
    """The bytes ``ds.save_as(..., enforce_file_format=True)`` writes (little endian).

    Slices of a series share most element objects with their series template (see
    ``images._slices``, which never assigns to a shared element), so each shared element is
    encoded once per series: writing is most of the cost of a phantom.
    """
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    correct_ambiguous_vr(ds, True)
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    parts = [head.getvalue()]
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        element = ds[tag]
        hit = cache.get(id(element))
        if hit is None or hit[0] is not element:
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, implicit
            write_data_element(fp, element, encodings)
            hit = cache[id(element)] = (element, fp.getvalue())
        parts.append(hit[1])
    return b"".join(parts)


@dataclass
class _Writer:
    out: Path
    part: _Part = field(default_factory=_Part)
    series: str = ""
    cache: ElementCache = field(default_factory=dict)

    def syntax(self, wanted: str) -> str:
        """``wanted`` if this machine can encode it, else Explicit VR Little Endian (recorded)."""
        uid_ = UID(wanted)
        if uid_ in _ENCODER_PLUGINS:
            encoder = get_encoder(uid_)
            if _ENCODER_PLUGINS[uid_] not in encoder.available_plugins:
                missing = "; ".join(encoder.missing_dependencies) or "no encoder"
                self.part.skipped[str(uid_)] = f"{uid_.name}: {missing}"
                return str(ExplicitVRLittleEndian)
        return wanted

    def write(self, rel: str, instance: Instance, patient: int, study: int) -> None:
        ds = instance.ds
        syntax = UID(self.syntax(instance.syntax or ExplicitVRLittleEndian))
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = UID(_IMPLEMENTATION_UID)
        meta.ImplementationVersionName = f"RG_PHANTOM_{__version__.replace('.', '')}"[:16]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        if syntax in _ENCODER_PLUGINS:
            ds.compress(
                syntax, encoding_plugin=_ENCODER_PLUGINS[syntax], generate_instance_uid=False
            )
            if syntax == JPEG2000Lossless and int(ds.SamplesPerPixel) == 3:
                # the encoder applied the reversible colour transform (PS3.5 8.2.4)
                ds.PhotometricInterpretation = "YBR_RCT"
        else:
            meta.TransferSyntaxUID = syntax
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if syntax == DeflatedExplicitVRLittleEndian:
            ds.save_as(path, enforce_file_format=True)
        else:
            if ds.SeriesInstanceUID != self.series:
                self.series, self.cache = str(ds.SeriesInstanceUID), {}
            path.write_bytes(encode(ds, syntax == ImplicitVRLittleEndian, self.cache))
        self.part.planted += instance.planter.planted(rel)
        for frame, box, source in instance.burned:
            self.part.burned_in.append(
                BurnedText(
                    rel,
                    frame,
                    box.x,
                    box.y,
                    box.w,
                    box.h,
                    box.text,
                    box.font.name,
                    box.font.size,
                    list(box.ink),
                    source,
                )
            )
        self.part.files.append(
            FileRecord(
                file=rel,
                patient=patient,
                study=study,
                modality=str(ds.Modality),
                sop_class_uid=str(ds.SOPClassUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                study_instance_uid=str(ds.StudyInstanceUID),
                series_instance_uid=str(ds.SeriesInstanceUID),
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
                transfer_syntax_uid=str(syntax),
                number_of_frames=int(ds.get("NumberOfFrames", 1) or 1),
                references=instance.references,
            )
        )


_CLINICAL = (
    ("CT HEAD AND CHEST W/O CONTRAST", "CHEST", "Trauma r/o bleed"),
    ("MR BRAIN W/O CONTRAST", "BRAIN", "Headache"),
    ("XR CHEST PORTABLE AND US ABDOMEN", "ABDOMEN", "RUQ pain"),
)


def _study_info(
    seed: int, rng: np.random.Generator, patient: Patient, number: int, date: dt.date
) -> StudyInfo:
    clinical, body_part, reason = _CLINICAL[number]
    hour, minute = int(rng.integers(7, 19)), int(rng.integers(0, 60))
    return StudyInfo(
        seed=seed,
        patient=patient,
        site=make_site(rng, patient.index + number),
        index=number,
        uid=uid(seed, "study", patient.index, number),
        frame_of_reference_uid=uid(seed, "frame", patient.index, number),
        date=date,
        time=f"{hour:02d}{minute:02d}{int(rng.integers(0, 60)):02d}",
        accession=f"ACC{int(rng.integers(1_000_000, 9_999_999))}",
        study_id=f"S{int(rng.integers(10_000, 99_999))}",
        clinical=clinical,
        body_part=body_part,
        reason=reason,
    )


def _series(
    study: StudyInfo,
    number: int,
    modality: str,
    description: str,
    *,
    protocol: str = "",
    named: bool = False,
    vendor: tuple[str, str] = ("GE MEDICAL SYSTEMS", "Revolution CT"),
) -> SeriesInfo:
    """A series started ``3 * number`` minutes into the study."""
    minutes = 3 * number
    hh, mm, ss = int(study.time[:2]), int(study.time[2:4]) + minutes, int(study.time[4:])
    time = f"{(hh + mm // 60) % 24:02d}{mm % 60:02d}{ss:02d}"
    series_uid = uid(study.seed, "series", study.patient.index, study.index, number)
    manufacturer, model = vendor
    return SeriesInfo(
        series_uid, number, modality, description, time, protocol, named, manufacturer, model
    )


def _sop(study: StudyInfo, series: SeriesInfo, k: int) -> str:
    return uid(study.seed, "sop", study.patient.index, study.index, series.number, k)


def _sops(study: StudyInfo, series: SeriesInfo, count: int) -> list[str]:
    return [_sop(study, series, k) for k in range(count)]


def _series_folder(series: SeriesInfo) -> str:
    return f"{series.number:03d}_{series.modality}"


def _study_ct(study: StudyInfo, rng: np.random.Generator) -> Iterator[tuple[str, Instance]]:
    scale = float(rng.uniform(0.94, 1.06))
    chest = Chest((0.0, 0.0, -350.0), scale)
    head = Head((0.0, 0.0, 0.0), scale)
    soft = _series(study, 2, "CT", "AX 5MM SOFT TISSUE CHEST", protocol="CHEST ROUTINE")
    lung = _series(study, 3, "CT", "AX 2.5MM LUNG", protocol="CHEST ROUTINE", named=True)
    chest_geometry = Geometry.centred((0.0, 0.0, -350.0), AXIAL, 380.0, 64, 5.0, 5.0, 6)
    lung_geometry = Geometry.centred((0.0, 0.0, -350.0), AXIAL, 380.0, 64, 2.5, 2.5, 8)
    soft_images = []
    uids = _sops(study, soft, chest_geometry.count)
    for instance in ct_series(study, soft, chest_geometry, chest, rng, "STANDARD", uids):
        soft_images.append(instance.ds)
        yield f"{_series_folder(soft)}/{instance.name}", instance
    uids = _sops(study, lung, lung_geometry.count)
    for instance in ct_series(study, lung, lung_geometry, chest, rng, "LUNG", uids):
        instance.syntax = JPEGLSLossless
        yield f"{_series_folder(lung)}/{instance.name}", instance
    volume = _series(study, 4, "CT", "HEAD 3D", protocol="HEAD ROUTINE", named=True)
    head_geometry = Geometry.centred((0.0, -12.0, 4.0), AXIAL, 240.0, 64, 5.0, 5.0, 48)
    uids = _sops(study, volume, head_geometry.count)
    for instance in ct_series(study, volume, head_geometry, head, rng, "SOFT", uids):
        yield f"{_series_folder(volume)}/{instance.name}", instance
    fonts = available_fonts()
    rt = _series(study, 5, "RTSTRUCT", "CHEST CONTOURS")
    rs = structure_set(study, rt, soft_images, chest_geometry, chest, _sop(study, rt, 0))
    yield f"{_series_folder(rt)}/{rs.name}", rs
    sr = _series(study, 6, "SR", "CHEST REPORT")
    report = text_report(study, sr, soft_images, _sop(study, sr, 0))
    yield f"{_series_folder(sr)}/{report.name}", report
    pr = _series(study, 7, "PR", "CHEST ANNOTATION")
    gsps = presentation_state(study, pr, soft_images[2:4], _sop(study, pr, 0))
    yield f"{_series_folder(pr)}/{gsps.name}", gsps
    sc = _series(study, 8, "CT", "DOSE REPORT", named=True)
    family = ascii_folder(study.patient.name.family)
    dose = dose_report(study, sc, rng, fonts, _sop(study, sc, 0), f"{family}_DOSE.dcm")
    yield f"{_series_folder(sc)}/{dose.name}", dose
    dx = _series(study, 1, "DX", "CHEST PA", vendor=("AGFA", "DX-D 600"))
    name = f"{family}_{study.patient.patient_id}_CHEST.dcm"
    image = radiograph_image(study, dx, chest, rng, fonts, _sop(study, dx, 0), name, True)
    yield f"{_series_folder(dx)}/{image.name}", image


def _study_mr(study: StudyInfo, rng: np.random.Generator) -> Iterator[tuple[str, Instance]]:
    head = Head((0.0, 10.0, 20.0), float(rng.uniform(0.94, 1.06)))
    siemens = ("SIEMENS", "Prisma")
    t1 = _series(study, 1, "MR", "AX T1 SE BRAIN", protocol="BRAIN ROUTINE", vendor=siemens)
    flair = _series(
        study, 2, "MR", "SAG T2 FLAIR", protocol="BRAIN ROUTINE", named=True, vendor=siemens
    )
    mprage = _series(study, 3, "MR", "3D T1 MPRAGE HEAD", protocol="BRAIN 3D", vendor=siemens)
    plans = (
        (
            t1,
            Geometry.centred((0.0, 10.0, 40.0), AXIAL, 230.0, 64, 5.0, 6.0, 5),
            T1_SE,
            RLELossless,
        ),
        (
            flair,
            Geometry.centred((0.0, 10.0, 20.0), SAGITTAL, 240.0, 64, 5.0, 6.0, 5),
            FLAIR,
            ImplicitVRLittleEndian,
        ),
        (
            mprage,
            Geometry.centred((0.0, -2.0, 20.0), SAGITTAL, 240.0, 64, 3.75, 3.75, 48),
            MPRAGE,
            "",
        ),
    )
    for series, geometry, protocol, syntax in plans:
        uids = _sops(study, series, geometry.count)
        for instance in mr_series(study, series, geometry, head, rng, protocol, uids):
            instance.syntax = syntax
            if series is flair:
                instance.name = instance.name.removesuffix(".dcm")  # exports without a suffix
            yield f"{_series_folder(series)}/{instance.name}", instance


def _study_xr_us(study: StudyInfo, rng: np.random.Generator) -> Iterator[tuple[str, Instance]]:
    fonts = available_fonts()
    family = ascii_folder(study.patient.name.family)
    cr = _series(study, 1, "CR", "CHEST AP PORTABLE", vendor=("FUJIFILM", "FCR Go"))
    chest = Chest((0.0, 0.0, -350.0), float(rng.uniform(0.94, 1.06)), table=False)
    name = f"{family}_CR.dcm"
    image = radiograph_image(study, cr, chest, rng, fonts, _sop(study, cr, 0), name, False)
    image.syntax = DeflatedExplicitVRLittleEndian
    yield f"{_series_folder(cr)}/{image.name}", image
    us = _series(study, 2, "US", "ABDOMEN RUQ", named=True, vendor=("ACME ULTRASOUND", "Sono 7"))
    still = ultrasound_image(study, us, rng, fonts, _sop(study, us, 0), f"{family}_US1.dcm", 1, 1)
    still.syntax = JPEG2000Lossless
    yield f"{_series_folder(us)}/{still.name}", still
    cine = ultrasound_image(study, us, rng, fonts, _sop(study, us, 1), f"{family}_US2.dcm", 6, 2)
    cine.syntax = RLELossless
    yield f"{_series_folder(us)}/{cine.name}", cine


def _filename_plants(instance: Instance, patient: Patient, path: str) -> None:
    for value in (ascii_folder(patient.name.family), patient.patient_id):
        if value in path:
            instance.planter.mark_path("filename", Category.FILENAME, value)
