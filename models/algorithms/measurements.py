"""The spec's measurements (``docs/hip-analysis.md``), each defined once.

Ground truth (``models/synth``) and predictions (``models/inference``) call
:func:`compute_measurements` with their landmarks, so both are measured with
exactly the same formulas. Landmarks are pixel ``(x, y)``; ``spacing_mm`` is
``(row_mm, col_mm)``; every length is returned in mm, every angle in degrees;
a measurement whose inputs are missing is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from models.algorithms.geometry import (
    height_above_line_mm,
    line_angle_deg,
    pelvic_frame,
    point_line_distance_mm,
    to_mm,
)
from models.algorithms.vocabulary import MEASUREMENTS, SIDES

Landmarks = Mapping[str, Sequence[float] | None]


def _get(landmarks: Landmarks, name: str) -> Sequence[float] | None:
    value = landmarks.get(name)
    if value is None:
        return None
    if len(value) != 2 or not all(np.isfinite(float(v)) for v in value):
        return None
    return value


def leg_length_discrepancy_mm(lt_right_mm: np.ndarray, lt_left_mm: np.ndarray, origin: np.ndarray, vertical: np.ndarray) -> float:
    """Depth of the right lesser trochanter below the pelvic line minus the left's; + = right leg longer."""
    depth_right = -height_above_line_mm(lt_right_mm, origin, vertical)
    depth_left = -height_above_line_mm(lt_left_mm, origin, vertical)
    return depth_right - depth_left


def lateral_centre_edge_angle_deg(centre_mm: np.ndarray, edge_mm: np.ndarray, vertical: np.ndarray, lateral: np.ndarray) -> float:
    """Wiberg angle: from the vertical through the head centre to the line to the lateral edge.

    Positive when the edge lies lateral of the vertical (covered head), negative when medial.
    """
    d = np.asarray(edge_mm, float) - np.asarray(centre_mm, float)
    return float(np.degrees(np.arctan2(float(d @ lateral), float(d @ vertical))))


def min_joint_space_width_mm(
    head_mask: np.ndarray,
    roof_mask: np.ndarray,
    joint_space_mask: np.ndarray,
    spacing_mm: Sequence[float],
) -> float | None:
    """Minimum edge-to-edge distance between the head border and the roof across the joint space.

    Head border pixels touching ``joint_space_mask`` are measured to the
    nearest ``roof_mask`` pixel (exact Euclidean distance in mm); one pixel is
    subtracted because centre-to-centre distance overstates an edge-to-edge
    gap by one pixel. ``None`` when any of the three masks is empty.
    """
    head = np.asarray(head_mask, bool)
    roof = np.asarray(roof_mask, bool)
    joint = np.asarray(joint_space_mask, bool)
    if not (head.any() and roof.any() and joint.any()):
        return None
    rows, cols = np.nonzero(ndimage.binary_dilation(joint, iterations=3))
    margin = 4 + int(np.ceil(30.0 / min(spacing_mm)))
    r0, r1 = max(rows.min() - margin, 0), rows.max() + margin + 1
    c0, c1 = max(cols.min() - margin, 0), cols.max() + margin + 1
    head_c, roof_c, joint_c = head[r0:r1, c0:c1], roof[r0:r1, c0:c1], joint[r0:r1, c0:c1]
    if not roof_c.any():
        return None
    border = head_c & ~ndimage.binary_erosion(head_c)
    border &= ndimage.binary_dilation(joint_c, structure=np.ones((3, 3), bool))
    if not border.any():
        return None
    distance = ndimage.distance_transform_edt(~roof_c, sampling=(float(spacing_mm[0]), float(spacing_mm[1])))
    pixel = 0.5 * (float(spacing_mm[0]) + float(spacing_mm[1]))
    return max(float(distance[border].min()) - pixel, 0.0)


def compute_measurements(
    landmarks: Landmarks,
    pixel_spacing_mm: Sequence[float],
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float | None]:
    """Every spec measurement from landmarks (and, for joint space width, masks).

    The pelvic reference line is the line through the two ischial tuberosities;
    without both of them only the measurements that do not need it are given.
    """
    out: dict[str, float | None] = {name: None for name in MEASUREMENTS}
    spacing = (float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1]))

    def mm(name: str) -> np.ndarray | None:
        p = _get(landmarks, name)
        return None if p is None else to_mm(p, spacing)

    it_r, it_l = _get(landmarks, "ischial_tuberosity_right"), _get(landmarks, "ischial_tuberosity_left")
    frame = None
    if it_r is not None and it_l is not None:
        try:
            frame = pelvic_frame(it_r, it_l, spacing)
        except ValueError:
            frame = None
    symphysis = mm("pubic_symphysis")

    if frame is not None:
        origin, horizontal, vertical = frame
        lt_r, lt_l = mm("lesser_trochanter_right"), mm("lesser_trochanter_left")
        if lt_r is not None and lt_l is not None:
            out["leg_length_discrepancy"] = leg_length_discrepancy_mm(lt_r, lt_l, origin, vertical)
    for side in SIDES:
        centre = mm(f"femoral_head_centre_{side}")
        p1, p2 = mm(f"femoral_shaft_proximal_{side}"), mm(f"femoral_shaft_distal_{side}")
        if centre is not None and p1 is not None and p2 is not None and np.hypot(*(p2 - p1)) > 1e-6:
            out[f"femoral_offset_{side}"] = point_line_distance_mm(centre, p1, p2)
        if frame is None:
            continue
        origin, horizontal, vertical = frame
        lateral = -horizontal if side == "right" else horizontal
        if centre is not None:
            out[f"hip_centre_height_{side}"] = height_above_line_mm(centre, origin, vertical)
            if symphysis is not None:
                out[f"hip_centre_lateral_{side}"] = abs(float((centre - symphysis) @ horizontal))
            edge = mm(f"acetabular_lateral_edge_{side}")
            if edge is not None:
                out[f"lateral_centre_edge_angle_{side}"] = lateral_centre_edge_angle_deg(centre, edge, vertical, lateral)
        rim_a, rim_b = mm(f"cup_rim_lateral_{side}"), mm(f"cup_rim_medial_{side}")
        if rim_a is not None and rim_b is not None and np.hypot(*(rim_a - rim_b)) > 1e-6:
            out[f"cup_inclination_{side}"] = line_angle_deg(rim_a - rim_b, horizontal)
        if masks is not None and not _has_implant(masks, side):
            keys = (f"femoral_head_{side}", f"acetabular_roof_{side}", f"joint_space_{side}")
            if all(k in masks for k in keys):
                out[f"min_joint_space_width_{side}"] = min_joint_space_width_mm(
                    masks[keys[0]], masks[keys[1]], masks[keys[2]], spacing
                )
    return out


def _has_implant(masks: Mapping[str, np.ndarray], side: str) -> bool:
    implant = masks.get(f"implant_{side}")
    return implant is not None and bool(np.asarray(implant).any())


def delta_measurements(pre: Mapping[str, float | None], post: Mapping[str, float | None]) -> dict[str, float | None]:
    """The spec's pre/post deltas (post minus pre, mm); ``None`` where either side is missing."""
    names = ["leg_length_discrepancy"] + [
        f"{m}_{s}" for m in ("femoral_offset", "hip_centre_height", "hip_centre_lateral") for s in SIDES
    ]
    out: dict[str, float | None] = {}
    for name in names:
        a, b = pre.get(name), post.get(name)
        out[f"delta_{name}"] = None if a is None or b is None else float(b) - float(a)
    return out
