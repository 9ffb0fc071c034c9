"""Greater trochanters and shaft points moved onto the femur mask: exact geometry on drawn femurs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.algorithms.exposed_field import ExposedField
from models.algorithms.femoral_outline import (
    SHAFT_END_CLEARANCE_MM,
    SHAFT_LEVEL_SPACING_MM,
    shaft_axis,
    shaft_midpoint,
    snap_to_femoral_outline,
)

SPACING = (0.5, 0.5)  # mm per pixel (row, col)
ROWS, COLS = 1000, 1000
TROCHANTER_TOP = 190.0  # row of the flat trochanter top (its columns span 140..200 on the right femur)
SHAFT_MIDLINE = 200.0  # column of the right shaft's centre line (shaft columns 170..230)


def _right_femur() -> tuple[np.ndarray, np.ndarray]:
    """(femur, head) masks of a schematic right femur on the image's left: head, neck, trochanter, shaft.

    The head (top row 150) is more cranial than the trochanter (row 190): only the
    rule's lateral clearance keeps the trochanter from climbing onto the head.
    """
    femur = np.zeros((ROWS, COLS), np.uint8)
    head = np.zeros_like(femur)
    cv2.circle(head, (300, 200), 50, 1, -1)  # 25 mm radius
    femur |= head
    cv2.line(femur, (300, 200), (200, 260), 1, 40)  # neck
    cv2.rectangle(femur, (140, int(TROCHANTER_TOP)), (200, 300), 1, -1)  # trochanter block, flat top
    cv2.rectangle(femur, (170, 240), (230, 980), 1, -1)  # shaft
    return femur, head


def _hips(angle_deg: float = 0.0) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]], np.ndarray]:
    """Masks of both femurs (the left mirrored), the true points, and the rotation applied."""
    femur, head = _right_femur()
    masks = {"femur_right": femur, "femoral_head_right": head,
             "femur_left": femur[:, ::-1].copy(), "femoral_head_left": head[:, ::-1].copy()}
    truth = {"greater_trochanter_right": (170.0, TROCHANTER_TOP),
             "femoral_shaft_proximal_right": (SHAFT_MIDLINE, 500.0),
             "femoral_shaft_distal_right": (SHAFT_MIDLINE, 500.0 + SHAFT_LEVEL_SPACING_MM / SPACING[0]),
             "femoral_head_centre_right": (300.0, 200.0),
             "ischial_tuberosity_right": (350.0, 450.0)}
    for name, (x, y) in list(truth.items()):
        truth[name.replace("_right", "_left")] = (COLS - 1 - x, y)
    matrix = cv2.getRotationMatrix2D((COLS / 2, ROWS / 2), angle_deg, 1.0)
    masks = {k: cv2.warpAffine(v, matrix, (COLS, ROWS), flags=cv2.INTER_NEAREST).astype(bool) for k, v in masks.items()}
    truth = {k: tuple(matrix @ np.array([x, y, 1.0])) for k, (x, y) in truth.items()}
    return masks, truth, matrix[:, :2]


def _predicted(truth: dict[str, tuple[float, float]], rotation: np.ndarray, offset_px: tuple[float, float]) -> dict:
    """Truth with the femoral points shifted by ``offset_px`` (in the unrotated frame); anchors exact."""
    shift = rotation @ np.asarray(offset_px)
    return {name: (xy[0] + shift[0], xy[1] + shift[1]) if name.startswith(("greater", "femoral_shaft")) else xy
            for name, xy in truth.items()}


@pytest.mark.parametrize("angle", [0.0, 10.0, -8.0])
def test_points_10_mm_off_move_onto_the_outline(angle: float) -> None:
    masks, truth, rotation = _hips(angle)
    predicted = _predicted(truth, rotation, offset_px=(12.0, -16.0))  # 10 mm off
    snapped = snap_to_femoral_outline(predicted, masks, SPACING)
    cranial = rotation @ np.array([0.0, -1.0])
    for side in ("right", "left"):
        tip = np.array(snapped[f"greater_trochanter_{side}"])
        true_tip = np.array(truth[f"greater_trochanter_{side}"])
        # the top is flat across 30 mm: its height is exact, its position along it is the flat part's middle
        assert abs((tip - true_tip) @ cranial) <= 2.0, (side, tip, true_tip)
        assert np.linalg.norm(tip - true_tip) <= 6.0
        across = np.array([cranial[1], -cranial[0]])
        for level in ("proximal", "distal"):
            name = f"femoral_shaft_{level}_{side}"
            got, want = (np.array(p[name]) for p in (snapped, truth))
            assert abs((got - want) @ across) <= 1.5, (name, got, want)  # moved onto the midline
        proximal, distal, chosen = (np.array(p[f"femoral_shaft_{level}_{side}"])
                                    for p, level in ((snapped, "proximal"), (snapped, "distal"), (predicted, "proximal")))
        assert abs((proximal - chosen) @ cranial) <= 1.5  # at the level the network chose
        # the distal point is set from the proximal one, not from the network's distal level (10 mm off here)
        assert abs((proximal - distal) @ cranial * SPACING[0] - SHAFT_LEVEL_SPACING_MM) <= 1.0


def test_distal_level_stops_where_the_femur_leaves_the_film() -> None:
    masks, truth, rotation = _hips()
    end_row = 560  # the film ends 30 mm below the proximal level (row 500)
    for side in ("right", "left"):
        masks[f"femur_{side}"][end_row + 1:] = False
    predicted = _predicted(truth, rotation, offset_px=(12.0, 0.0))
    snapped = snap_to_femoral_outline(predicted, masks, SPACING)
    for side in ("right", "left"):
        distal = snapped[f"femoral_shaft_distal_{side}"]
        assert distal is not None
        assert distal[1] == pytest.approx(end_row - SHAFT_END_CLEARANCE_MM / SPACING[0], abs=2.0)


def test_the_head_is_not_taken_for_the_trochanter() -> None:
    masks, truth, rotation = _hips()
    predicted = _predicted(truth, rotation, offset_px=(60.0, -20.0))  # 30 mm toward the head
    tip = snap_to_femoral_outline(predicted, masks, SPACING)["greater_trochanter_right"]
    assert tip[1] == pytest.approx(TROCHANTER_TOP, abs=2.0)  # the head's top is at row 150
    assert tip[0] < 224  # lateral of the head rim plus the clearance


def test_presence_is_never_changed() -> None:
    masks, truth, rotation = _hips()
    predicted = _predicted(truth, rotation, offset_px=(12.0, 0.0))
    predicted["femoral_shaft_distal_left"] = None  # out of field
    snapped = snap_to_femoral_outline(predicted, masks, SPACING)
    assert snapped["femoral_shaft_distal_left"] is None
    assert set(snapped) == set(predicted)
    # no femur mask: the network's points stand
    without_left = {k: v for k, v in masks.items() if k != "femur_left"}
    kept = snap_to_femoral_outline(predicted, without_left, SPACING)
    assert kept["greater_trochanter_left"] == predicted["greater_trochanter_left"]
    assert kept["greater_trochanter_right"] != predicted["greater_trochanter_right"]


def test_a_replaced_head_borrows_the_other_sides_radius() -> None:
    masks, truth, rotation = _hips()
    masks["femoral_head_right"] = np.zeros_like(masks["femoral_head_right"])  # implant: no native head
    predicted = _predicted(truth, rotation, offset_px=(12.0, -16.0))
    tip = snap_to_femoral_outline(predicted, masks, SPACING)["greater_trochanter_right"]
    assert tip[1] == pytest.approx(TROCHANTER_TOP, abs=2.0)


def _slanted_shaft(film_left_mm: float) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Points (mm) of a 20 mm wide shaft whose centre line is x = 0.5 y - 2, seen on a film starting at ``film_left_mm``."""
    xs, ys = np.meshgrid(np.arange(-20.0, 80.0, 0.25), np.arange(0.0, 120.0, 0.25))
    points = np.column_stack([xs.ravel(), ys.ravel()])
    inside = (np.abs(points[:, 0] - (0.5 * points[:, 1] - 2.0)) <= 10.0) & (points[:, 0] >= film_left_mm)
    direction = np.array([0.5, 1.0]) / np.hypot(0.5, 1.0)
    return points[inside] - [film_left_mm, 0.0], (np.array([-2.0 - film_left_mm, 0.0]), direction)


