"""Head volumes for the defacing tests and bench: the project's phantom, written as DICOM
series or NIfTI, and the real whole-head template that pydeface's wheel ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from radguard.phantom.volumes import Head, Tissue, ct_stored, mr_stored

BRAIN_TISSUES = (Tissue.GRAY, Tissue.WHITE)


def head_labels(step: float, head: Head | None = None) -> NDArray[np.uint8]:
    """Tissue labels of the phantom head on an LPS grid of ``step`` mm, indexed (i=x, j=y, k=z)
    with i along +x (left), j along +y (posterior), k along +z (head)."""
    head = head or Head()
    xs = np.arange(-100.0, 100.0, step, dtype=np.float32)
    ys = np.arange(-130.0, 120.0, step, dtype=np.float32)
    zs = np.arange(-140.0, 130.0, step, dtype=np.float32)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)
    return head.labels(grid)


def origin() -> tuple[float, float, float]:
    return (-100.0, -130.0, -140.0)


def write_head_series(
    folder: Path, step: float = 2.0, modality: str = "CT", seed: int = 1, body_part: str = "HEAD"
) -> NDArray[np.uint8]:
    """An axial head series (one file per slice, real geometry); returns the labels."""
    labels = head_labels(step)
    rng = np.random.default_rng(seed)
    stored = ct_stored(labels, rng) if modality == "CT" else mr_stored(labels, "T1", rng)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    x0, y0, z0 = origin()
    for k in range(labels.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        sop_class = CTImageStorage if modality == "CT" else MRImageStorage
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = sop_class
        ds.Modality = modality
        ds.PatientName = "PHANTOM^HEAD"
        ds.PatientID = "PH0001"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.BodyPartExamined = body_part
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x0, y0, z0 + k * step]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [step, step]
        ds.SliceThickness = step
        ds.Rows, ds.Columns = labels.shape[1], labels.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype(np.uint16).tobytes()
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return labels


def pydeface_template() -> Path | None:
    """pydeface's mean whole-head T1 (MIT; ships in its wheel), if pydeface is installed."""
    spec = importlib.util.find_spec("pydeface")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mean_reg2mean.nii.gz"
    return path if path.is_file() else None


def read_back(folder: Path) -> list[Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
