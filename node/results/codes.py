"""Every code the result encoders write, in one place.

SNOMED CT (``SCT``) or DICOM (``DCM``) where a standard code exists for the
concept; otherwise a code of the local scheme ``99HIPNODE``, declared in each
object's CodingSchemeIdentificationSequence (``LOCAL_SCHEME_ITEM``). Local
code values are the spec's snake_case names, so a reader can map them back
without a table. Units are UCUM.
"""

from __future__ import annotations

from dataclasses import dataclass

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr.coding import CodedConcept
from pydicom.sr.codedict import codes

from models.algorithms.vocabulary import (
    DELTA_MEASUREMENTS,
    LANDMARKS,
    MEASUREMENT_UNITS,
    SEGMENTS,
)

LOCAL_SCHEME = "99HIPNODE"
LOCAL_SCHEME_ITEM = CodingSchemeIdentificationItem(
    designator=LOCAL_SCHEME,
    name="HipNode local codes",
    version="1",
    responsible_organization="HipNode project",
)


# Local code values: short mnemonics (Code Value is SH, at most 16 characters).
LOCAL_VALUES: dict[str, str] = {
    "pixel_spacing": "CAL-PS",
    "magnification_corrected": "CAL-MAG",
    "detector_plane": "CAL-DET",
    "weighted": "ALIGN-WEIGHTED",
    "filtered": "ALIGN-FILTERED",
    "plain": "ALIGN-PLAIN",
    "ours": "ALIGN-REFINED",
    "pre_post_comparison": "PREPOST",
    "acetabular_roof": "SEG-ROOF",
    "joint_space": "SEG-JSPACE",
    "greater_trochanter": "LM-GT",
    "lesser_trochanter": "LM-LT",
    "ischial_tuberosity": "LM-ISCHIAL-TUB",
    "acetabular_lateral_edge": "LM-ACETAB-EDGE",
    "femoral_shaft_proximal": "LM-SHAFT-PROX",
    "femoral_shaft_distal": "LM-SHAFT-DIST",
    "pubic_symphysis": "LM-SYMPHYSIS",
    "cup_rim_lateral": "LM-CUP-LAT",
    "cup_rim_medial": "LM-CUP-MED",
    "stem_tip": "LM-STEM-TIP",
    "leg_length_discrepancy": "M-LLD",
    "femoral_offset": "M-FEM-OFFSET",
    "hip_centre_height": "M-HC-HEIGHT",
    "hip_centre_lateral": "M-HC-LATERAL",
    "lateral_centre_edge_angle": "M-LCE-ANGLE",
    "cup_inclination": "M-CUP-INCL",
    "min_joint_space_width": "M-MIN-JSW",
    "delta_leg_length_discrepancy": "D-LLD",
    "delta_femoral_offset": "D-FEM-OFFSET",
    "delta_hip_centre_height": "D-HC-HEIGHT",
    "delta_hip_centre_lateral": "D-HC-LATERAL",
}
LOCAL_NAMES: dict[str, str] = {v: k for k, v in LOCAL_VALUES.items()}


def local(name: str, meaning: str) -> CodedConcept:
    """The local-scheme code of concept ``name`` (a key of ``LOCAL_VALUES``)."""
    return CodedConcept(value=LOCAL_VALUES[name], scheme_designator=LOCAL_SCHEME, meaning=meaning)


def _std(code: object) -> CodedConcept:
    return CodedConcept.from_code(code)  # type: ignore[arg-type]


# --- Qualifiers ----------------------------------------------------------
RIGHT = _std(codes.SCT.Right)
LEFT = _std(codes.SCT.Left)
RIGHT_AND_LEFT = _std(codes.SCT.Bilateral)  # CID 244 "Bilateral" (51440002)
LATERALITY = {"right": RIGHT, "left": LEFT}

MM = _std(codes.UCUM.Millimeter)
DEGREE = _std(codes.UCUM.Degree)
UNITS = {"mm": MM, "deg": DEGREE}

# --- Anatomy ------------------------------------------------------------
ANATOMICAL_STRUCTURE = _std(codes.SCT.AnatomicalStructure)
PHYSICAL_OBJECT = _std(codes.SCT.PhysicalObject)
PELVIS_BONE = _std(codes.SCT.BoneStructureOfPelvis)
PELVIS_REGION = _std(codes.SCT.Pelvis)
HIP_JOINT = _std(codes.SCT.HipJoint)
FEMUR = _std(codes.SCT.Femur)
FEMORAL_HEAD = _std(codes.SCT.FemoralHead)
FEMORAL_SHAFT = _std(codes.SCT.BoneStructureOfShaftOfFemur)
LESSER_TROCHANTER = _std(codes.SCT.LesserTrochanter)
ISCHIUM = _std(codes.SCT.Ischium)
ACETABULUM = _std(codes.SCT.Acetabulum)
IMPLANT = _std(codes.SCT.Implant)

