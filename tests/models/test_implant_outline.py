"""Stem tips from the implant mask: exact geometry on drawn stems."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.algorithms.exposed_field import ExposedField, null_out_of_field
from models.algorithms.implant_outline import snap_to_implant_outline

SPACING = (0.5, 0.5)  # mm per pixel (row, col)
ROWS, COLS = 1000, 800


def _stem(tip_row: int, angle_deg: float = 0.0) -> tuple[np.ndarray, tuple[float, float], dict]:
    """A right stem (head, then a tapered shaft ending in a round tip at ``tip_row``), rotated about the image centre."""
    mask = np.zeros((ROWS, COLS), np.uint8)
    cv2.circle(mask, (250, 300), 30, 1, -1)  # prosthetic head
    cv2.fillConvexPoly(mask, np.array([[215, 330], [285, 330], [262, tip_row - 12], [238, tip_row - 12]]), 1)
    cv2.circle(mask, (250, tip_row - 12), 12, 1, -1)  # rounded tip: its lowest row is tip_row
    landmarks = {"ischial_tuberosity_right": (300.0, 500.0), "ischial_tuberosity_left": (600.0, 500.0),
                 "femoral_head_centre_right": (250.0, 300.0), "femoral_head_centre_left": (550.0, 300.0)}
    matrix = cv2.getRotationMatrix2D((COLS / 2, ROWS / 2), angle_deg, 1.0)
    mask = cv2.warpAffine(mask, matrix, (COLS, ROWS), flags=cv2.INTER_NEAREST)
    landmarks = {k: tuple(matrix @ np.array([x, y, 1.0])) for k, (x, y) in landmarks.items()}
    return mask.astype(bool), tuple(matrix @ np.array([250.0, float(tip_row), 1.0])), landmarks


@pytest.mark.parametrize("angle", [0.0, 8.0, -10.0])
def test_tip_moves_to_the_stems_distal_end(angle: float) -> None:
    mask, tip, landmarks = _stem(tip_row=800, angle_deg=angle)
    landmarks["stem_tip_right"] = (tip[0] + 20.0, tip[1] - 24.0)  # network 16 mm off
    got = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)["stem_tip_right"]
    assert np.linalg.norm(np.subtract(got, tip)) <= 2.0, (got, tip)  # 1 mm = 2 px, the round tip's mean


def test_a_stem_cut_by_the_field_edge_is_out_of_field() -> None:
    """The mask's extreme is then the edge, not the tip: the tip is null, not the network's guess."""
    mask, _, landmarks = _stem(tip_row=1100)  # runs off the bottom of the film
    landmarks["stem_tip_right"] = (250.0, 990.0)
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    assert snapped["stem_tip_right"] is not None and snapped["stem_tip_right"][1] > ROWS - 4
    final = null_out_of_field(snapped, ExposedField.whole((ROWS, COLS)), SPACING)
    assert final["stem_tip_right"] is None
    assert final["femoral_head_centre_right"] == snapped["femoral_head_centre_right"]


def test_a_stem_cut_by_a_collimator_shutter_is_out_of_field() -> None:
    """Same stem, whole on the film, but a bottom shutter hides its last 60 mm."""
    mask, tip, landmarks = _stem(tip_row=800)
    field = ExposedField(0, 680, 0, COLS)
    landmarks["stem_tip_right"] = (tip[0], tip[1] - 150.0)  # the network's guess lies in the field
    snapped = snap_to_implant_outline(landmarks, {"implant_right": field.clip(mask)}, SPACING)
    assert null_out_of_field(snapped, field, SPACING)["stem_tip_right"] is None
    whole = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    assert null_out_of_field(whole, ExposedField.whole((ROWS, COLS)), SPACING)["stem_tip_right"] is not None


def test_absent_tips_stay_null_and_native_sides_are_untouched() -> None:
    mask, _, landmarks = _stem(tip_row=800)
    landmarks["stem_tip_right"] = None  # the network said absent: not invented from the mask
    landmarks["stem_tip_left"] = None
    got = snap_to_implant_outline(landmarks, {"implant_right": mask, "implant_left": np.zeros_like(mask)}, SPACING)
    assert got["stem_tip_right"] is None and got["stem_tip_left"] is None


def _total_hip(centre: tuple[int, int], cup_radius_px: int, opening_deg: float) -> np.ndarray:
    """A right total hip: a hemispherical cup opening infero-laterally, the head in it, neck and stem below."""
    mask = np.zeros((ROWS, COLS), np.uint8)
    # the cup's dome: a half disc whose flat side (the opening) faces down and to the patient's right (image left)
    cv2.ellipse(mask, centre, (cup_radius_px, cup_radius_px), -opening_deg, 180, 360, 1, -1)
    cv2.circle(mask, centre, int(cup_radius_px * 0.62), 1, -1)  # prosthetic head, concentric
    cx, cy = centre
    cv2.line(mask, (cx, cy), (cx - 70, cy + 90), 1, 22)  # neck
    cv2.fillConvexPoly(mask, np.array([[cx - 95, cy + 80], [cx - 45, cy + 80], [cx - 62, cy + 380], [cx - 78, cy + 380]]), 1)
    return mask.astype(bool)


@pytest.mark.parametrize("opening", [35.0, 50.0])
def test_a_replaced_hips_centre_moves_to_the_cups_centre(opening: float) -> None:
    mask = _total_hip((300, 300), 52, opening)
    landmarks = {"ischial_tuberosity_right": (300.0, 520.0), "ischial_tuberosity_left": (600.0, 520.0),
                 "femoral_head_centre_right": (306.0, 296.0), "femoral_head_centre_left": (600.0, 300.0)}
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    assert np.hypot(snapped["femoral_head_centre_right"][0] - 300, snapped["femoral_head_centre_right"][1] - 300) <= 0.6
    assert snapped["femoral_head_centre_left"] == landmarks["femoral_head_centre_left"]  # native: not this rule's


def test_no_plausible_cup_leaves_the_predicted_centre() -> None:
    """A blob too small to be a cup's dome (or none near the prediction) does not move the centre."""
    mask = np.zeros((ROWS, COLS), bool)
    mask[290:310, 290:310] = True  # 10 mm: no cup
    landmarks = {"femoral_head_centre_right": (302.0, 301.0)}
    assert snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING) == landmarks


