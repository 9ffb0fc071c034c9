"""Small synthetic DICOM objects for the harness: an AP pelvis DX For Presentation
and result objects like the node's (SEG, colour SC, TID 1500 SR).

The hip pair itself comes from ``hipnode synth`` (``harness/pair.py``); this
DX is the chest image that routing must leave alone, and the result objects are
what the storescp stand-in mode sends back in the node's place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from highdicom.sr import (
    CodedConcept,
    Comprehensive3DSR,
    FindingSite,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    DeviceObserverIdentifyingAttributes,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from node.results.seg import add_viewer_functional_groups, detector_spacing

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
ROWS, COLS = 320, 384
PIXEL_MM = 0.5
_ALGORITHM = hd.AlgorithmIdentificationSequence(
    name="hipnode-harness", version="0.1", family=codes.DCM.ArtificialIntelligence)


@dataclass(frozen=True)
class Masks:
    """Boolean masks on the DX grid (pixel (x, y) = (column, row))."""

    pelvis: np.ndarray
    femoral_head_right: np.ndarray
    femoral_head_left: np.ndarray


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def pelvis_masks(post_op: bool, shape: tuple[int, int] = (ROWS, COLS)) -> Masks:
    """A rough pelvic ring and two femoral heads, scaled to ``shape`` (rows, columns).

    Drawn for the harness's own DX; on another image (``hipnode synth``'s) they
    are only plausible shapes for a stand-in result, not its anatomy.
    """
    sy, sx = shape[0] / ROWS, shape[1] / COLS
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / np.array([sy, sx])[:, None, None]
    outer = ((xx - COLS / 2) / 150) ** 2 + ((yy - 120) / 95) ** 2 <= 1
    inner = ((xx - COLS / 2) / 85) ** 2 + ((yy - 140) / 55) ** 2 <= 1
    shift = 6 if post_op else 0

    def head(cx: float, cy: float) -> np.ndarray:
        return ((xx - cx) / 26) ** 2 + ((yy - cy) / 26) ** 2 <= 1

    return Masks(pelvis=outer & ~inner, femoral_head_right=head(COLS / 2 - 105 - shift, 205 + shift),
                 femoral_head_left=head(COLS / 2 + 105, 205))


def _pixels(masks: Masks, post_op: bool, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((ROWS, COLS), 300.0)
    yy, xx = np.mgrid[0:ROWS, 0:COLS]
    img += 900 * np.exp(-(((xx - COLS / 2) / 160) ** 2 + ((yy - ROWS / 2) / 170) ** 2))  # soft tissue
    img[masks.pelvis] += 1400
    for head, cx in ((masks.femoral_head_right, COLS / 2 - 105), (masks.femoral_head_left, COLS / 2 + 105)):
        img[head] += 1600
        img[(np.abs(xx - cx) < 20) & (yy > 205)] += 1500  # femoral shaft
    if post_op:
        img[_disc(COLS / 2 - 111, 211, 20)] = 4000  # metal head of a right hip arthroplasty
        img[(np.abs(xx - (COLS / 2 - 108)) < 7) & (yy > 225) & (yy < 310)] = 3900  # stem
    img += rng.normal(0, 40, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def make_dx(*, patient_id: str, patient_name: str, study_uid: str, accession: str, post_op: bool,
            study_date: dt.date, seed: int = 0) -> tuple[Dataset, Masks]:
    """An AP pelvis DX For Presentation (MONOCHROME2, 12 bits stored, detector-plane spacing)."""
    masks = pelvis_masks(post_op)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient / General Study
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "19550101", "F"
    ds.StudyInstanceUID, ds.AccessionNumber, ds.StudyID = study_uid, accession, accession[-8:]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR PELVIS AP " + ("POSTOP" if post_op else "PREOP")
    # General Series / DX Series
    ds.Modality = "DX"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.SeriesDescription = "Pelvis AP"
    ds.BodyPartExamined = "PELVIS"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "HipNode harness"
    # DX Anatomy Imaged / DX Image
    ds.ImageLaterality = "B"
    ds.ViewPosition = "AP"
    ds.PatientOrientation = ["L", "F"]  # columns run to the patient's left, rows to the feet
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "12921003", "SCT", "Pelvis"
    ds.AnatomicRegionSequence = [region]
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImagerPixelSpacing = [PIXEL_MM, PIXEL_MM]
    ds.DetectorType = "SCINTILLATOR"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = 2000, 4000
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.PresentationLUTShape = "IDENTITY"
    ds.PositionerType = "NONE"
    ds.AcquisitionContextSequence = []
    # Image Pixel
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = _pixels(masks, post_op, seed).tobytes()
    return ds, masks


def make_seg(source: Dataset, masks: Masks) -> hd.seg.Segmentation:
    """A binary SEG with three segments on the single DX frame."""
    head = CodedConcept("2812003", "SCT", "Femoral head")
    names = [("pelvis", codes.SCT.Pelvis), ("femoral_head_right", head), ("femoral_head_left", head)]
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label,
            segmented_property_category=codes.SCT.Organ, segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=_ALGORITHM)
        for number, (label, code) in enumerate(names, 1)]
    stack = np.stack([masks.pelvis, masks.femoral_head_right, masks.femoral_head_left], axis=-1)[None]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=stack.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=901, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="HipNode harness", manufacturer_model_name="harness",
        software_versions="0.1", device_serial_number="0", series_description="AI hip segmentation (harness)")
    seg.PatientOrientation = source.PatientOrientation
    add_viewer_functional_groups(seg, detector_spacing(source))
    return seg


def make_colour_sc(source: Dataset, other: Dataset) -> hd.sc.SCImage:
    """An RGB Secondary Capture (a stand-in colour difference map) with both exams as sources."""
    rows, cols = int(source.Rows), int(source.Columns)
    yy, xx = np.mgrid[0:rows, 0:cols]
    rgb = np.zeros((rows, cols, 3), np.uint8)
    rgb[..., 0] = (255 * xx / cols).astype(np.uint8)
    rgb[..., 1] = (255 * yy / rows).astype(np.uint8)
    rgb[..., 2] = 160
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
        series_number=903, instance_number=1, manufacturer="HipNode harness",
        patient_orientation=tuple(source.PatientOrientation), laterality="R",
        series_description="AI colour difference map (harness)")
    # highdicom does not copy it; without it Orthanc's QIDO answers the study with no description.
    if "StudyDescription" in source:
        sc.StudyDescription = source.StudyDescription
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.SourceImageSequence = [_ref(source), _ref(other)]
    return sc


def _ref(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return item


def make_sr(source: Dataset, other: Dataset | None = None) -> Comprehensive3DSR:
    """A TID 1500 measurement report with one length measurement on the source image."""
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(uid=generate_uid(), name="hipnode"))
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier="leg_length_discrepancy"),
        source_images=[SourceImageForMeasurementGroup.from_source_image(source)],
        measurements=[Measurement(
            name=CodedConcept("HN001", "99HIPNODE", "leg_length_discrepancy"), value=4.2,
            unit=codes.UCUM.Millimeter, algorithm_id=hd.sr.AlgorithmIdentification(name="hipnode-harness",
                                                                                   version="0.1"),
            finding_sites=[FindingSite(codes.SCT.Pelvis)])],
        finding_type=codes.SCT.Pelvis)
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=[group])
    evidence = [source] + ([other] if other is not None else [])
    return Comprehensive3DSR(
        evidence=evidence, content=report, series_instance_uid=generate_uid(), series_number=902,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="HipNode harness",
        series_description="AI hip measurements (harness)", is_complete=True, is_final=False)


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
