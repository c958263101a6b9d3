"""Image objects: CT and MR slices with exact geometry; DX, CR, US and SC with burned-in text.

Each builder returns an :class:`Instance`: the dataset, what was planted in it, the text boxes
burned into its pixels and the instances it refers to. Writing (and compression) is left to
:mod:`radguard.phantom.build`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from radguard.phantom.answer import Category, Expect, Planter, Reference, tag_text
from radguard.phantom.burn import Box, Font, burn_block
from radguard.phantom.headers import (
    SeriesInfo,
    StudyInfo,
    add_overlay,
    add_private,
    base,
    image_common,
    pixels,
    written_date,
)
from radguard.phantom.volumes import (
    Chest,
    Head,
    Points,
    ct_stored,
    mr_stored,
    plane_points,
    radiograph,
    ultrasound,
)

C = Category
KEEP = Expect.KEEP
PIXEL_DATA = "(7FE0,0010)"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@dataclass
class Instance:
    """One object ready to be written."""

    ds: Dataset
    planter: Planter
    name: str
    syntax: str
    burned: list[tuple[int, Box, str]] = field(default_factory=list)  # frame, box, source
    references: list[Reference] = field(default_factory=list)


def ds_text(value: float) -> str:
    """A DS value: at most 16 characters, no trailing zeros."""
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Geometry:
    """A stack of parallel slices: first position, orientation, spacing, thickness, step."""

    first: tuple[float, float, float]
    orientation: tuple[float, ...]
    spacing: tuple[float, float]  # PixelSpacing: between rows, between columns
    rows: int
    cols: int
    thickness: float
    step: float  # distance between slice positions along the normal
    count: int

    @property
    def normal(self) -> np.ndarray:
        """Row direction x column direction (PS3.3 C.7.6.2.1.1)."""
        o = np.asarray(self.orientation, float)
        normal: np.ndarray = np.cross(o[:3], o[3:])
        return normal

    def position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``k`` (0-based): the first one moved along the normal."""
        p = np.asarray(self.first, float) + k * self.step * self.normal
        return (float(p[0]), float(p[1]), float(p[2]))

    def points(self, k: int) -> Points:
        return plane_points(self.position(k), self.orientation, self.spacing, self.rows, self.cols)

    @staticmethod
    def centred(
        center: tuple[float, float, float],
        orientation: tuple[float, ...],
        fov: float,
        size: int,
        thickness: float,
        step: float,
        count: int,
    ) -> Geometry:
        """A square stack of ``count`` slices whose middle is at ``center``."""
        o = np.asarray(orientation, float)
        row_dir, col_dir = o[:3], o[3:]
        normal = np.cross(row_dir, col_dir)
        spacing = fov / size
        half = (size - 1) / 2 * spacing
        first = np.asarray(center) - half * (row_dir + col_dir) - (count - 1) / 2 * step * normal
        position = (float(first[0]), float(first[1]), float(first[2]))
        return Geometry(
            position, orientation, (spacing, spacing), size, size, thickness, step, count
        )


def _plane(ds: Dataset, study: StudyInfo, geometry: Geometry, k: int, planter: Planter) -> None:
    """Frame of Reference and Image Plane modules, geometry recorded as research data."""
    put = planter.put
    position = geometry.position(k)
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    planter.mark((0x00200052,), C.UID, study.frame_of_reference_uid)
    ds.PositionReferenceIndicator = ""
    put(ds, "ImagePositionPatient", [ds_text(v) for v in position], C.RESEARCH, KEEP)
    put(ds, "ImageOrientationPatient", [ds_text(v) for v in geometry.orientation], C.RESEARCH, KEEP)
    put(ds, "PixelSpacing", [ds_text(v) for v in geometry.spacing], C.RESEARCH, KEEP)
    put(ds, "SliceThickness", ds_text(geometry.thickness), C.RESEARCH, KEEP)
    ds.SliceLocation = ds_text(float(np.dot(position, geometry.normal)))
    ds.PatientPosition = "HFS"


