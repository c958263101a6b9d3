"""Non-image objects that refer to the CT images: Basic Text SR, RT Structure Set and GSPS.

Each carries identifiers in its own places (SR PNAME and TEXT content items, the structure
set's interpreter and reviewer, the presentation state's creator and text annotation) and
records the instances it refers to, so a verifier can check the references still resolve
after UIDs are replaced.
"""

from __future__ import annotations

import math

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    BasicTextSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    RTStructureSetStorage,
)

from radguard.phantom.answer import Category, Expect, Planter, Reference
from radguard.phantom.headers import SeriesInfo, StudyInfo, base, written_date
from radguard.phantom.identity import da
from radguard.phantom.images import Geometry, Instance, ds_text
from radguard.phantom.volumes import Chest

C = Category
KEEP = Expect.KEEP
_STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.2"  # Study Component Management SOP Class (retired)

# Tag paths of the references, for the answer key.
SR_EVIDENCE = "(0040,A375)/(0008,1115)/(0008,1199)"
SR_CONTENT_IMAGE = "(0040,A730)/(0040,A730)/(0008,1199)"
RT_CONTOUR_IMAGE = "(3006,0010)/(3006,0012)/(3006,0014)/(3006,0016)"
PR_IMAGE = "(0008,1115)/(0008,1140)"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _sop_ref(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def _refs(path: str, images: list[Dataset]) -> list[Reference]:
    return [
        Reference(
            path,
            str(ds.SOPClassUID),
            str(ds.SOPInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.StudyInstanceUID),
        )
        for ds in images
    ]


def _series_base(
    sop_class: str, sop_uid: str, study: StudyInfo, series: SeriesInfo, planter: Planter
) -> Dataset:
    ds = base(sop_class, sop_uid, study, series, planter, series.time)
    ds.InstanceNumber = 1
    planter.put(ds, "ContentDate", da(study.date), C.DATE)
    planter.put(ds, "ContentTime", series.time, C.TIME, KEEP)
    return ds


def text_report(
    study: StudyInfo, series: SeriesInfo, images: list[Dataset], sop_uid: str
) -> Instance:
    """A Basic Text SR (TID 2000-like) report with names, IDs and image references."""
    planter = Planter()
    ds = _series_base(BasicTextSRStorage, sop_uid, study, series, planter)
    patient, site = study.patient, study.site
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    under = (0x0040A073,)
    planter.put(observer, "VerifyingObserverName", site.reader.pn, C.STAFF_NAME, under=under)
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    planter.put(observer, "VerifyingOrganization", site.institution, C.INSTITUTION, under=under)
    planter.put(
        observer, "VerificationDateTime", f"{da(study.date)}{series.time}", C.DATE, under=under
    )
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    evidence_series = Dataset()
    evidence_series.SeriesInstanceUID = images[0].SeriesInstanceUID
    evidence_series.ReferencedSOPSequence = Sequence(
        [_sop_ref(i.SOPClassUID, i.SOPInstanceUID) for i in images]
    )
    evidence = Dataset()
    evidence.StudyInstanceUID = study.uid
    evidence.ReferencedSeriesSequence = Sequence([evidence_series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    content = (0x0040A730,)
    items = [
        _pname("121008", "Person Observer Name", site.reader.pn),
        _pname("121029", "Subject Name", patient.name.pn),
    ]
    planter.mark((*content, 0x0040A123), C.STAFF_NAME, site.reader.pn)
    planter.mark((*content, 0x0040A123), C.PATIENT_NAME, patient.name.pn)
    subject_id = _text("HAS OBS CONTEXT", "121030", "Subject ID", patient.patient_id)
    items.append(subject_id)
    planter.mark((*content, 0x0040A160), C.PATIENT_ID, patient.patient_id)
    findings_text = (
        f"{patient.name.given.title()} {patient.name.family.title()} (MRN {patient.patient_id}), "
        f"CT of the chest on {written_date(study.date)}: no pleural effusion. Discussed with "
        f"Dr {site.referring.family.title()} at {site.phone}."
    )
    findings = _text("CONTAINS", "121071", "Findings", findings_text)
    for value in (
        patient.name.family.title(),
        patient.patient_id,
        written_date(study.date),
        site.referring.family.title(),
        site.phone,
    ):
        planter.mark((*content, 0x0040A160), C.FREE_TEXT, value)
    inferred = []
    for image in images[:2]:
        child = Dataset()
        child.RelationshipType = "INFERRED FROM"
        child.ValueType = "IMAGE"
        child.ReferencedSOPSequence = Sequence([_sop_ref(image.SOPClassUID, image.SOPInstanceUID)])
        inferred.append(child)
    findings.ContentSequence = Sequence(inferred)
    items.append(findings)
    impression = _text("CONTAINS", "121073", "Impression", "No acute findings in the CHEST.")
    planter.mark((*content, 0x0040A160), C.RESEARCH, "CHEST", KEEP)
    items.append(impression)
    ds.ContentSequence = Sequence(items)
    references = _refs(SR_EVIDENCE, images) + _refs(SR_CONTENT_IMAGE, images[:2])
    return Instance(ds, planter, "SR0001.dcm", "", references=references)


def _pname(code: str, meaning: str, name: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "HAS OBS CONTEXT"
    item.ValueType = "PNAME"
    item.ConceptNameCodeSequence = Sequence([_code(code, "DCM", meaning)])
    item.PersonName = name
    return item


def _text(relationship: str, code: str, meaning: str, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = Sequence([_code(code, "DCM", meaning)])
    item.TextValue = text
    return item


def structure_set(
    study: StudyInfo,
    series: SeriesInfo,
    images: list[Dataset],
    geometry: Geometry,
    chest: Chest,
    sop_uid: str,
) -> Instance:
    """An RT Structure Set with body and lung contours on every referenced CT slice."""
    planter = Planter()
    ds = _series_base(RTStructureSetStorage, sop_uid, study, series, planter)
    site = study.site
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    planter.mark((0x00200052,), C.UID, study.frame_of_reference_uid)
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = "CHEST CONTOURS"
    planter.mark((0x30060002,), C.RESEARCH, "CHEST", KEEP)
    ds.StructureSetName = f"PLAN {study.patient.name.family}"
    planter.mark((0x30060004,), C.FREE_TEXT, study.patient.name.family)
    planter.put(ds, "StructureSetDate", da(study.date), C.DATE)
    planter.put(ds, "StructureSetTime", series.time, C.TIME, KEEP)
    contour_images = Sequence([_sop_ref(i.SOPClassUID, i.SOPInstanceUID) for i in images])
    rt_series = Dataset()
    rt_series.SeriesInstanceUID = images[0].SeriesInstanceUID
    rt_series.ContourImageSequence = contour_images
    rt_study = Dataset()
    rt_study.ReferencedSOPClassUID = _STUDY_COMPONENT
    rt_study.ReferencedSOPInstanceUID = study.uid
    rt_study.RTReferencedSeriesSequence = Sequence([rt_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = study.frame_of_reference_uid
    frame.RTReferencedStudySequence = Sequence([rt_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    rois, contours, observations = Sequence(), Sequence(), Sequence()
    colours = {"BODY": [255, 200, 150], "LUNG_R": [0, 160, 255], "LUNG_L": [0, 255, 160]}
    for number, name in enumerate(colours, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        planar = Sequence()
        for k, image in enumerate(images):
            z = geometry.position(k)[2]
            outline = chest.outlines(z).get(name)
            if outline is None:
                continue
            item = Dataset()
            item.ContourImageSequence = Sequence(
                [_sop_ref(image.SOPClassUID, image.SOPInstanceUID)]
            )
            item.ContourGeometricType = "CLOSED_PLANAR"
            points = _ellipse(outline, z)
            item.NumberOfContourPoints = len(points) // 3
            item.ContourData = points
            planar.append(item)
        roi_contour = Dataset()
        roi_contour.ROIDisplayColor = colours[name]
        roi_contour.ReferencedROINumber = number
        roi_contour.ContourSequence = planar
        contours.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = "EXTERNAL" if name == "BODY" else "ORGAN"
        under = (0x30060080,)
        planter.put(observation, "ROIInterpreter", site.reader.pn, C.STAFF_NAME, under=under)
        observations.append(observation)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours
    ds.RTROIObservationsSequence = observations
    ds.ApprovalStatus = "APPROVED"
    planter.put(ds, "ReviewDate", da(study.date), C.DATE)
    planter.put(ds, "ReviewTime", series.time, C.TIME, KEEP)
    planter.put(ds, "ReviewerName", site.performing.pn, C.STAFF_NAME)
    return Instance(ds, planter, "RS0001.dcm", "", references=_refs(RT_CONTOUR_IMAGE, images))


def _ellipse(outline: tuple[float, float, float, float], z: float, n: int = 24) -> list[str]:
    cx, cy, rx, ry = outline
    points: list[str] = []
    for i in range(n):
        angle = 2.0 * math.pi * i / n
        points += [ds_text(cx + rx * math.cos(angle)), ds_text(cy + ry * math.sin(angle))]
        points.append(ds_text(z))
    return points


def presentation_state(
    study: StudyInfo, series: SeriesInfo, images: list[Dataset], sop_uid: str
) -> Instance:
    """A Grayscale Softcopy Presentation State: lung window and a text note with the name."""
    planter = Planter()
    ds = _series_base(GrayscaleSoftcopyPresentationStateStorage, sop_uid, study, series, planter)
    patient, site = study.patient, study.site
    planter.put(ds, "BodyPartExamined", study.body_part, C.RESEARCH, KEEP)
    ds.ContentLabel = "NODULE NOTE"
    ds.ContentDescription = "Lung window with annotation"
    planter.put(ds, "ContentCreatorName", site.reader.pn, C.STAFF_NAME)
    planter.put(ds, "PresentationCreationDate", da(study.date), C.DATE)
    planter.put(ds, "PresentationCreationTime", series.time, C.TIME, KEEP)
    referenced = Dataset()
    referenced.SeriesInstanceUID = images[0].SeriesInstanceUID
    referenced.ReferencedImageSequence = Sequence(
        [_sop_ref(i.SOPClassUID, i.SOPInstanceUID) for i in images]
    )
    ds.ReferencedSeriesSequence = Sequence([referenced])
    rows, cols = int(images[0].Rows), int(images[0].Columns)
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [cols, rows]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelAspectRatio = [1, 1]
    ds.DisplayedAreaSelectionSequence = Sequence([area])
    layer = Dataset()
    layer.GraphicLayer = "NOTES"
    layer.GraphicLayerOrder = 1
    ds.GraphicLayerSequence = Sequence([layer])
    text = Dataset()
    text.BoundingBoxAnnotationUnits = "PIXEL"
    note = f"{patient.name.family}, {patient.name.given} {patient.patient_id}: nodule 4 mm"
    text.UnformattedTextValue = note
    text.BoundingBoxTopLeftHandCorner = [2.0, 2.0]
    text.BoundingBoxBottomRightHandCorner = [float(cols - 2), 14.0]
    text.BoundingBoxTextHorizontalJustification = "LEFT"
    path = (0x00700001, 0x00700008, 0x00700006)
    for value in (patient.name.family, patient.name.given, patient.patient_id):
        planter.mark(path, C.FREE_TEXT, value)
    arrow = Dataset()
    arrow.GraphicAnnotationUnits = "PIXEL"
    arrow.GraphicDimensions = 2
    arrow.NumberOfGraphicPoints = 2
    arrow.GraphicData = [cols * 0.3, rows * 0.3, cols * 0.45, rows * 0.45]
    arrow.GraphicType = "POLYLINE"
    arrow.GraphicFilled = "N"
    annotation = Dataset()
    annotation.GraphicLayer = "NOTES"
    annotation.TextObjectSequence = Sequence([text])
    annotation.GraphicObjectSequence = Sequence([arrow])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = "-600", "1500"
    ds.SoftcopyVOILUTSequence = Sequence([voi])
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
    ds.PresentationLUTShape = "IDENTITY"
    ds.ImageHorizontalFlip = "N"
    ds.ImageRotation = 0
    return Instance(ds, planter, "PR0001.dcm", "", references=_refs(PR_IMAGE, images))
