"""The spec's names (``docs/hip-analysis.md``), written once.

Everything that emits segments, landmarks or measurements (generator, models,
encoders, tests) iterates these tuples, so a name can never drift.
"""

from __future__ import annotations

SIDES: tuple[str, str] = ("right", "left")

SEGMENTS: tuple[str, ...] = (
    "pelvis",
    "femur_right",
    "femur_left",
    "femoral_head_right",
    "femoral_head_left",
    "acetabular_roof_right",
    "acetabular_roof_left",
    "joint_space_right",
    "joint_space_left",
    "implant_right",
    "implant_left",
)

PER_SIDE_LANDMARKS: tuple[str, ...] = (
    "femoral_head_centre",
    "greater_trochanter",
    "lesser_trochanter",
    "ischial_tuberosity",
    "acetabular_lateral_edge",
    "femoral_shaft_proximal",
    "femoral_shaft_distal",
    "cup_rim_lateral",
    "cup_rim_medial",
    "stem_tip",
)
MIDLINE_LANDMARKS: tuple[str, ...] = ("pubic_symphysis",)
POST_OP_ONLY_LANDMARKS: tuple[str, ...] = ("cup_rim_lateral", "cup_rim_medial", "stem_tip")

LANDMARKS: tuple[str, ...] = tuple(
    f"{name}_{side}" for name in PER_SIDE_LANDMARKS for side in SIDES
) + MIDLINE_LANDMARKS

MEASUREMENT_UNITS: dict[str, str] = {
    "leg_length_discrepancy": "mm",
    **{f"femoral_offset_{s}": "mm" for s in SIDES},
    **{f"hip_centre_height_{s}": "mm" for s in SIDES},
    **{f"hip_centre_lateral_{s}": "mm" for s in SIDES},
    **{f"lateral_centre_edge_angle_{s}": "deg" for s in SIDES},
    **{f"cup_inclination_{s}": "deg" for s in SIDES},
    **{f"min_joint_space_width_{s}": "mm" for s in SIDES},
}
MEASUREMENTS: tuple[str, ...] = tuple(MEASUREMENT_UNITS)

DELTA_MEASUREMENTS: tuple[str, ...] = (
    "delta_leg_length_discrepancy",
    *(f"delta_femoral_offset_{s}" for s in SIDES),
    *(f"delta_hip_centre_height_{s}" for s in SIDES),
    *(f"delta_hip_centre_lateral_{s}" for s in SIDES),
)

CALIBRATIONS: tuple[str, ...] = ("pixel_spacing", "magnification_corrected", "detector_plane")