def _slices(
    template: Dataset,
    planted: Planter,
    study: StudyInfo,
    geometry: Geometry,
    sop_uids: list[str],
    seconds_per_slice: int,
    series_time: str,
) -> Iterator[tuple[int, Dataset, Planter]]:
    """Per-slice copies of a series template with their own UID, number, times and plane.

    The template holds everything a series shares (built once: building a header is most of
    the cost of a slice); each copy shares the template's element objects until it sets its own.
    """
    shared = [e for e in planted.entries if e[0] not in _PER_INSTANCE]
    common: dict[BaseTag, DataElement | RawDataElement] = {
        tag: template[tag] for tag in template.keys() if tag_text(tag) not in _PER_INSTANCE
    }
    for k, sop_uid in enumerate(sop_uids):
        ds = Dataset()
        ds.update(common)  # the same element objects: never assign to them, only replace
        planter = Planter()
        planter.entries = list(shared)
        time = _plus_seconds(series_time, seconds_per_slice * k)
        planter.put(ds, "InstanceCreationTime", time, C.TIME, KEEP)
        planter.put(ds, "SOPInstanceUID", sop_uid, C.UID)
        image_common(ds, study, planter, k + 1, time)
        _plane(ds, study, geometry, k, planter)
        yield k, ds, planter


_PER_INSTANCE = ("(0008,0013)", "(0008,0018)")  # InstanceCreationTime, SOPInstanceUID


def ct_series(
    study: StudyInfo,
    series: SeriesInfo,
    geometry: Geometry,
    phantom: Chest | Head,
    rng: np.random.Generator,
    kernel: str,
    sop_uids: list[str],
) -> Iterator[Instance]:
    """CT slices: 12-bit stored values, RescaleIntercept -1024 (HU)."""
    planter = Planter()
    ds = base(CTImageStorage, sop_uids[0], study, series, planter, series.time)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    planter.put(ds, "BodyPartExamined", study.body_part, C.RESEARCH, KEEP)
    planter.put(ds, "KVP", "120", C.RESEARCH, KEEP)
    planter.put(ds, "ConvolutionKernel", kernel, C.RESEARCH, KEEP)
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = ds_text(geometry.spacing[1] * geometry.cols)
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "800"
    ds.XRayTubeCurrent = "220"
    ds.BurnedInAnnotation = "NO"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter, ds.WindowWidth = ("-600", "1500") if kernel == "LUNG" else ("40", "400")
    add_private(ds, study, planter, "GE")
    for k, image, planted in _slices(ds, planter, study, geometry, sop_uids, 2, series.time):
        pixels(image, ct_stored(phantom.labels(geometry.points(k)), rng), 12, "MONOCHROME2")
        yield Instance(image, planted, f"IM{k + 1:04d}.dcm", "")


@dataclass(frozen=True)
class MRProtocol:
    """MR acquisition parameters for one weighting."""

    weighting: str
    scanning_sequence: str
    sequence_variant: str
    acquisition: str
    repetition_time: str
    echo_time: str
    inversion_time: str = ""
    flip_angle: str = "90"


T1_SE = MRProtocol("T1", "SE", "SP", "2D", "500", "12")
FLAIR = MRProtocol("FLAIR", "IR", "SK\\SP", "2D", "9000", "120", "2500", "150")
MPRAGE = MRProtocol("T1", "GR\\IR", "SK\\SP\\MP", "3D", "2300", "2.98", "900", "9")


def mr_series(
    study: StudyInfo,
    series: SeriesInfo,
    geometry: Geometry,
    head: Head,
    rng: np.random.Generator,
    protocol: MRProtocol,
    sop_uids: list[str],
) -> Iterator[Instance]:
    """MR slices: 12-bit signal for the protocol's weighting."""
    planter = Planter()
    ds = base(MRImageStorage, sop_uids[0], study, series, planter, series.time)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    planter.put(ds, "BodyPartExamined", study.body_part, C.RESEARCH, KEEP)
    ds.ScanningSequence = protocol.scanning_sequence
    ds.SequenceVariant = protocol.sequence_variant
    ds.ScanOptions = ""
    ds.MRAcquisitionType = protocol.acquisition
    planter.put(ds, "RepetitionTime", protocol.repetition_time, C.RESEARCH, KEEP)
    planter.put(ds, "EchoTime", protocol.echo_time, C.RESEARCH, KEEP)
    if protocol.inversion_time:
        ds.InversionTime = protocol.inversion_time
    ds.EchoTrainLength = "1"
    ds.FlipAngle = protocol.flip_angle
    planter.put(ds, "MagneticFieldStrength", "3", C.RESEARCH, KEEP)
    ds.ImagingFrequency = "123.2"
    ds.ImagedNucleus = "1H"
    ds.NumberOfAverages = "1"
    ds.SpacingBetweenSlices = ds_text(geometry.step)
    ds.BurnedInAnnotation = "NO"
    ds.WindowCenter, ds.WindowWidth = "600", "1200"
    add_private(ds, study, planter, "SIEMENS")
    for k, image, planted in _slices(ds, planter, study, geometry, sop_uids, 7, series.time):
        signal = mr_stored(head.labels(geometry.points(k)), protocol.weighting, rng)
        pixels(image, signal, 12, "MONOCHROME2")
        yield Instance(image, planted, f"IM{k + 1:04d}.dcm", "")