def _right_cup(centre: tuple[int, int], radius_px: int, inclination_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A right total hip as an AP film shows it, and its true (lateral, medial) rim points.

    The dome faces superomedially (image up-right); the opening ellipse (radiographic
    anteversion about 12 deg: minor axis 0.2 R) faces inferolaterally, its major axis at
    ``inclination_deg`` to the horizontal; the head sits in the cup, the neck leaves
    through the opening and the stem runs down.
    """
    mask = np.zeros((ROWS, COLS), np.uint8)
    cv2.ellipse(mask, centre, (radius_px, radius_px), inclination_deg, 180, 360, 1, -1)  # dome half
    cv2.ellipse(mask, centre, (radius_px, int(0.2 * radius_px)), inclination_deg, 0, 360, 1, -1)  # opening
    cv2.circle(mask, centre, int(0.62 * radius_px), 1, -1)  # prosthetic head
    t = np.radians(inclination_deg)
    axis = np.array([np.cos(t), np.sin(t)])
    opening = np.array([-np.sin(t), np.cos(t)])  # down-left
    neck_dir = opening + np.array([0.0, 0.6])
    neck_end = np.asarray(centre) + 2.0 * radius_px * neck_dir / np.linalg.norm(neck_dir)
    cv2.line(mask, centre, tuple(int(v) for v in neck_end), 1, int(0.4 * radius_px))
    cv2.line(mask, tuple(int(v) for v in neck_end), (int(neck_end[0]), ROWS - 100), 1, int(0.3 * radius_px))
    lateral, medial = np.asarray(centre) - radius_px * axis, np.asarray(centre) + radius_px * axis
    return mask.astype(bool), lateral, medial


def _inclination(lateral: np.ndarray, medial: np.ndarray) -> float:
    d = np.subtract(medial, lateral)
    return float(np.degrees(np.arctan2(d[1], d[0])))


@pytest.mark.parametrize("inclination", [30.0, 42.0, 55.0])
def test_cup_rim_points_are_the_ends_of_the_domes_diameter(inclination: float) -> None:
    """The network's rims (4-5 mm off, rim line 6 deg off) move to the drawn cup's: within 0.5 mm and 0.5 deg."""
    mask, lateral, medial = _right_cup((300, 330), 50, inclination)
    landmarks = {"ischial_tuberosity_right": (300.0, 560.0), "ischial_tuberosity_left": (600.0, 560.0),
                 "femoral_head_centre_right": (303.0, 327.0),
                 "cup_rim_lateral_right": (lateral[0] + 6.0, lateral[1] - 7.0),
                 "cup_rim_medial_right": (medial[0] - 5.0, medial[1] + 8.0),
                 "cup_rim_lateral_left": None, "cup_rim_medial_left": None}
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    got_lateral, got_medial = np.array(snapped["cup_rim_lateral_right"]), np.array(snapped["cup_rim_medial_right"])
    assert np.linalg.norm(got_lateral - lateral) <= 1.0, (got_lateral, lateral)  # 1 px = 0.5 mm
    assert np.linalg.norm(got_medial - medial) <= 1.0, (got_medial, medial)
    assert abs(_inclination(got_lateral, got_medial) - inclination) <= 0.5
    assert snapped["cup_rim_lateral_left"] is None and snapped["cup_rim_medial_left"] is None  # absent stays absent


def test_absent_rim_points_are_not_invented_from_a_cup() -> None:
    mask, _, _ = _right_cup((300, 330), 50, 45.0)
    landmarks = {"femoral_head_centre_right": (300.0, 330.0), "cup_rim_lateral_right": None, "cup_rim_medial_right": None}
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    assert snapped["cup_rim_lateral_right"] is None and snapped["cup_rim_medial_right"] is None


@pytest.mark.parametrize("head_radius_px", [32, 50])  # 16 mm: a total hip's head; 25 mm: a hemiarthroplasty's
def test_a_round_head_without_a_cup_has_no_rim_points(head_radius_px: int) -> None:
    """No metal cup shows (hemiarthroplasty, all-polyethylene cup): the network's rims are nulled, not kept."""
    mask = np.zeros((ROWS, COLS), np.uint8)
    cv2.circle(mask, (300, 330), head_radius_px, 1, -1)
    cv2.line(mask, (300, 330), (240, 420), 1, 24)  # neck
    cv2.line(mask, (240, 420), (240, 900), 1, 18)  # stem
    rims = {"cup_rim_lateral_right": (255.0, 300.0), "cup_rim_medial_right": (345.0, 360.0)}
    landmarks = {"femoral_head_centre_right": (303.0, 327.0), **rims}
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask.astype(bool)}, SPACING)
    assert snapped["cup_rim_lateral_right"] is None and snapped["cup_rim_medial_right"] is None
    assert np.hypot(snapped["femoral_head_centre_right"][0] - 300, snapped["femoral_head_centre_right"][1] - 330) <= 0.6


def test_an_implant_with_no_round_outline_keeps_the_predicted_rims() -> None:
    """Neither a dome nor a round head (a mask the segmentation broke up): the rule cannot tell, the network stands."""
    mask = np.zeros((ROWS, COLS), bool)
    mask[280:380, 250:350] = True  # a square
    rims = {"cup_rim_lateral_right": (255.0, 300.0), "cup_rim_medial_right": (345.0, 360.0)}
    landmarks = {"femoral_head_centre_right": (300.0, 330.0), **rims}
    snapped = snap_to_implant_outline(landmarks, {"implant_right": mask}, SPACING)
    assert {k: snapped[k] for k in rims} == rims
