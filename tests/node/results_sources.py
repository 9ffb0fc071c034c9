"""Test inputs for the result encoders: a realistic DX source and fake analyses.

The DX For Presentation image is built with pydicom so that it is itself a
valid object (dciodvfy clean); the analyses are geometric shapes, not model
output: encoder tests check encoding, not analysis.
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from models.algorithms.results import AlgorithmInfo, ImageAnalysis, PairAlignment
from models.algorithms.vocabulary import LANDMARKS, MEASUREMENT_UNITS, SEGMENTS

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
ROWS, COLUMNS = 256, 320

SEG_ALGO = AlgorithmInfo(name="hipnode-seg", version="1.2.0")
LANDMARK_ALGO = AlgorithmInfo(name="hipnode-landmarks", version="0.9.1")
ALIGN_ALGO = AlgorithmInfo(name="hipnode-align", version="0.3.0")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def make_dx(
    *,
    patient_name: str = "Müller^Jürgen",
    charset: str = "ISO_IR 192",
    patient_id: str = "HN-0001",
    study_uid: str | None = None,
    sop_uid: str | None = None,
    with_pixel_spacing: bool = False,
    study_date: str = "20240105",
    seed: int = 0,
    scale: int = 1,
) -> Dataset:
    """A 256x320 (x ``scale``) uint16 DX For Presentation AP pelvis, patient right on image left."""
    rng = np.random.default_rng(seed)
    rows, columns = ROWS * scale, COLUMNS * scale
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    # Patient, study
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = "HOSPITAL-A"
    ds.PatientBirthDate = "19580311"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC" + study_date
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "XR PELVIS AP"
    # Series, equipment
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Pelvis AP"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "Test Imaging"
    # Image
    ds.InstanceNumber = 1
    ds.ContentDate = study_date
    ds.ContentTime = "101600"
    ds.AcquisitionDateTime = study_date + "101530"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]  # x runs to the patient's left: patient right on image left
    ds.BodyPartExamined = "PELVIS"
    ds.ViewPosition = "AP"
    ds.ImageLaterality = "B"
    ds.AnatomicRegionSequence = Sequence([_code("816092008", "SCT", "Pelvis")])
    ds.ViewCodeSequence = Sequence([_code("399348003", "SCT", "antero-posterior")])
    ds.ViewCodeSequence[0].ViewModifierCodeSequence = Sequence()
    ds.PatientOrientationCodeSequence = Sequence([_code("102538003", "SCT", "recumbent")])
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = Sequence(
        [_code("40199007", "SCT", "supine")]
    )
    ds.AcquisitionContextSequence = Sequence()
    ds.ImagerPixelSpacing = [0.7, 0.7]
    ds.EstimatedRadiographicMagnificationFactor = 1.15
    ds.DistanceSourceToDetector = 1150.0
    ds.DistanceSourceToPatient = 1000.0
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorConfiguration = "AREA"
    ds.DetectorID = "D1"
    ds.DetectorBinning = [1, 1]
    ds.DetectorElementSpacing = [0.7, 0.7]
    ds.FieldOfViewShape = "RECTANGLE"
    ds.FieldOfViewDimensions = [int(rows * 0.7), int(columns * 0.7)]
    ds.PositionerType = "NONE"
    if with_pixel_spacing:
        ds.PixelSpacing = [0.61, 0.61]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "magnification at the table"
    # Pixels
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.BurnedInAnnotation = "NO"
    yy, xx = np.mgrid[0:rows, 0:columns] / scale
    image = 800 + 1500 * np.exp(-(((xx - 160) / 90.0) ** 2 + ((yy - 110) / 70.0) ** 2))
    image += rng.normal(0, 30, image.shape)
    ds.PixelData = np.clip(image, 0, 4095).astype(np.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return pydicom.dataset.FileDataset(None, ds, file_meta=meta, preamble=b"\0" * 128)


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((ROWS, COLUMNS), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_analysis(*, post_op: bool = False, shift: float = 0.0, scale: int = 1) -> ImageAnalysis:
    """Fake but plausible analysis: right hip on the image left, left hip on the right.

    ``post_op`` adds a left implant (cup and stem landmarks); the pre-op image
    has empty implant segments and ``None`` for the post-op landmarks.
    """
    lm: dict[str, tuple[float, float] | None] = {name: None for name in LANDMARKS}
    for side, cx in (("right", 100.0), ("left", 220.0)):
        sign = -1.0 if side == "right" else 1.0
        lm[f"femoral_head_centre_{side}"] = (cx + shift, 120.0)
        lm[f"greater_trochanter_{side}"] = (cx + sign * 30.0, 125.0)
        lm[f"lesser_trochanter_{side}"] = (cx + sign * 5.0, 165.0)
        lm[f"ischial_tuberosity_{side}"] = (cx + sign * -25.0, 160.5)
        lm[f"acetabular_lateral_edge_{side}"] = (cx + sign * 22.0, 95.0)
        lm[f"femoral_shaft_proximal_{side}"] = (cx + sign * 15.0, 195.0)
        lm[f"femoral_shaft_distal_{side}"] = (cx + sign * 20.0, 250.0)
    lm["pubic_symphysis"] = (160.0, 150.0)
    if post_op:
        lm["cup_rim_lateral_left"] = (243.0, 100.0)
        lm["cup_rim_medial_left"] = (205.0, 138.0)
        lm["stem_tip_left"] = (240.0, 252.0)
    measurements: dict[str, float | None] = {name: None for name in MEASUREMENT_UNITS}
    measurements.update(
        {
            "leg_length_discrepancy": 1.25 + shift,
            "femoral_offset_right": 38.4,
            "femoral_offset_left": 41.2 + shift,
            "hip_centre_height_right": 24.5,
            "hip_centre_height_left": 25.1,
            "hip_centre_lateral_right": 42.0,
            "hip_centre_lateral_left": 43.5 + shift,
            "lateral_centre_edge_angle_right": 31.5,
            "lateral_centre_edge_angle_left": 28.25,
            "min_joint_space_width_right": 3.9,
        }
    )
    if post_op:
        measurements["cup_inclination_left"] = 42.5
    else:
        measurements["min_joint_space_width_left"] = 3.4
    masks = {name: np.zeros((ROWS, COLUMNS), bool) for name in SEGMENTS}
    masks["pelvis"] = _rect(60, 40, 260, 170) & ~_disc(100, 120, 24) & ~_disc(220, 120, 24)
    for side, cx in (("right", 100), ("left", 220)):
        masks[f"femoral_head_{side}"] = _disc(cx, 120, 20)
        masks[f"femur_{side}"] = masks[f"femoral_head_{side}"] | _rect(cx - 12, 120, cx + 12, 256)
        masks[f"acetabular_roof_{side}"] = _disc(cx, 120, 30) & ~_disc(cx, 120, 24) & _rect(0, 0, 320, 110)
        masks[f"joint_space_{side}"] = _disc(cx, 120, 24) & ~_disc(cx, 120, 20) & _rect(0, 0, 320, 110)
    if post_op:
        masks["implant_left"] = _disc(220, 120, 21) | _rect(214, 130, 226, 252)
        masks["joint_space_left"][:] = False  # an empty segment on purpose
    if scale != 1:
        lm = {k: None if v is None else (v[0] * scale, v[1] * scale) for k, v in lm.items()}
        masks = {k: np.repeat(np.repeat(v, scale, axis=0), scale, axis=1) for k, v in masks.items()}
    return ImageAnalysis(
        landmarks=lm,
        measurements=measurements,
        masks=masks,
        calibration="magnification_corrected",
        pixel_spacing_mm=(0.7 / 1.15 / scale, 0.7 / 1.15 / scale),
        algorithms=(SEG_ALGO, LANDMARK_ALGO),
    )


def make_alignment() -> PairAlignment:
    """A plausible pre->post homography (small translation)."""
    h = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    return PairAlignment(
        homography=h, method="weighted", matcher="orb", matches=400, inliers=312, algorithms=(ALIGN_ALGO,)
    )


def make_cdm(scale: int = 1) -> np.ndarray:
    """A colour gradient standing in for a colour difference map (uint8 RGB)."""
    rows, columns = ROWS * scale, COLUMNS * scale
    rgb = np.zeros((rows, columns, 3), np.uint8)
    rgb[..., 0] = (np.arange(columns) * 255 // columns)[None, :]
    rgb[..., 1] = 40
    rgb[..., 2] = (np.arange(rows) * 255 // rows)[:, None]
    return rgb
