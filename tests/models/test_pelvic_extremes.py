"""Tuberosities moved to the pelvis outline's caudal extreme: exact geometry on drawn masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.algorithms.pelvic_extremes import caudal_direction, snap_to_pelvis_outline

SPACING = (0.5, 0.5)  # mm per pixel (row, col)


def _ischia(rows: int = 600, cols: int = 800, angle_deg: float = 0.0) -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    """Two bony discs whose lowest points are the tuberosities, optionally rotated about the centre."""
    mask = np.zeros((rows, cols), np.uint8)
    truth = {}
    for side, cx in (("right", 250), ("left", 550)):
        cv2.circle(mask, (cx, 300), 60, 1, -1)
        truth[side] = (float(cx), 360.0)
    if angle_deg:
        matrix = cv2.getRotationMatrix2D((cols / 2, rows / 2), angle_deg, 1.0)
        mask = cv2.warpAffine(mask, matrix, (cols, rows), flags=cv2.INTER_NEAREST)
        truth = {s: tuple(matrix @ np.array([x, y, 1.0])) for s, (x, y) in truth.items()}
    return mask.astype(bool), truth


def _landmarks(truth: dict[str, tuple[float, float]], offset: tuple[float, float]) -> dict:
    heads = {s: (x, y - 200) for s, (x, y) in truth.items()}  # head centres above, same tilt
    return {
        "ischial_tuberosity_right": (truth["right"][0] + offset[0], truth["right"][1] + offset[1]),
        "ischial_tuberosity_left": (truth["left"][0] + offset[0], truth["left"][1] + offset[1]),
        "femoral_head_centre_right": heads["right"],
        "femoral_head_centre_left": heads["left"],
        "pubic_symphysis": (400.0, 380.0),
    }


@pytest.mark.parametrize("angle", [0.0, 8.0, -12.0])
def test_prediction_10_mm_off_moves_to_the_lowest_bone(angle: float) -> None:
    mask, truth = _ischia(angle_deg=angle)
    landmarks = _landmarks(truth, offset=(12.0, -16.0))  # 6 mm lateral, 8 mm cranial (10 mm)
    # the head-centre line carries the tilt: "caudal" is perpendicular to it
    assert np.degrees(np.arctan2(*caudal_direction(landmarks)[::-1])) == pytest.approx(90.0 - angle, abs=0.5)
    snapped = snap_to_pelvis_outline(landmarks, mask, SPACING)
    for side in ("right", "left"):
        got = np.array(snapped[f"ischial_tuberosity_{side}"])
        # a 60 px disc is flat within 1 mm over +-11 px around its bottom: the mean lands on the bottom
        assert np.linalg.norm(got - truth[side]) <= 2.0, (side, got, truth[side])
    assert snapped["pubic_symphysis"] == landmarks["pubic_symphysis"]  # not an outline extreme here


def test_bone_beyond_the_search_radius_is_not_taken() -> None:
    mask, truth = _ischia()
    far = mask.copy()
    cv2.circle(far.view(np.uint8), (250, 420), 10, 1, -1)  # separate lower bone 60 px = 30 mm below
    landmarks = _landmarks(truth, offset=(0.0, -10.0))
    got = snap_to_pelvis_outline(landmarks, far, SPACING)["ischial_tuberosity_right"]
    assert abs(got[1] - 360.0) <= 2.0


def test_presence_is_never_changed() -> None:
    mask, truth = _ischia()
    landmarks = _landmarks(truth, offset=(0.0, 0.0))
    landmarks["ischial_tuberosity_left"] = None
    snapped = snap_to_pelvis_outline(landmarks, mask, SPACING)
    assert snapped["ischial_tuberosity_left"] is None
    # no bone within the search radius: the prediction stands
    lonely = {**landmarks, "ischial_tuberosity_right": (50.0, 580.0)}
    assert snap_to_pelvis_outline(lonely, mask, SPACING)["ischial_tuberosity_right"] == (50.0, 580.0)


def test_caudal_falls_back_to_the_image_down_direction() -> None:
    assert np.allclose(caudal_direction({}), [0.0, 1.0])
    tilted = {"ischial_tuberosity_right": (0.0, 0.0), "ischial_tuberosity_left": (100.0, 100.0)}
    down = caudal_direction(tilted)
    assert down[1] > 0 and abs(down @ np.array([1.0, 1.0])) < 1e-9