def _plus_seconds(hhmmss: str, seconds: int) -> str:
    total = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:6]) + seconds
    total %= 86400
    return f"{total // 3600:02d}{total // 60 % 60:02d}{total % 60:02d}"


def _fonts(rng: np.random.Generator, available: tuple[str, ...], count: int) -> list[Font]:
    """``count`` fonts drawn from those available, in sizes 10 to 16 (bitmap: its own 11)."""
    chosen = []
    for _ in range(count):
        name = available[int(rng.integers(len(available)))]
        chosen.append(Font(name, 11 if name == "pil-bitmap" else int(rng.integers(10, 17))))
    return chosen


def _burn_identity(
    image: np.ndarray,
    study: StudyInfo,
    rng: np.random.Generator,
    fonts: tuple[str, ...],
    inks: tuple[tuple[int, ...], tuple[int, ...]],
) -> list[Box]:
    """Name, ID and birth date top left; date, site and accession bottom right (dimmer)."""
    patient = study.patient
    top = [patient.name.pn, f"ID: {patient.patient_id}", f"DOB: {written_date(patient.birth_date)}"]
    bottom = [written_date(study.date), study.site.short, f"Acc {study.accession}"]
    boxes = burn_block(image, top, "tl", _fonts(rng, fonts, 3), inks[0])
    boxes += burn_block(image, bottom, "br", _fonts(rng, fonts, 3), inks[1])
    return boxes


def _mark_burned(planter: Planter, boxes: list[Box]) -> None:
    for text in dict.fromkeys(box.text for box in boxes):
        planter.mark((0x7FE00010,), C.BURNED_IN, text)


def radiograph_image(
    study: StudyInfo,
    series: SeriesInfo,
    chest: Chest,
    rng: np.random.Generator,
    fonts: tuple[str, ...],
    sop_uid: str,
    name: str,
    digital: bool,
) -> Instance:
    """A chest radiograph (DX for presentation, or CR) with burned-in text and an overlay."""
    planter = Planter()
    sop_class = (
        DigitalXRayImageStorageForPresentation if digital else ComputedRadiographyImageStorage
    )
    ds = base(sop_class, sop_uid, study, series, planter, series.time)
    image_common(ds, study, planter, 1, series.time)
    size, spacing = 256, 1.4
    image = radiograph(chest, size, size, spacing, chest.center[2])
    boxes = _burn_identity(image, study, rng, fonts, ((4095,), (2900,)))
    below = boxes[2].y + boxes[2].h
    tech = [f"TECH {study.site.operator.family}"]
    low = burn_block(image, tech, "tl", _fonts(rng, fonts, 1), (700,), offset=below)
    boxes += low
    planter.mark((0x7FE00010,), C.BURNED_IN, low[0].text)
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if digital else ["ORIGINAL", "PRIMARY", ""]
    planter.put(ds, "BodyPartExamined", "CHEST", C.RESEARCH, KEEP)
    planter.put(ds, "KVP", "110", C.RESEARCH, KEEP)
    ds.ViewPosition = "PA" if digital else "AP"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [ds_text(spacing), ds_text(spacing)]
    ds.BurnedInAnnotation = "YES"
    pixels(ds, image, 12, "MONOCHROME2")
    ds.WindowCenter, ds.WindowWidth = "2000", "4000"
    if digital:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.AcquisitionContextSequence = []
        ds.ImageLaterality = "U"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        ds.DetectorType = "SCINTILLATOR"
        ds.PixelSpacing = ds.ImagerPixelSpacing
        ds.PositionerType = "NONE"
        ds.FieldOfViewShape = "RECTANGLE"
        ds.AnatomicRegionSequence = [_anatomy()]
    _mark_burned(planter, boxes)
    result = Instance(ds, planter, name, "", [(0, b, PIXEL_DATA) for b in boxes])
    for box in add_overlay(ds, study, planter, _fonts(rng, fonts, 2)):
        result.burned.append((0, box, "(6000,3000)"))
    add_private(ds, study, planter, "")
    return result


def _anatomy() -> Dataset:
    item = Dataset()
    item.CodeValue = "43799004"
    item.CodingSchemeDesignator = "SCT"
    item.CodeMeaning = "Chest"
    return item


