"""The lines drawn in the SR and overlay measure what the spec's formulas measure."""

from __future__ import annotations

import numpy as np
import pytest

from models.algorithms.geometry import line_angle_deg, to_mm
from models.algorithms.measurements import compute_measurements
from node.results.geometry import clip_line, measurement_polyline
from tests.node.results_sources import make_analysis

SPACING = (0.6, 0.8)  # anisotropic on purpose: perpendiculars must be right angles in mm


def _tilted_landmarks() -> dict:
    lm = make_analysis(post_op=True).landmarks
    c, s = np.cos(np.radians(7)), np.sin(np.radians(7))
    return {k: None if v is None else (160 + c * (v[0] - 160) - s * (v[1] - 128), 128 + s * (v[0] - 160) + c * (v[1] - 128)) for k, v in lm.items()}


def _mm(points) -> list[np.ndarray]:
    return [to_mm(p, SPACING) for p in points]


def test_polylines_reproduce_the_measurements() -> None:
    lm = _tilted_landmarks()
    values = compute_measurements(lm, SPACING)
    checked = 0
    for name, value in values.items():
        line = measurement_polyline(name, lm, SPACING)
        if value is None:
            continue
        assert line is not None, name
        pts = _mm(line)
        if name.startswith(("femoral_offset_", "hip_centre_height_", "hip_centre_lateral_")):
            assert np.linalg.norm(pts[1] - pts[0]) == pytest.approx(abs(value), abs=1e-6), name
        elif name.startswith("lateral_centre_edge_angle_"):
            angle = np.degrees(np.arccos(np.dot(pts[0] - pts[1], pts[2] - pts[1]) / (np.linalg.norm(pts[0] - pts[1]) * np.linalg.norm(pts[2] - pts[1]))))
            assert angle == pytest.approx(abs(value), abs=1e-6), name
        elif name.startswith("cup_inclination_"):
            reference = _mm([lm["ischial_tuberosity_right"], lm["ischial_tuberosity_left"]])
            assert line_angle_deg(pts[1] - pts[0], reference[1] - reference[0]) == pytest.approx(value, abs=1e-6)
        elif name == "leg_length_discrepancy":
            right, left = np.linalg.norm(pts[1] - pts[0]), np.linalg.norm(pts[2] - pts[3])
            assert right - left == pytest.approx(value, abs=1e-6)
        checked += 1
    assert checked >= 10


def test_missing_landmarks_give_no_line() -> None:
    lm = _tilted_landmarks()
    lm["ischial_tuberosity_left"] = None
    assert measurement_polyline("hip_centre_height_right", lm, SPACING) is None
    assert measurement_polyline("leg_length_discrepancy", lm, SPACING) is None
    assert measurement_polyline("femoral_offset_right", lm, SPACING) is not None  # needs no pelvic line
    assert measurement_polyline("cup_inclination_right", lm, SPACING) is None  # native side


def test_clip_line_reaches_the_borders() -> None:
    a, b = clip_line(np.array([10.0, 50.0]), np.array([20.0, 50.0]), 100, 80)
    assert a == pytest.approx((0.0, 50.0)) and b == pytest.approx((99.0, 50.0))
    assert clip_line(np.array([1.0, 1.0]), np.array([1.0, 1.0]), 100, 80) is None
