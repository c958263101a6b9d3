"""Stages of the per-file journey: read, gate, header, pixel and face hooks, write.

Every stage takes an :class:`Item` and returns it, or raises :class:`Rejected` (quarantine, or
exclusion when ``excluded=True``). ``process_file`` runs them in order for one input path; it is
a plain top-level function so that process pools and Dask workers can run it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from radguard.deid.engine import Engine
from radguard.deid.keys import Keyring
from radguard.deid.pseudonym import Pseudonymizer
from radguard.errors import DICOM_READ_ERRORS, Rejected
from radguard.govern.consent import ConsentGate
from radguard.profile.options import Option
from radguard.settings import Allowance, PixelPolicy, Policy

if TYPE_CHECKING:
    from radguard.pixels.clean import PixelCleaner

# PS3.4 / PS3.6: objects whose content header rules cannot make safe.
_ENCAPSULATED_DOCUMENTS = {
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    "1.2.840.10008.5.1.4.1.1.104.2": "Encapsulated CDA",
    "1.2.840.10008.5.1.4.1.1.104.3": "Encapsulated STL",
    "1.2.840.10008.5.1.4.1.1.104.4": "Encapsulated OBJ",
    "1.2.840.10008.5.1.4.1.1.104.5": "Encapsulated MTL",
}
_RAW_DATA = {"1.2.840.10008.5.1.4.1.1.66": "Raw Data"}
_VIDEO_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "Video Microscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image",
}
_VIDEO_SYNTAX_PREFIXES = ("1.2.840.10008.1.2.4.10", "1.2.840.10008.1.2.4.11")
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for a run (picklable: sent once per worker)."""

    policy: Policy
    keyring: Keyring = field(repr=False)
    out_dir: Path
    dry_run: bool = False
    consent: ConsentGate | None = None  # keyed-hash decisions for --purpose
    face_plan: str = ""  # the defacing pre-pass's plan (radguard.deface.pipeline)


@dataclass
class Item:
    """One file on its way through the stages."""

    path: Path
    digest: str
    dataset: Dataset | None = None
    modality: str = ""
    sop_class: str = ""
    output: str = ""
    mappings: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: int = 0
    pixel_identifiers: tuple[str, ...] = ()  # header values read before cleaning (pixel stage)
    overlays_held: tuple[int, ...] = ()  # overlay groups the graphics stage must clean or remove


@dataclass
class FileResult:
    """What became of one input (sent back from the worker to the run)."""

    digest: str
    path: str
    status: str  # released | excluded | quarantined | failed
    output: str = ""
    reasons: list[str] = field(default_factory=list)
    modality: str = ""
    mappings: list[tuple[str, str, str]] = field(default_factory=list)
    size: int = 0


Stage = Callable[[Item, "Context"], Item]


@dataclass
class Context:
    job: Job
    engine: Engine


