"""Header modules shared by every phantom object, with identifiers planted where real ones hide.

Patient, study, series, equipment and SOP common attributes; private blocks of a known vendor
(safe under PS3.15 Table E.3.10-1) and of an unknown creator (holding the patient's identity,
also as VR UN and inside a private sequence); an overlay with text. Everything set here is
recorded in a :class:`~radguard.phantom.answer.Planter`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pack_bits
from pydicom.sequence import Sequence

from radguard.phantom.answer import Category, Expect, Planter
from radguard.phantom.burn import Box, Font, burn_block
from radguard.phantom.identity import Patient, Site, age_string, da, uid

C = Category
KEEP = Expect.KEEP
UNKNOWN_CREATOR = "ACME PACS ANNOT 2.1"
_DETACHED_PATIENT = "1.2.840.10008.3.1.2.1.1"  # Detached Patient Management SOP Class (retired)


@dataclass(frozen=True)
class StudyInfo:
    """One study: who, where, when and why."""

    seed: int
    patient: Patient
    site: Site
    index: int
    uid: str
    frame_of_reference_uid: str
    date: dt.date
    time: str
    accession: str
    study_id: str
    clinical: str  # the study's clinical description, e.g. "CT CHEST W/O CONTRAST"
    body_part: str
    reason: str

    @property
    def description(self) -> str:
        """StudyDescription as typed at the modality: clinical words and the surname."""
        follow_up = " FU" if self.index else ""
        return f"{self.clinical} {self.patient.name.family}{follow_up}"


@dataclass(frozen=True)
class SeriesInfo:
    """One series: what it shows and how it was made."""

    uid: str
    number: int
    modality: str
    description: str  # clinical words only; the surname is added when ``named``
    time: str
    protocol: str = ""
    named: bool = False
    manufacturer: str = "GE MEDICAL SYSTEMS"
    model: str = "Revolution CT"


def written_date(day: dt.date) -> str:
    """A date as people type it in free text (US style)."""
    return day.strftime("%m/%d/%Y")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _clinical_words(planter: Planter, tags: tuple[int, ...], text: str) -> None:
    for phrase in ("W/O CONTRAST", "CHEST", "BRAIN", "HEAD", "ABDOMEN", "LUNG", "T1", "FLAIR"):
        if phrase in text.split(" ") or (" " in phrase and phrase in text):
            planter.mark(tags, C.RESEARCH, phrase, KEEP)


def base(
    sop_class: str,
    sop_uid: str,
    study: StudyInfo,
    series: SeriesInfo,
    planter: Planter,
    content_time: str,
) -> Dataset:
    """SOP common, patient, study, series and equipment modules for one instance."""
    ds = Dataset()
    put = planter.put
    patient, site = study.patient, study.site
    date = da(study.date)
    ds.SpecificCharacterSet = "ISO_IR 100"
    put(ds, "InstanceCreationDate", date, C.DATE)
    put(ds, "InstanceCreationTime", content_time, C.TIME, KEEP)
    ds.SOPClassUID = sop_class
    put(ds, "SOPInstanceUID", sop_uid, C.UID)
    put(ds, "StudyDate", date, C.DATE)
    put(ds, "SeriesDate", date, C.DATE)
    put(ds, "StudyTime", study.time, C.TIME, KEEP)
    put(ds, "SeriesTime", series.time, C.TIME, KEEP)
    put(ds, "AccessionNumber", study.accession, C.ACCESSION)
    put(ds, "Modality", series.modality, C.RESEARCH, KEEP)
    put(ds, "Manufacturer", series.manufacturer, C.RESEARCH, KEEP)
    put(ds, "InstitutionName", site.institution, C.INSTITUTION)
    put(ds, "InstitutionAddress", site.address, C.INSTITUTION)
    put(ds, "ReferringPhysicianName", site.referring.pn, C.STAFF_NAME)
    put(ds, "ReferringPhysicianAddress", site.address, C.ADDRESS)
    put(ds, "ReferringPhysicianTelephoneNumbers", site.phone, C.PHONE)
    put(ds, "StationName", site.station, C.DEVICE)
    ds.StudyDescription = study.description
    planter.mark((0x00081030,), C.FREE_TEXT, patient.name.family)
    _clinical_words(planter, (0x00081030,), study.description)
    family = patient.name.family
    ds.SeriesDescription = f"{series.description} {family}" if series.named else series.description
    if series.named:
        planter.mark((0x0008103E,), C.FREE_TEXT, family)
    _clinical_words(planter, (0x0008103E,), ds.SeriesDescription)
    put(ds, "InstitutionalDepartmentName", f"{site.short} {site.department}", C.INSTITUTION)
    put(ds, "PhysiciansOfRecord", site.reader.pn, C.STAFF_NAME)
    ds.PhysiciansOfRecordIdentificationSequence = Sequence([_person_id(site, planter)])
    put(ds, "PerformingPhysicianName", site.performing.pn, C.STAFF_NAME)
    put(ds, "NameOfPhysiciansReadingStudy", site.reader.pn, C.STAFF_NAME)
    put(ds, "OperatorsName", site.operator.pn, C.STAFF_NAME)
    ds.ManufacturerModelName = series.model
    _patient(ds, study, planter)
    put(ds, "DeviceSerialNumber", site.serial, C.DEVICE)
    ds.SoftwareVersions = "21.4.7"
    if series.protocol:
        protocol = f"{series.protocol} {patient.name.family}" if series.named else series.protocol
        ds.ProtocolName = protocol
        if series.named:
            planter.mark((0x00181030,), C.FREE_TEXT, patient.name.family)
        _clinical_words(planter, (0x00181030,), protocol)
    put(ds, "StudyInstanceUID", study.uid, C.UID)
    put(ds, "SeriesInstanceUID", series.uid, C.UID)
    put(ds, "StudyID", study.study_id, C.ACCESSION)
    ds.SeriesNumber = series.number
    put(ds, "PerformedProcedureStepStartDate", date, C.DATE)
    put(ds, "PerformedProcedureStepStartTime", study.time, C.TIME, KEEP)
    put(ds, "PerformedProcedureStepID", f"PPS{study.accession[3:]}", C.ACCESSION)
    ds.PerformedProcedureStepDescription = f"{study.clinical} {patient.name.family}"
    planter.mark((0x00400254,), C.FREE_TEXT, patient.name.family)
    ds.RequestAttributesSequence = Sequence([_request(study, planter)])
    return ds


def _patient(ds: Dataset, study: StudyInfo, planter: Planter) -> None:
    """Patient and Patient Study modules (plus demographics real files carry anyway)."""
    put = planter.put
    patient = study.patient
    put(ds, "PatientName", patient.name.pn, C.PATIENT_NAME)
    put(ds, "PatientID", patient.patient_id, C.PATIENT_ID)
    put(ds, "IssuerOfPatientID", patient.issuer, C.INSTITUTION)
    put(ds, "PatientBirthDate", da(patient.birth_date), C.DATE)
    put(ds, "PatientSex", patient.sex, C.RESEARCH, KEEP)
    put(ds, "OtherPatientIDs", patient.other_id, C.PATIENT_ID)
    other = Dataset()
    put(other, "PatientID", patient.other_id, C.PATIENT_ID, under=(0x00101002,))
    other.IssuerOfPatientID = "NBUMC"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = _DETACHED_PATIENT
    put(
        referenced,
        "ReferencedSOPInstanceUID",
        _patient_uid(study),
        C.UID,
        under=(0x00081120,),
    )
    ds.ReferencedPatientSequence = Sequence([referenced])
    put(ds, "PatientMotherBirthName", patient.mother.pn, C.PATIENT_NAME)
    put(ds, "PatientAge", age_string(patient.birth_date, study.date), C.RESEARCH, KEEP)
    put(ds, "PatientSize", patient.size_m, C.RESEARCH, KEEP)
    put(ds, "PatientWeight", patient.weight_kg, C.RESEARCH, KEEP)
    put(ds, "PatientAddress", patient.address, C.ADDRESS)
    put(ds, "PatientTelephoneNumbers", patient.phone, C.PHONE)
    comments = (
        f"Iodine allergy. Daughter {patient.mother.given.title()} {patient.name.family.title()} "
        f"at {patient.phone}."
    )
    ds.PatientComments = comments
    planter.mark((0x00104000,), C.FREE_TEXT, patient.name.family)
    planter.mark((0x00104000,), C.FREE_TEXT, patient.phone)


def _patient_uid(study: StudyInfo) -> str:
    return uid(study.seed, "patient", study.patient.index)


def _person_id(site: Site, planter: Planter) -> Dataset:
    """A Person Identification Macro item (PS3.3 10.1) for the reading physician."""
    under = (0x00081049,)
    item = Dataset()
    code = _code(f"RAD{site.serial[2:6]}", "L", site.reader.written)
    item.PersonIdentificationCodeSequence = Sequence([code])
    planter.mark((*under, 0x00401101, 0x00080104), C.STAFF_NAME, site.reader.written)
    planter.put(item, "PersonAddress", site.address, C.ADDRESS, under=under)
    planter.put(item, "PersonTelephoneNumbers", site.phone, C.PHONE, under=under)
    planter.put(item, "InstitutionName", site.institution, C.INSTITUTION, under=under)
    return item


def _request(study: StudyInfo, planter: Planter) -> Dataset:
    """A Request Attributes item with identifiers four sequence levels deep."""
    patient, site = study.patient, study.site
    top = (0x00400275,)
    item = Dataset()
    planter.put(item, "AccessionNumber", study.accession, C.ACCESSION, under=top)
    planter.put(item, "RequestedProcedureID", f"RP{study.accession[3:]}", C.ACCESSION, under=top)
    described = f"{study.clinical} {patient.name.family}"
    item.RequestedProcedureDescription = described
    planter.mark((*top, 0x00321060), C.FREE_TEXT, patient.name.family)
    _clinical_words(planter, (*top, 0x00321060), described)
    reason = f"{study.reason}, pt {patient.name.family.title()} tel {patient.phone}"  # LO: 64
    item.ReasonForTheRequestedProcedure = reason
    planter.mark((*top, 0x00401002), C.FREE_TEXT, patient.name.family)
    planter.mark((*top, 0x00401002), C.FREE_TEXT, patient.phone)
    planter.put(
        item, "ScheduledProcedureStepID", f"SPS{study.accession[3:]}", C.ACCESSION, under=top
    )
    protocol = _code("RPC0042", "99RADGUARD", study.clinical)
    context = Dataset()  # (0040,0440) Protocol Context Sequence: a content item
    context.ValueType = "PNAME"
    context.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    level3 = (*top, 0x00400008, 0x00400440)
    planter.put(context, "PersonName", site.referring.pn, C.STAFF_NAME, under=level3)
    modifier = Dataset()  # (0040,0441) Content Item Modifier Sequence, one level deeper
    modifier.ValueType = "TEXT"
    modifier.ConceptNameCodeSequence = Sequence([_code("121106", "DCM", "Comment")])
    note = f"Ordered by Dr {site.referring.family.title()} for {patient.name.family.title()}"
    modifier.TextValue = note
    level4 = (*level3, 0x00400441, 0x0040A160)
    planter.mark(level4, C.FREE_TEXT, patient.name.family)
    planter.mark(level4, C.FREE_TEXT, site.referring.family)
    context.ContentItemModifierSequence = Sequence([modifier])
    protocol.ProtocolContextSequence = Sequence([context])
    item.ScheduledProtocolCodeSequence = Sequence([protocol])
    return item


def image_common(
    ds: Dataset,
    study: StudyInfo,
    planter: Planter,
    instance: int,
    acquisition_time: str,
    comments: bool = True,
) -> None:
    """General Image attributes: numbers, dates and times of every kind, comments."""
    put = planter.put
    date = da(study.date)
    ds.InstanceNumber = instance
    put(ds, "ContentDate", date, C.DATE)
    put(ds, "ContentTime", acquisition_time, C.TIME, KEEP)
    put(ds, "AcquisitionDate", date, C.DATE)
    put(ds, "AcquisitionTime", acquisition_time, C.TIME, KEEP)
    put(ds, "AcquisitionDateTime", f"{date}{acquisition_time}.250000", C.DATE)
    ds.AcquisitionNumber = 1
    if comments:
        patient = study.patient
        text = (
            f"Pt {patient.name.family}, {patient.name.given} seen {written_date(study.date)}; "
            f"results to {patient.phone}"
        )
        ds.ImageComments = text
        for value in (patient.name.family, written_date(study.date), patient.phone):
            planter.mark((0x00204000,), C.FREE_TEXT, value)


def pixels(ds: Dataset, array: np.ndarray, bits_stored: int, photometric: str) -> None:
    """Image Pixel module for a (frames,) rows, cols (, 3) unsigned array."""
    color = photometric == "RGB"
    frames = array.shape[0] if array.ndim == (4 if color else 3) else 1
    rows, cols = array.shape[-3:-1] if color else array.shape[-2:]
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric
    if color:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.BitsAllocated = array.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(array).tobytes()


def add_private(ds: Dataset, study: StudyInfo, planter: Planter, vendor: str) -> None:
    """Private blocks: a known vendor's safe ones (kept), an unknown creator's identity (gone)."""
    patient, site = study.patient, study.site
    if vendor == "GE":
        acq = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        acq.add_new(0x23, "DS", "39.375")  # Table Speed [mm/rotation]: safe (E.3.10-1)
        acq.add_new(0x24, "DS", "8.213")  # Mid Scan Time: safe
        acq.add_new(0x27, "UN", b"0.8 ")  # Rotation Speed, stored as VR UN: safe by tag
        for offset, value in ((0x23, "39.375"), (0x24, "8.213"), (0x27, "0.8")):
            planter.mark((acq.get_tag(offset),), C.PRIVATE, value, KEEP, "GEMS_ACQU_01")
        iden = ds.private_block(0x0009, "GEMS_IDEN_01", create=True)
        iden.add_new(0x02, "SH", site.station)  # Suite Id: not in the safe list
        planter.mark((iden.get_tag(0x02),), C.PRIVATE, site.station, Expect.REMOVE, "GEMS_IDEN_01")
    elif vendor == "SIEMENS":
        mr = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        mr.add_new(0x0D, "CS", "NONE")  # Diffusion Directionality: safe
        planter.mark((mr.get_tag(0x0D),), C.PRIVATE, "NONE", KEEP, "SIEMENS MR HEADER")
        csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
        blob = f"SV10\x04\x03\x02\x01PatientName={patient.name.pn};ProtocolName=T1;".encode(
            "latin-1"
        )
        csa.add_new(0x10, "OB", blob + b"\x00" * (len(blob) % 2))
        planter.mark((csa.get_tag(0x10),), C.PRIVATE, patient.name.pn, creator="SIEMENS CSA HEADER")
    block = ds.private_block(0x0011, UNKNOWN_CREATOR, create=True)
    block.add_new(0x01, "LO", patient.name.pn)
    raw = f"MRN={patient.patient_id};DOB={da(patient.birth_date)}".encode()
    block.add_new(0x02, "UN", raw + b" " * (len(raw) % 2))
    inner = Dataset()
    inner.PatientName = patient.name.pn
    inner.InstitutionName = site.institution
    block.add_new(0x03, "SQ", Sequence([inner]))
    name_tag, raw_tag, seq_tag = (block.get_tag(o) for o in (0x01, 0x02, 0x03))
    planter.mark((name_tag,), C.PRIVATE, patient.name.pn, creator=UNKNOWN_CREATOR)
    planter.mark((raw_tag,), C.PRIVATE, patient.patient_id, creator=UNKNOWN_CREATOR)
    planter.mark((seq_tag, 0x00100010), C.PRIVATE, patient.name.pn, creator=UNKNOWN_CREATOR)
    planter.mark((seq_tag, 0x00080080), C.PRIVATE, site.institution, creator=UNKNOWN_CREATOR)


def add_overlay(ds: Dataset, study: StudyInfo, planter: Planter, fonts: list[Font]) -> list[Box]:
    """Overlay group 6000: a graphics bitmap with the name and ID written in it, and text."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    patient = study.patient
    bitmap = np.zeros((rows, cols), np.uint8)
    lines = [f"{patient.name.family} {patient.name.given[0]}", patient.patient_id]
    boxes = burn_block(bitmap, lines, "bl", fonts[:2], (1,), margin=6)
    group = 0x6000 << 16
    ds.add_new(group | 0x0010, "US", rows)
    ds.add_new(group | 0x0011, "US", cols)
    description = f"Marker {patient.name.family}"
    ds.add_new(group | 0x0022, "LO", description)
    ds.add_new(group | 0x0040, "CS", "G")
    ds.add_new(group | 0x0050, "SS", [1, 1])
    ds.add_new(group | 0x0100, "US", 1)
    ds.add_new(group | 0x0102, "US", 0)
    ds.add_new(group | 0x1500, "LO", "ANNOTATION")
    ds.add_new(group | 0x3000, "OW", pack_bits(bitmap.ravel()))
    planter.mark((group | 0x0022,), C.FREE_TEXT, patient.name.family)
    for box in boxes:
        planter.mark((group | 0x3000,), C.BURNED_IN, box.text)
    return boxes
