"""Synthetic DICOM objects for tests: valid headers, small deterministic pixels.

Import these directly (``from tests.factories import make_dx``) or use the
``dx_factory`` fixture from ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"

_IMPLEMENTATION_UID = "1.2.826.0.1.3680043.10.1391.1"  # tests only


def make_dx(
    rows: int = 512,
    columns: int = 512,
    *,
    modality: str = "DX",
    patient_id: str = "PAT001",
    patient_name: str = "Test^Patient",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    body_part: str = "PELVIS",
    view_position: str = "AP",
    laterality: str = "",
    seed: int = 0,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = (0.14, 0.14),
) -> Dataset:
    """A DX For Presentation (or CR with ``modality="CR"``) image, 16-bit MONOCHROME2.

    Pixels are a smooth gradient plus seeded noise, so compressed encodings
    are small but not trivial and every instance differs with ``seed``.
    """
    sop_class = CR_IMAGE_STORAGE if modality == "CR" else DX_PRESENTATION_STORAGE
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.AccessionNumber = "ACC1"
    ds.Modality = modality
    ds.Manufacturer = "HipNode tests"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Pelvis AP"
    ds.SeriesDescription = "AP pelvis"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = body_part
    ds.ViewPosition = view_position
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["R", "F"]
    ds.ImageLaterality = laterality
    ds.Laterality = laterality
    if modality == "DX":
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "DIRECT"
        ds.BurnedInAnnotation = "NO"
        ds.PixelIntensityRelationship = "LIN"
        ds.PixelIntensityRelationshipSign = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:columns]
    image = (xx * 2000 // max(columns, 1) + yy * 1000 // max(rows, 1)) + rng.integers(
        0, 64, (rows, columns)
    )
    ds.PixelData = image.astype("<u2").tobytes()
    return ds


def write_dx(path: Path, **kwargs: object) -> Path:
    """Write :func:`make_dx` (same keyword arguments) to ``path`` as a Part 10 file."""
    ds = make_dx(**kwargs)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def dataset_bytes(path: Path) -> bytes:
    """The bytes of a Part 10 file after its File Meta Information (what travels on the wire)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return fp.read()
