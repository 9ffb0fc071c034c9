"""Native head centres and lateral acetabular edges from the hip masks: exact geometry on drawn masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.algorithms.hip_outline import femoral_head_centre, snap_to_hip_masks

SPACING = (0.5, 0.5)  # mm per pixel (row, col)
ROWS, COLS = 800, 1000
HEAD_RADIUS_PX = 48  # 24 mm
CENTRES = {"right": (300.0, 400.0), "left": (700.0, 400.0)}
EDGE_ANGLE_DEG = 35.0  # Wiberg angle the drawn roofs end at (lateral of the vertical)


def _lateral_sign(side: str) -> float:
    return -1.0 if side == "right" else 1.0  # the patient's right is on the image's left


def _masks(angle_deg: float = 0.0) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """Heads (discs, plus a stray blob) and roofs (arcs over the heads ending at EDGE_ANGLE_DEG), rotated."""
    masks: dict[str, np.ndarray] = {}
    truth: dict[str, tuple[float, float]] = {}
    for side, (cx, cy) in CENTRES.items():
        head = np.zeros((ROWS, COLS), np.uint8)
        cv2.circle(head, (int(cx), int(cy)), HEAD_RADIUS_PX, 1, -1)
        cv2.circle(head, (int(cx), int(cy) + 150), 6, 1, -1)  # stray pixels, not connected to the head
        roof = np.zeros_like(head)
        # OpenCV ellipse angles run clockwise from +x; straight up is 270 degrees.
        lateral_end = 270.0 + _lateral_sign(side) * EDGE_ANGLE_DEG
        medial_end = 270.0 - _lateral_sign(side) * 60.0
        cv2.ellipse(roof, (int(cx), int(cy)), (HEAD_RADIUS_PX + 8, HEAD_RADIUS_PX + 8), 0,
                    min(lateral_end, medial_end), max(lateral_end, medial_end), 1, 8)
        masks[f"femoral_head_{side}"], masks[f"acetabular_roof_{side}"] = head, roof
        rim = HEAD_RADIUS_PX + 8
        edge = (cx + _lateral_sign(side) * rim * np.sin(np.radians(EDGE_ANGLE_DEG)),
                cy - rim * np.cos(np.radians(EDGE_ANGLE_DEG)))
        truth[f"femoral_head_centre_{side}"], truth[f"acetabular_lateral_edge_{side}"] = (cx, cy), edge
        truth[f"ischial_tuberosity_{side}"] = (cx, cy + 200)
    matrix = cv2.getRotationMatrix2D((COLS / 2, ROWS / 2), angle_deg, 1.0)
    masks = {k: cv2.warpAffine(v, matrix, (COLS, ROWS), flags=cv2.INTER_NEAREST).astype(bool) for k, v in masks.items()}
    truth = {k: tuple(matrix @ np.array([x, y, 1.0])) for k, (x, y) in truth.items()}
    return masks, truth


def _off(truth: dict[str, tuple[float, float]], dx: float, dy: float) -> dict[str, tuple[float, float] | None]:
    return {k: (x + dx, y + dy) if not k.startswith("ischial") else (x, y) for k, (x, y) in truth.items()}


@pytest.mark.parametrize("angle", [0.0, 9.0, -7.0])
def test_centres_and_edges_come_from_the_masks(angle: float) -> None:
    masks, truth = _masks(angle)
    snapped = snap_to_hip_masks(_off(truth, 8.0, -6.0), masks, SPACING)  # network 5 mm off
    for side in ("right", "left"):
        centre = np.array(snapped[f"femoral_head_centre_{side}"])
        assert np.linalg.norm(centre - truth[f"femoral_head_centre_{side}"]) <= 0.5  # the stray blob is ignored
        edge = np.array(snapped[f"acetabular_lateral_edge_{side}"])
        # the arc is 8 px thick: its lateral end is a short segment; the most lateral angle is on it
        assert np.linalg.norm(edge - truth[f"acetabular_lateral_edge_{side}"]) <= 4.0, (side, edge)


def test_an_operated_side_keeps_the_networks_points() -> None:
    masks, truth = _masks()
    implant = np.zeros((ROWS, COLS), bool)
    implant[380:420, 280:320] = True
    masks["implant_right"] = implant
    predicted = _off(truth, 8.0, -6.0)
    snapped = snap_to_hip_masks(predicted, masks, SPACING)
    assert snapped["femoral_head_centre_right"] == predicted["femoral_head_centre_right"]
    assert snapped["acetabular_lateral_edge_right"] == predicted["acetabular_lateral_edge_right"]
    assert snapped["femoral_head_centre_left"] != predicted["femoral_head_centre_left"]


def test_presence_is_never_changed_and_empty_masks_keep_the_point() -> None:
    masks, truth = _masks()
    predicted = _off(truth, 8.0, -6.0)
    predicted["acetabular_lateral_edge_left"] = None
    masks["acetabular_roof_right"] = np.zeros((ROWS, COLS), bool)
    snapped = snap_to_hip_masks(predicted, masks, SPACING)
    assert snapped["acetabular_lateral_edge_left"] is None
    assert snapped["acetabular_lateral_edge_right"] == predicted["acetabular_lateral_edge_right"]
    assert set(snapped) == set(predicted)


def test_roof_far_beyond_the_head_is_not_the_edge() -> None:
    masks, truth = _masks()
    far = masks["acetabular_roof_right"].copy()
    far[330:340, 150:170] = True  # bone 45 mm lateral of the head centre, beyond the roof's reach
    masks["acetabular_roof_right"] = far
    snapped = snap_to_hip_masks(_off(truth, 0.0, 0.0), masks, SPACING)
    edge = np.array(snapped["acetabular_lateral_edge_right"])
    assert np.linalg.norm(edge - truth["acetabular_lateral_edge_right"]) <= 4.0


@pytest.mark.parametrize("bite", ["neck_junction", "shutter_edge", "spur_into_the_neck"])
def test_head_centre_ignores_where_the_mask_falls_inside_the_sphere(bite: str):
    """A head mask is the sphere's disc less where the bone dips inside it (or a cut edge); a predicted one may
    leak into the neck: the rim circle's centre stays on the sphere's centre where the centroid moves off it."""
    cx, cy = 200.0, 180.0
    head = np.zeros((400, 400), np.uint8)
    cv2.circle(head, (int(cx), int(cy)), HEAD_RADIUS_PX, 1, -1)
    if bite == "neck_junction":  # a crescent lost at the infero-lateral rim
        cv2.circle(head, (int(cx + 0.75 * HEAD_RADIUS_PX), int(cy + 0.75 * HEAD_RADIUS_PX)), 28, 0, -1)
    elif bite == "shutter_edge":  # the film (or a window) ends across the head
        head[:, int(cx + 0.6 * HEAD_RADIUS_PX):] = 0
    else:  # a blob 20 px wide sticking 30 px out of the infero-lateral rim
        cv2.line(head, (int(cx), int(cy)), (int(cx + HEAD_RADIUS_PX + 30), int(cy + HEAD_RADIUS_PX + 30)), 1, 20)
    ys, xs = np.nonzero(head)
    assert np.hypot(xs.mean() - cx, ys.mean() - cy) > 3.0  # the centroid would be off by more than 1.5 mm
    centre = femoral_head_centre(head, SPACING)
    assert centre is not None and np.hypot(centre[0] - cx, centre[1] - cy) <= 0.5