# --- Report structure -------------------------------------------------
IMAGING_PROCEDURE = _std(codes.SCT.ImagingProcedure)  # pixelmed accepts only CID 100
ALGORITHM_FAMILY = _std(codes.DCM.ArtificialIntelligence)
CALIBRATIONS = {
    "pixel_spacing": local("pixel_spacing", "Calibrated Pixel Spacing"),
    "magnification_corrected": local(
        "magnification_corrected", "Imager Pixel Spacing corrected for magnification"
    ),
    "detector_plane": local("detector_plane", "Imager Pixel Spacing at the detector plane"),
}
ALIGNMENT_METHODS = {
    "weighted": local("weighted", "Pelvis-weighted feature alignment"),
    "filtered": local("filtered", "Pelvis-filtered feature alignment"),
    "plain": local("plain", "Whole-image feature alignment"),
    "ours": local("ours", "Pelvis-weighted alignment, IRLS and masked ECC refinement"),
}
PAIR_FINDING = local("pre_post_comparison", "Pre-operative to post-operative comparison")


def _humanise(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _split_side(name: str) -> tuple[str, str | None]:
    for side in ("right", "left"):
        if name.endswith(f"_{side}"):
            return name[: -len(side) - 1], side
    return name, None


# --- Segments ----------------------------------------------------------
@dataclass(frozen=True)
class SegmentCodes:
    """How one spec segment is described in a SEG."""

    category: CodedConcept
    property_type: CodedConcept
    anatomic_region: CodedConcept
    side: str | None
    rgb: tuple[int, int, int]  # display colour


_SEGMENT_BASE: dict[str, tuple[CodedConcept, CodedConcept, CodedConcept]] = {
    # base name -> (category, property type, anatomic region)
    "pelvis": (ANATOMICAL_STRUCTURE, PELVIS_BONE, PELVIS_REGION),
    "femur": (ANATOMICAL_STRUCTURE, FEMUR, HIP_JOINT),
    "femoral_head": (ANATOMICAL_STRUCTURE, FEMORAL_HEAD, HIP_JOINT),
    # No SNOMED concept for the sourcil or the radiographic joint space.
    "acetabular_roof": (
        ANATOMICAL_STRUCTURE,
        local("acetabular_roof", "Weight-bearing acetabular roof (sourcil)"),
        HIP_JOINT,
    ),
    "joint_space": (
        ANATOMICAL_STRUCTURE,
        local("joint_space", "Radiographic hip joint space"),
        HIP_JOINT,
    ),
    "implant": (PHYSICAL_OBJECT, IMPLANT, HIP_JOINT),
}
_SEGMENT_RGB: dict[str, tuple[int, int, int]] = {
    "pelvis": (241, 214, 145),
    "femur": (177, 122, 101),
    "femoral_head": (216, 101, 79),
    "acetabular_roof": (111, 184, 210),
    "joint_space": (144, 238, 144),
    "implant": (200, 200, 235),
}


def segment_codes(name: str) -> SegmentCodes:
    """Codes of spec segment ``name``; raises ValueError for an unknown name."""
    if name not in SEGMENTS:
        raise ValueError(f"unknown segment name {name!r}")
    base, side = _split_side(name)
    category, property_type, region = _SEGMENT_BASE[base]
    return SegmentCodes(category, property_type, region, side, _SEGMENT_RGB[base])


# --- Landmarks ---------------------------------------------------------
_LANDMARK_SITE: dict[str, CodedConcept] = {
    "femoral_head_centre": FEMORAL_HEAD,
    "greater_trochanter": FEMUR,
    "lesser_trochanter": LESSER_TROCHANTER,
    "ischial_tuberosity": ISCHIUM,
    "acetabular_lateral_edge": ACETABULUM,
    "femoral_shaft_proximal": FEMORAL_SHAFT,
    "femoral_shaft_distal": FEMORAL_SHAFT,
    "pubic_symphysis": PELVIS_BONE,
    "cup_rim_lateral": ACETABULUM,
    "cup_rim_medial": ACETABULUM,
    "stem_tip": FEMUR,
}


def landmark_concept(name: str) -> CodedConcept:
    """Concept of landmark ``name`` (side-free base name, DCM where CID 7306 has one)."""
    if name not in LANDMARKS:
        raise ValueError(f"unknown landmark name {name!r}")
    base, _ = _split_side(name)
    if base == "femoral_head_centre":
        return _std(codes.DCM.FemurHeadCenterOfRotation)
    return local(base, _humanise(base))


def landmark_site(name: str) -> tuple[CodedConcept, CodedConcept | None]:
    """(anatomic location, laterality or None) of landmark ``name``."""
    base, side = _split_side(name)
    return _LANDMARK_SITE[base], (LATERALITY[side] if side else None)


# --- Measurements ------------------------------------------------------
def measurement_concept(name: str) -> CodedConcept:
    """Concept name of a spec measurement or pre/post delta (side-free, local scheme).

    The side goes into the finding site's laterality, so the concept is
    shared by both sides, as SR readers expect.
    """
    if name not in MEASUREMENT_UNITS and name not in DELTA_MEASUREMENTS:
        raise ValueError(f"unknown measurement name {name!r}")
    base, _ = _split_side(name)
    return local(base, _humanise(base))


def measurement_site(name: str) -> tuple[CodedConcept, CodedConcept | None]:
    """(anatomic location, laterality or None) of a measurement or delta."""
    base, side = _split_side(name)
    if side is None:  # leg length discrepancy compares both sides
        return PELVIS_REGION, RIGHT_AND_LEFT
    return HIP_JOINT, LATERALITY[side]


def measurement_unit(name: str) -> CodedConcept:
    """UCUM unit of a measurement (deltas are all mm)."""
    if name in DELTA_MEASUREMENTS:
        return MM
    return UNITS[MEASUREMENT_UNITS[name]]
