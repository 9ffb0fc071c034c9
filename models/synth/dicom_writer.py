"""Encode a synthetic exam as a DX (For Presentation) or CR image that dciodvfy accepts.

UIDs are derived from caller-supplied seeds (``pydicom.uid.generate_uid`` with
entropy sources), so the same ``--seed`` writes byte-identical objects.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from models.synth.generator import Exam

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"


@dataclass(frozen=True)
class ExamIdentity:
    """Who and when: patient, study and series identity of one exam."""

    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str
    when: dt.datetime
    study_description: str


def identity_for(seed_parts: list[str], patient_id: str, patient_name: str, birth_date: str, sex: str, when: dt.datetime, description: str) -> ExamIdentity:
    """Deterministic UIDs for an exam from ``seed_parts`` (e.g. ``[seed, pair, phase]``)."""

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[*seed_parts, kind])

    accession = "SYN" + str(zlib.crc32("|".join(seed_parts).encode()) % 10**9).zfill(9)
    return ExamIdentity(patient_id, patient_name, birth_date, sex, uid("study"), uid("series"), uid("sop"), accession[:16], when, description)


def exam_dataset(exam: Exam, who: ExamIdentity, modality: str = "DX") -> Dataset:
    """Build the DICOM dataset (with file meta) for ``exam``; ``modality`` is ``DX`` or ``CR``."""
    if modality not in ("DX", "CR"):
        raise ValueError(f"modality must be DX or CR, not {modality!r}")
    sop_class = DX_PRESENTATION if modality == "DX" else CR_IMAGE
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = who.sop_uid
    date, time = who.when.strftime("%Y%m%d"), who.when.strftime("%H%M%S")
    # Patient
    ds.PatientName = who.patient_name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    # General Study
    ds.StudyInstanceUID = who.study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = who.accession[-8:]
    ds.AccessionNumber = who.accession
    ds.StudyDescription = who.study_description
    # General Series (+ DX Series)
    ds.Modality = modality
    ds.SeriesInstanceUID = who.series_uid
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = "AP pelvis (synthetic)"
    ds.BodyPartExamined = "PELVIS"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    else:
        ds.ViewPosition = "AP"
    # General Equipment
    ds.Manufacturer = "HipNode synthetic"
    ds.ManufacturerModelName = "hipnode synth"
    ds.SoftwareVersions = "1"
    ds.InstitutionName = "Synthetic"
    # General Image
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    ds.ImageType = ["DERIVED", "PRIMARY"] if modality == "DX" else ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    # Image Pixel
    rows, cols = exam.stored.shape
    proc = exam.processing
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = proc.photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = proc.bits_stored
    ds.HighBit = proc.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(exam.stored.astype("<u2")).tobytes()
    top = (1 << proc.bits_stored) - 1
    ds.WindowCenter = f"{top / 2:.1f}"
    ds.WindowWidth = f"{top:.1f}"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.ImageLaterality = "B"
    anatomy = Dataset()
    anatomy.CodeValue = "12921003"
    anatomy.CodingSchemeDesignator = "SCT"
    anatomy.CodeMeaning = "Pelvis"
    ds.AnatomicRegionSequence = Sequence([anatomy])
    ds.ImagerPixelSpacing = [f"{exam.geometry.pitch_mm:.6g}", f"{exam.geometry.pitch_mm:.6g}"]
    ds.EstimatedRadiographicMagnificationFactor = f"{exam.magnification:.6g}"
    ds.DistanceSourceToDetector = f"{exam.geometry.sid_mm:.6g}"
    ds.DistanceSourceToPatient = f"{exam.geometry.sod_mm:.6g}"
    ds.KVP = "80"
    ds.RescaleType = "US"
    if modality == "DX":
        ds.AcquisitionContextSequence = Sequence([])
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1 if proc.photometric == "MONOCHROME1" else -1
        ds.PresentationLUTShape = "INVERSE" if proc.photometric == "MONOCHROME1" else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"
        ds.ViewPosition = "AP"
        ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "antero-posterior")])
        ds.PatientOrientationCodeSequence = Sequence([_code("102538003", "SCT", "recumbent")])
        ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = Sequence([_code("40199007", "SCT", "supine")])
        ds.PositionerType = "NONE"
        ds.DetectorConditionsNominalFlag = "YES"
        ds.DetectorConfiguration = "AREA"
        ds.DetectorBinning = [1, 1]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = who.sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