def _off_centre_line(point: np.ndarray, axis: tuple[np.ndarray, np.ndarray]) -> float:
    origin, direction = axis
    return float(abs((point - origin) @ np.array([-direction[1], direction[0]])))


def test_a_shaft_section_cut_by_the_film_edge_is_centred_from_its_whole_width() -> None:
    """At 10 mm down, the film's edge cuts the lateral cortex: the visible part's middle is 3 mm off."""
    femur_mm, axis = _slanted_shaft(film_left_mm=0.0)
    level_point = axis[0] + 10.0 / axis[1][1] * axis[1]
    naive = shaft_midpoint(femur_mm, axis, level_point)  # no film width: the cut is not seen
    centred = shaft_midpoint(femur_mm, axis, level_point, film_mm=(0.0, 200.0, -np.inf, np.inf))
    assert naive is not None and centred is not None
    assert _off_centre_line(naive, axis) > 2.5
    assert _off_centre_line(centred, axis) < 0.5


def test_the_shaft_axis_leaves_out_sections_the_film_edge_cuts() -> None:
    """Cut sections' centroids lean toward the film; the axis through the whole ones does not."""
    femur_mm, axis = _slanted_shaft(film_left_mm=0.0)
    head = np.array([-60.0, -80.0])  # sections 70-170 mm below it span the shaft's cut and whole parts
    cranial = np.array([0.0, -1.0])
    _, leaning = shaft_axis(femur_mm, head, cranial)  # no film width: the cut sections count
    origin, direction = shaft_axis(femur_mm, head, cranial, film_mm=(0.0, 200.0, -np.inf, np.inf))
    assert np.degrees(np.arccos(abs(leaning @ axis[1]))) > 1.5
    assert np.degrees(np.arccos(abs(direction @ axis[1]))) < 0.5 and _off_centre_line(origin, axis) < 0.5


