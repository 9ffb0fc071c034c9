"""Presentation contexts the Storage SCP accepts: SOP classes x transfer syntaxes."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
"""Native encodings; explicit little endian first (it is what we store most cheaply)."""

DEFLATED = [DeflatedExplicitVRLittleEndian]

COMPRESSED_PIXELS = [
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
"""Encapsulated pixel data encodings pydicom + pylibjpeg/pyjpegls can decode."""

IMAGE_TRANSFER_SYNTAXES = UNCOMPRESSED + DEFLATED + COMPRESSED_PIXELS
NON_IMAGE_TRANSFER_SYNTAXES = UNCOMPRESSED + DEFLATED

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DX_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MF_SC_SINGLE_BIT = "1.2.840.10008.5.1.4.1.1.7.1"
MF_SC_GRAYSCALE_BYTE = "1.2.840.10008.5.1.4.1.1.7.2"
MF_SC_GRAYSCALE_WORD = "1.2.840.10008.5.1.4.1.1.7.3"
MF_SC_TRUE_COLOR = "1.2.840.10008.5.1.4.1.1.7.4"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SR_BASIC = "1.2.840.10008.5.1.4.1.1.88.11"
SR_ENHANCED = "1.2.840.10008.5.1.4.1.1.88.22"
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"
SR_COMPREHENSIVE_3D = "1.2.840.10008.5.1.4.1.1.88.34"

IMAGE_SOP_CLASSES: dict[str, str] = {
    DX_PRESENTATION: "DX For Presentation",
    DX_PROCESSING: "DX For Processing",
    CR: "CR",
    SECONDARY_CAPTURE: "Secondary Capture",
    MF_SC_SINGLE_BIT: "Multi-frame Single Bit SC",
    MF_SC_GRAYSCALE_BYTE: "Multi-frame Grayscale Byte SC",
    MF_SC_GRAYSCALE_WORD: "Multi-frame Grayscale Word SC",
    MF_SC_TRUE_COLOR: "Multi-frame True Color SC",
    SEGMENTATION: "Segmentation",
}
"""SOP classes whose objects must carry complete Pixel Data."""

SR_SOP_CLASSES: dict[str, str] = {
    SR_BASIC: "Basic Text SR",
    SR_ENHANCED: "Enhanced SR",
    SR_COMPREHENSIVE: "Comprehensive SR",
    SR_COMPREHENSIVE_3D: "Comprehensive 3D SR",
}

# Storage SCP contexts: (SOP class UID, transfer syntaxes accepted).
STORAGE_CONTEXTS: list[tuple[str, list[str]]] = [
    *[(uid, list(IMAGE_TRANSFER_SYNTAXES)) for uid in IMAGE_SOP_CLASSES],
    *[(uid, list(NON_IMAGE_TRANSFER_SYNTAXES)) for uid in SR_SOP_CLASSES],
]


def requires_pixel_data(sop_class_uid: str) -> bool:
    """True when objects of this SOP class are incomplete without Pixel Data."""
    return sop_class_uid in IMAGE_SOP_CLASSES