@lru_cache(maxsize=4)
def _context(job: Job) -> Context:
    """One engine per worker process and job (compiled rules are reused for every file)."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # its messages quote values
    return Context(job, Engine(job.policy, Pseudonymizer(job.keyring)))


def read_stage(item: Item, ctx: Context | None = None) -> Item:
    """Parse the file (tolerantly) and check it is complete enough to de-identify."""
    path = item.path
    try:
        item.size = path.stat().st_size
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True)  # no preamble / no meta: old files
                if not any(tag >> 16 == 0x0008 for tag in ds.keys()):
                    raise Rejected(
                        "not a DICOM file (no DICM preamble, no DICOM elements)"
                    ) from None
        # Odd input is accepted and recorded; decoder messages are masked (they quote values).
        for message in {_short(w.message) for w in caught}:  # type: ignore[arg-type]
            item.notes.append(f"input: {message}")
    except Rejected:
        raise
    except DICOM_READ_ERRORS as error:
        raise Rejected(f"unreadable: {type(error).__name__}: {_short(error)}") from error
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class == _MEDIA_STORAGE_DIRECTORY or ("DirectoryRecordSequence" in ds and not sop_class):
        raise Rejected(
            "DICOMDIR index: excluded (the files it lists are processed individually)",
            excluded=True,
        )
    if not sop_class or not str(ds.get("SOPInstanceUID", "") or ""):
        raise Rejected("missing SOP Class UID or SOP Instance UID")
    try:
        _check_pixels(ds)
        ds.get("PatientID")  # decode the identity early: a bad value fails here, closed
        ds.get("StudyInstanceUID")
    except Rejected:
        raise
    except Exception as error:
        raise Rejected(f"unreadable: {type(error).__name__}: {_short(error)}") from error
    item.dataset = ds
    item.sop_class = sop_class
    item.modality = str(ds.get("Modality", "") or "").upper() or "??"
    return item


def _check_pixels(ds: Dataset) -> None:
    """Native pixel data shorter than its geometry says means a truncated file."""
    if "PixelData" not in ds:
        return
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        return
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as error:
        raise Rejected("pixel data present but image geometry is missing or invalid") from error
    if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # PS3.3 C.7.6.3.1.2: two chroma samples shared by each pixel pair
    expected = (rows * cols * frames * samples * bits + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected:
        raise Rejected(f"truncated pixel data: {actual} bytes, geometry needs {expected}")


def gate_stage(item: Item, ctx: Context) -> Item:
    """Exclude what the policy excludes and what header rules cannot make safe."""
    ds = item.dataset
    assert ds is not None
    policy = ctx.job.policy
    allow = policy.exclude.allow
    syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if item.sop_class in _ENCAPSULATED_DOCUMENTS and Allowance.ENCAPSULATED_DOCUMENTS not in allow:
        raise Rejected(
            f"{_ENCAPSULATED_DOCUMENTS[item.sop_class]}: the embedded document "
            "cannot be de-identified by header rules",
            excluded=True,
        )
    if item.sop_class in _RAW_DATA and Allowance.RAW_DATA not in allow:
        raise Rejected("Raw Data object: opaque vendor content", excluded=True)
    is_video = item.sop_class in _VIDEO_SOP_CLASSES or syntax.startswith(_VIDEO_SYNTAX_PREFIXES)
    if is_video and Allowance.VIDEO not in allow:
        raise Rejected("video: frames cannot be checked for burned-in text", excluded=True)
    if item.modality in policy.exclude.modalities:
        raise Rejected(f"policy excludes modality {item.modality}", excluded=True)
    if item.sop_class in policy.exclude.sop_classes:
        raise Rejected(f"policy excludes SOP class {item.sop_class}", excluded=True)
    study = str(ds.get("StudyDescription", "") or "")
    for pattern in policy.exclude.study_description_patterns:
        if re.search(pattern, study, re.IGNORECASE):
            raise Rejected(f"policy excludes study description pattern {pattern!r}", excluded=True)
    description = str(ds.get("SeriesDescription", "") or "")
    for pattern in policy.exclude.series_description_patterns:
        if re.search(pattern, description, re.IGNORECASE):
            raise Rejected(f"policy excludes series description pattern {pattern!r}", excluded=True)
    return item


def consent_stage(item: Item, ctx: Context) -> Item:
    """Consent for the run's purpose, before any pixel is processed; records input signatures.

    Patients who opted out (or, with ``--require-consent``, never opted in) are excluded; the
    check compares keyed hashes of the Patient ID, so no identifier is held or reported.
    """
    ds = item.dataset
    assert ds is not None
    if "DigitalSignaturesSequence" in ds:  # de-identification removes it: record it now
        from radguard.govern.dsig import intake_note

        note = intake_note(ds)
        if note:
            item.notes.append(note)
    gate = ctx.job.consent
    if gate is not None:
        reason = gate.check(ctx.job.keyring, str(ds.get("PatientID", "") or ""))
        if reason is not None:
            raise Rejected(reason, excluded=True)
    return item


def header_stage(item: Item, ctx: Context) -> Item:
    """PS3.15 Annex E on the header (the engine)."""
    ds = item.dataset
    assert ds is not None
    original_study = str(ds.get("StudyInstanceUID", "") or "")
    options = ctx.job.policy.options
    graphics = Option.CLEAN_GRAPHICS in options
    if graphics:
        from radguard.pixels.graphics import has_graphics

        graphics = has_graphics(ds)
    if Option.CLEAN_PIXEL_DATA in options or graphics:
        from radguard.pixels.classify import header_identifiers

        item.pixel_identifiers = header_identifiers(ds)  # the pixel stage matches text to them
    try:
        if graphics:  # PS3.15 E.3.3: text objects judged on the original header values
            from radguard.pixels.graphics import clean_annotations

            policy = ctx.job.policy
            item.notes.extend(
                clean_annotations(ds, item.pixel_identifiers, policy.pixels, policy.text_patterns)
            )
        outcome = ctx.engine.apply(ds, hold_overlays=graphics)
    except Rejected:
        raise
    except Exception as error:
        raise Rejected(
            f"de-identification failed: {type(error).__name__}: {_short(error)}"
        ) from error
    item.overlays_held = tuple(outcome.overlays_held)
    item.mappings = outcome.mappings
    item.notes.extend(outcome.notes)
    study = str(ds.get("StudyInstanceUID", "") or "")
    if original_study and study != original_study:
        item.mappings.append(("study_uid", original_study, study))
    item.output = "/".join(
        [
            _safe_name(outcome.patient_pseudonym),
            _safe_name(study or "nostudy"),
            _safe_name(str(ds.get("SeriesInstanceUID", "") or "noseries")),
            _safe_name(str(ds.SOPInstanceUID)) + ".dcm",
        ]
    )
    return item


def graphics_stage(item: Item, ctx: Context) -> Item:
    """Clean Graphics (PS3.15 E.3.3) for overlays: OCR, clear identifying bits, re-read.

    Overlays the header engine held are cleaned with the pixel stage's OCR engine and kept only
    when nothing identifying is read again; any other overlay group left (embedded in Pixel
    Data, or held but not cleanable) is removed, with the reason noted.
    """
    ds = item.dataset
    assert ds is not None
    if not any(0x6000 <= int(tag) >> 16 <= 0x601E for tag in ds.keys()):
        return item
    from radguard.pixels.graphics import clean_overlays

    pixels = ctx.job.policy.pixels
    item.notes.extend(
        clean_overlays(
            ds,
            item.overlays_held,
            item.pixel_identifiers,
            pixels,
            lambda: _pixel_cleaner(pixels).engine,
        )
    )
    item.overlays_held = ()
    return item


def pixel_stage(item: Item, ctx: Context) -> Item:
    """Clean Pixel Data (PS3.15 E.3.1): OCR, redact identifying text, re-read, or quarantine.

    Files the triage rule selects (``[pixels]`` in the policy) are read when the option is on;
    the reason is noted per file. A file that says its pixels carry burned-in text (Burned In
    Annotation YES) is never released uncleaned, whatever the options, unless the policy
    allows it explicitly.
    """
    ds = item.dataset
    assert ds is not None
    policy = ctx.job.policy
    if Option.CLEAN_PIXEL_DATA in policy.options:
        reason = _needs_pixel_review(item, policy)
        if reason is not None:
            from radguard.pixels.engines import EngineUnavailable

            try:
                report = _pixel_cleaner(policy.pixels).clean(ds, item.pixel_identifiers)
            except Rejected:
                raise
            except EngineUnavailable as error:
                raise Rejected(f"clean-pixel-data: OCR engine unavailable ({error})") from error
            except Exception as error:
                raise Rejected(
                    f"clean-pixel-data failed: {type(error).__name__}: {_short(error)}"
                ) from error
            item.notes.append(report.summary())
            return item
        if "PixelData" in ds:
            item.notes.append(
                f"pixels: not read (no triage rule matched, modality {item.modality})"
            )
    burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
    if burned and Allowance.BURNED_IN_ANNOTATION not in policy.exclude.allow:
        raise Rejected(
            "Burned In Annotation is YES and Clean Pixel Data is not selected "
            "(select clean-pixel-data, or allow 'burned-in-annotation' in the policy)"
        )
    return item


def _needs_pixel_review(item: Item, policy: Policy) -> str | None:
    """The triage rule (``pixels.scan``, ``pixels.modalities``): why to read this file."""
    from radguard.pixels.clean import triage

    assert item.dataset is not None
    return triage(item.dataset, policy.pixels)


@lru_cache(maxsize=2)
def _pixel_cleaner(settings: PixelPolicy) -> PixelCleaner:
    """One OCR engine and cleaner per worker process and policy (models load once)."""
    from radguard.pixels.clean import PixelCleaner

    return PixelCleaner(settings)


def face_stage(item: Item, ctx: Context) -> Item:
    """Clean Recognizable Visual Features (PS3.15 E.3.2): the series-level pre-pass decided.

    A defaced file arrives here in place of its original (with proof, noted); a series with no
    face in its field of view is released as it is, the finding noted; a refused one is
    quarantined with the reason. Without a plan (the pre-pass did not run) a possible head
    image is quarantined: "refused" never counts as de-identified.
    """
    if Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES not in ctx.job.policy.options:
        return item
    if ctx.job.face_plan:
        entry = _face_plan(ctx.job.face_plan).get(item.digest)
        if entry is None:
            if item.modality in ("CT", "MR", "PT") and "PixelData" in (item.dataset or {}):
                raise Rejected("clean-recognizable-visual-features: image missed by the pre-pass")
            return item  # not an image of a volume modality: no face to remove
        status, reason = entry
        if status == "refused":
            raise Rejected(f"clean-recognizable-visual-features refused: {reason}")
        item.notes.append(f"face: {status}: {reason}")
        return item
    ds = item.dataset
    assert ds is not None
    body = str(ds.get("BodyPartExamined", "") or "").upper()
    if item.modality in ("CT", "MR", "PT") and body in (
        "HEAD",
        "BRAIN",
        "NECK",
        "HEADNECK",
        "SKULL",
        "",
    ):
        raise Rejected(
            "clean-recognizable-visual-features requested but the defacing pre-pass did "
            "not run for a possible head image"
        )
    return item


@lru_cache(maxsize=2)
def _face_plan(path: str) -> dict[str, tuple[str, str]]:
    from radguard.deface.pipeline import load_plan

    return load_plan(path)


def write_stage(item: Item, ctx: Context) -> Item:
    """Write the output atomically: a temporary name in the target folder, then rename."""
    if ctx.job.dry_run:
        return item
    ds = item.dataset
    assert ds is not None
    target = ctx.job.out_dir / item.output
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rg-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            ds.save_as(handle, enforce_file_format=True)
        try:
            os.link(tmp, target)  # atomic, and refuses to replace an existing output
        except FileExistsError:
            if not looks_complete(target):
                os.replace(tmp, target)  # a partial file left by a crash: replace it
            elif not _same_bytes(tmp, target):
                raise Rejected(
                    "another input with the same SOP Instance UID but different "
                    "content was already released (duplicate instance UID)"
                ) from None
    except Rejected:
        raise
    except Exception as error:
        raise Rejected(f"cannot write output: {type(error).__name__}: {_short(error)}") from error
    finally:
        Path(tmp).unlink(missing_ok=True)
    return item


def looks_complete(path: Path) -> bool:
    """An output that survived a crash: present, with its preamble and DICM prefix."""
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _same_bytes(a: str, b: Path) -> bool:
    """Outputs are deterministic: a re-run (resume) writes identical bytes."""
    with open(a, "rb") as left, b.open("rb") as right:
        while True:
            x, y = left.read(1 << 20), right.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


STAGES: tuple[Stage, ...] = (
    read_stage,
    gate_stage,
    consent_stage,
    header_stage,
    graphics_stage,
    pixel_stage,
    face_stage,
    write_stage,
)


def process_file(path: str, digest: str, job: Job) -> FileResult:
    """Run every stage on one input file; never raises for a problem with the file."""
    ctx = _context(job)
    item = Item(Path(path), digest)
    try:
        with warnings.catch_warnings():
            # pydicom warns with the offending values in the message: PHI stays off the console
            warnings.simplefilter("ignore")
            for stage in STAGES:
                item = stage(item, ctx)
    except Rejected as rejection:
        status = "excluded" if rejection.excluded else "quarantined"
        return FileResult(
            digest, path, status, "", [rejection.reason, *item.notes], item.modality, [], item.size
        )
    except Exception as error:  # noqa: BLE001 - a bug must not stop the run; it is reported
        return FileResult(
            digest,
            path,
            "failed",
            "",
            [f"internal error: {type(error).__name__}: {_short(error)}"],
            item.modality,
            [],
            item.size,
        )
    return FileResult(
        digest, path, "released", item.output, item.notes, item.modality, item.mappings, item.size
    )


def quarantine_copy(path: str, digest: str, folder: Path) -> None:
    """Copy an original that was not released to the 0700 quarantine folder."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    shutil.copy2(path, folder / f"{digest}.dcm")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._^-]", "_", text).replace("^", "_")[:64] or "_"


def _short(error: BaseException) -> str:
    """An error message with quoted values masked: decoders quote the values they choke on."""
    text = str(error).replace("\n", " ")
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return text[:200]