def test_a_shaft_along_a_shutter_is_cut_at_the_shutters_edge() -> None:
    """A collimator shutter over the right shaft's lateral half; the mask stops 2 mm under it.

    A 384 px segmentation candidate (session 14) stopped near a shutter instead of
    carrying the femur on, as this mask does. Cut only at the film's edge, the
    visible part's middle (column 215.5) lay inside the field and the distal
    point was invented; cut at the shutter, the middle is
    the medial cortex less the other femur's width (column 200, the true midline),
    under the shutter: out of field.
    """
    masks, truth, rotation = _hips()
    shutter_col = 205
    masks["femur_right"][:, : shutter_col - 4] = False
    field = ExposedField(0, ROWS, shutter_col, COLS)
    predicted = _predicted(truth, rotation, offset_px=(12.0, 0.0))
    film_only = snap_to_femoral_outline(predicted, masks, SPACING)
    assert film_only["femoral_shaft_distal_right"] is not None  # the old rule: an invented point
    snapped = snap_to_femoral_outline(predicted, masks, SPACING, field)
    assert snapped["femoral_shaft_distal_right"] is None
    assert snapped["femoral_shaft_proximal_right"][0] == pytest.approx(SHAFT_MIDLINE, abs=1.0)
    assert snapped["femoral_shaft_distal_left"] is not None  # the other side is whole
