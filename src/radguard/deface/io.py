"""Reading and writing volumes: DICOM series (from their geometry) and NIfTI (nibabel).

A DICOM series becomes a volume only when its slices form one regular stack: same size,
orientation and pixel spacing, positions on a line at a regular step (gantry tilt allowed:
the step may be oblique to the slice normal). Written back, every slice keeps its own header
and geometry, gets new SOP Instance and Series Instance UIDs, is marked DERIVED with a Source
Image Sequence, and carries Recognizable Visual Features NO and the 113102 code (PS3.16 CID
7050, Clean Recognizable Visual Features Option).
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from radguard.deface.volume import Modality, Volume, VolumeError
from radguard.errors import DICOM_READ_ERRORS

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CLEAN_VISUAL_FEATURES_CODE = ("113102", "DCM", "Clean Recognizable Visual Features Option")
_SPACING_TOLERANCE = 0.02  # share of the step a slice may sit off the line


@dataclass
class DicomSeries:
    """A volume read from DICOM files, with the files in slice order (axis 2)."""

    volume: Volume
    paths: list[Path]


def read_header(path: Path) -> Dataset:
    """The header of one file, without pixel data (quiet: pydicom's warnings quote values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def read_series(paths: Sequence[Path]) -> DicomSeries:
    """Assemble single-frame slices of one series into a volume, in slice order."""
    if not paths:
        raise VolumeError("no files in the series")
    headers = []
    for path in paths:
        try:
            headers.append((read_header(path), Path(path)))
        except DICOM_READ_ERRORS as error:
            raise VolumeError(f"{Path(path).name}: unreadable ({type(error).__name__})") from error
    first = headers[0][0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise VolumeError("multi-frame images are not assembled into volumes yet")
    try:
        orientation = np.asarray([float(v) for v in first.ImageOrientationPatient], np.float64)
        spacing = [float(v) for v in first.PixelSpacing]
        rows, cols = int(first.Rows), int(first.Columns)
    except (AttributeError, TypeError, ValueError) as error:
        raise VolumeError("slices lack image geometry (orientation, spacing, size)") from error
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    placed: list[tuple[float, NDArray[np.float64], Dataset, Path]] = []
    for ds, path in headers:
        try:
            same = (
                np.allclose([float(v) for v in ds.ImageOrientationPatient], orientation, atol=1e-3)
                and np.allclose([float(v) for v in ds.PixelSpacing], spacing, atol=1e-3)
                and (int(ds.Rows), int(ds.Columns)) == (rows, cols)
            )
            position = np.asarray([float(v) for v in ds.ImagePositionPatient], np.float64)
        except (AttributeError, TypeError, ValueError) as error:
            raise VolumeError(f"{path.name}: no image position or orientation") from error
        if not same:
            raise VolumeError("slices differ in orientation, spacing or size")
        placed.append((float(position @ normal), position, ds, path))
    placed.sort(key=lambda p: p[0])
    positions = np.stack([p[1] for p in placed])
    if len(placed) > 1:
        step = (positions[-1] - positions[0]) / (len(placed) - 1)
        gap = float(np.linalg.norm(step))
        if gap < 1e-3:
            raise VolumeError("several slices share one position (not one volume)")
        expected = positions[0] + np.arange(len(placed))[:, None] * step
        if float(np.abs(positions - expected).max()) > _SPACING_TOLERANCE * gap + 0.01:
            raise VolumeError("slices are not evenly spaced (gaps or overlapping stacks)")
    else:
        thickness = float(first.get("SliceThickness", 1.0) or 1.0)
        step = normal * thickness
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]  # i: along a row, columns apart
    lps[:3, 1] = col_dir * spacing[0]  # j: down a column, rows apart
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    slices, slopes, intercepts = [], [], []
    for _, _, _, path in placed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
                pixels = ds.pixel_array
            except Exception as error:
                raise VolumeError(f"{path.name}: pixel data cannot be decoded") from error
        if pixels.shape != (rows, cols):
            raise VolumeError(f"{path.name}: not a single-sample single-frame image")
        slices.append(pixels.T)
        slopes.append(float(ds.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(ds.get("RescaleIntercept", 0.0) or 0.0))
    data = np.stack(slices, axis=2)
    modality = Modality.parse(str(first.get("Modality", "") or "OT"))
    volume = Volume(data, _LPS_TO_RAS @ lps, modality, np.asarray(slopes), np.asarray(intercepts))
    return DicomSeries(volume, [p[3] for p in placed])


def derived_uid(original: str, salt: str) -> str:
    """A new UID derived from an old one (deterministic: re-runs write the same bytes)."""
    digest = hashlib.sha256(f"radguard-deface/{salt}/{original}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def write_series(series: DicomSeries, data: NDArray[np.generic], out_dir: Path) -> list[Path]:
    """Write the defaced slices as a new series beside nothing else: one file per slice."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, path in enumerate(series.paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
        stored = np.ascontiguousarray(data[:, :, k].T)  # the dtype the pixels decoded to
        _mark_defaced(ds, stored)
        name = f"{k + 1:04d}.dcm"
        _write_atomic(ds, out_dir / name)
        written.append(out_dir / name)
    return written


def _mark_defaced(ds: Dataset, stored: NDArray[np.generic]) -> None:
    original_sop = str(ds.SOPInstanceUID)
    original_class = str(ds.SOPClassUID)
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    ds["PixelData"].is_undefined_length = False  # native now, whatever it was encoded as
    ds.SOPInstanceUID = derived_uid(original_sop, "sop")
    ds.SeriesInstanceUID = derived_uid(str(ds.get("SeriesInstanceUID", original_sop)), "series")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    image_type = [str(v) for v in (ds.get("ImageType") or ["ORIGINAL", "PRIMARY"])]
    ds.ImageType = ["DERIVED", *image_type[1:]] if image_type else ["DERIVED", "PRIMARY"]
    ds.DerivationDescription = "facial features removed (radguard deface)"
    source = Dataset()
    source.ReferencedSOPClassUID = original_class
    source.ReferencedSOPInstanceUID = original_sop
    ds.SourceImageSequence = DicomSequence([source])
    ds.RecognizableVisualFeatures = "NO"  # PS3.3 C.7.6.16 (0028,0302)
    value, scheme, meaning = CLEAN_VISUAL_FEATURES_CODE
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    existing = list(ds.get("DeidentificationMethodCodeSequence") or [])
    if not any(str(i.get("CodeValue", "")) == value for i in existing):
        existing.append(item)
    ds.DeidentificationMethodCodeSequence = DicomSequence(existing)
    methods = str(ds.get("DeidentificationMethod", "") or "")
    if "deface" not in methods:
        ds.DeidentificationMethod = (methods + "; " if methods else "") + "radguard deface"
    if ds.get("BurnedInAnnotation") is None:
        ds.BurnedInAnnotation = "NO"


def _write_atomic(ds: Dataset, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".rg-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            ds.save_as(handle, enforce_file_format=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass
class NiftiVolume:
    """A volume read from a NIfTI file, with the image kept to write its header back."""

    volume: Volume
    image: Any  # nibabel.Nifti1Image | Nifti2Image


def read_nifti(path: Path, modality: str | Modality = Modality.MR) -> NiftiVolume:
    """A 3D NIfTI file (4D with one volume accepted); stored values kept unscaled."""
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))
    except Exception as error:
        raise VolumeError(f"{path.name}: not a readable NIfTI file") from error
    proxy = image.dataobj
    raw = np.asarray(proxy.get_unscaled()) if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
    if raw.ndim == 4 and raw.shape[3] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise VolumeError(f"{path.name}: {raw.ndim}D image; split 4D series into volumes first")
    slope = getattr(proxy, "slope", 1.0)
    inter = getattr(proxy, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    volume = Volume(raw, np.asarray(image.affine, np.float64), Modality.parse(modality))
    volume.slope[:] = slope
    volume.intercept[:] = inter
    return NiftiVolume(volume, image)


def write_nifti(source: NiftiVolume, data: NDArray[np.generic], target: Path) -> None:
    """Write ``data`` (stored values) with the source's header, affine and scaling."""
    import nibabel as nib

    header = copy.deepcopy(source.image.header)
    shape = source.image.shape
    values = data.reshape(shape) if len(shape) == 4 else data
    image = type(source.image)(values, source.image.affine, header)
    image.header.set_data_dtype(data.dtype)
    image.header.set_slope_inter(float(source.volume.slope[0]), float(source.volume.intercept[0]))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part{''.join(target.suffixes)}")
    nib.save(image, str(tmp))
    os.replace(tmp, target)