def ultrasound_image(
    study: StudyInfo,
    series: SeriesInfo,
    rng: np.random.Generator,
    fonts: tuple[str, ...],
    sop_uid: str,
    name: str,
    frames: int,
    instance: int,
) -> Instance:
    """An abdominal ultrasound: one RGB frame with a colour box, or a MONOCHROME2 cine loop.

    Every frame carries the name and ID; the cine loop's clock changes from frame to frame.
    """
    planter = Planter()
    sop_class = UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    ds = base(sop_class, sop_uid, study, series, planter, series.time)
    image_common(ds, study, planter, instance, series.time, comments=False)
    rows, cols = 200, 256
    burned: list[tuple[int, Box, str]] = []
    frame_fonts = _fonts(rng, fonts, 6)
    frame_list = []
    for f in range(frames):
        gray = ultrasound(rows, cols, f, rng)
        if frames == 1:
            image = np.repeat(gray[:, :, None], 3, axis=2)
            doppler = image[90:120, 120:150]
            doppler[..., 0] = np.where(gray[90:120, 120:150] > 120, 200, doppler[..., 0])
            doppler[..., 2] = np.where(gray[90:120, 120:150] < 60, 190, doppler[..., 2])
            inks: tuple[tuple[int, ...], tuple[int, ...]] = ((255, 255, 255), (255, 230, 0))
        else:
            image = gray
            inks = ((255,), (150,))
        clock = _plus_seconds(series.time, f)
        stamp = f"{clock[:2]}:{clock[2:4]}:{clock[4:]}"
        boxes = _burn_frame_identity(image, study, frame_fonts, inks, stamp)
        burned += [(f, b, PIXEL_DATA) for b in boxes]
        frame_list.append(image)
    _mark_burned(planter, [b for _, b, _ in burned])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"]
    planter.put(ds, "BodyPartExamined", "ABDOMEN", C.RESEARCH, KEEP)
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = ""
    ds.LossyImageCompression = "00"
    photometric = "RGB" if frames == 1 else "MONOCHROME2"
    array = np.stack(frame_list) if frames > 1 else frame_list[0]
    pixels(ds, array, 8, photometric)
    if frames > 1:
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
        ds.CineRate = 30
    add_private(ds, study, planter, "")
    return Instance(ds, planter, name, "", burned)


def _burn_frame_identity(
    image: np.ndarray,
    study: StudyInfo,
    fonts: list[Font],
    inks: tuple[tuple[int, ...], tuple[int, ...]],
    stamp: str,
) -> list[Box]:
    """Name and ID top left; date, site, referring physician and a clock bottom right."""
    patient = study.patient
    top = [patient.name.pn, f"ID: {patient.patient_id}"]
    bottom = [written_date(study.date), study.site.short, f"Dr {study.site.referring.family}"]
    boxes = burn_block(image, top, "tl", fonts[:2], inks[0])
    boxes += burn_block(image, [*bottom, stamp], "br", fonts[2:6], inks[1])
    return boxes


def dose_report(
    study: StudyInfo,
    series: SeriesInfo,
    rng: np.random.Generator,
    fonts: tuple[str, ...],
    sop_uid: str,
    name: str,
) -> Instance:
    """A CT dose screen saved as secondary capture: a table of text, identity included."""
    planter = Planter()
    ds = base(SecondaryCaptureImageStorage, sop_uid, study, series, planter, series.time)
    image_common(ds, study, planter, 1, series.time, comments=False)
    image = np.full((256, 320), 18, np.uint8)
    image[60:62, 8:312] = 90
    patient = study.patient
    header = [
        f"Patient: {patient.name.family}, {patient.name.given}",
        f"ID: {patient.patient_id}  Acc: {study.accession}",
        f"Exam date: {study.date:%d-%b-%Y}",
    ]
    body = [
        "Series  Type    CTDIvol  DLP",
        "2       Helical  11.42   412.7",
        "3       Helical  48.90   731.2",
        "Total DLP (mGy-cm): 1143.9",
        study.site.institution,
    ]
    boxes = burn_block(image, header, "tl", _fonts(rng, fonts, 3), (235,))
    boxes += burn_block(image, body, "bl", _fonts(rng, fonts, 5), (160,))
    _mark_burned(planter, [*boxes[:3], boxes[-1]])  # identity and institution, not the doses
    ds.ConversionType = "WSD"
    planter.put(ds, "BodyPartExamined", study.body_part, C.RESEARCH, KEEP)
    ds.ImageType = ["DERIVED", "SECONDARY", "SCREEN SAVE"]
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    pixels(ds, image, 8, "MONOCHROME2")
    return Instance(ds, planter, name, "", [(0, b, PIXEL_DATA) for b in boxes])
