"""The spec's measurement formulas on hand-built geometry with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.algorithms.geometry import fit_sphere, pelvic_frame, robust_fit_sphere, sector_mask
from models.algorithms.measurements import (
    compute_measurements,
    delta_measurements,
    min_joint_space_width_mm,
)
from models.algorithms.vocabulary import MEASUREMENTS


def _rotate(landmarks: dict, angle_deg: float, centre=(500.0, 500.0)) -> dict:
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    out = {}
    for k, v in landmarks.items():
        if v is None:
            out[k] = None
            continue
        x, y = v[0] - centre[0], v[1] - centre[1]
        out[k] = (centre[0] + c * x - s * y, centre[1] + s * x + c * y)
    return out


# An upright pelvis, 0.5 mm pixels: image left = patient right.
SPACING = (0.5, 0.5)
BASE = {
    "ischial_tuberosity_right": (300.0, 600.0),
    "ischial_tuberosity_left": (700.0, 600.0),
    "lesser_trochanter_right": (260.0, 640.0),  # 40 px = 20 mm below the line
    "lesser_trochanter_left": (740.0, 620.0),  # 20 px = 10 mm below
    "femoral_head_centre_right": (280.0, 460.0),  # 140 px = 70 mm above
    "femoral_head_centre_left": (720.0, 470.0),  # 65 mm above
    "pubic_symphysis": (500.0, 540.0),
    "femoral_shaft_proximal_right": (200.0, 700.0),  # shaft line x = 200: offset 80 px = 40 mm
    "femoral_shaft_distal_right": (200.0, 900.0),
    # Wiberg: edge 30 degrees lateral (image left for the right hip) of the vertical
    "acetabular_lateral_edge_right": (280.0 - 50.0 * math.sin(math.radians(30)), 460.0 - 50.0 * math.cos(math.radians(30))),
    # medial of the vertical on the left hip: -10 degrees (lateral is image right there)
    "acetabular_lateral_edge_left": (720.0 - 50.0 * math.sin(math.radians(10)), 470.0 - 50.0 * math.cos(math.radians(10))),
    # cup rim at 40 degrees to the reference line
    "cup_rim_lateral_left": (720.0 + 40.0 * math.cos(math.radians(40)), 470.0 - 40.0 * math.sin(math.radians(40))),
    "cup_rim_medial_left": (720.0 - 40.0 * math.cos(math.radians(40)), 470.0 + 40.0 * math.sin(math.radians(40))),
}
EXPECTED = {
    "leg_length_discrepancy": 10.0,
    "hip_centre_height_right": 70.0,
    "hip_centre_height_left": 65.0,
    "hip_centre_lateral_right": 110.0,
    "hip_centre_lateral_left": 110.0,
    "femoral_offset_right": 40.0,
    "lateral_centre_edge_angle_right": 30.0,
    "lateral_centre_edge_angle_left": -10.0,
    "cup_inclination_left": 40.0,
}


@pytest.mark.parametrize("angle", [0.0, 7.0, -12.0])
def test_known_answers_hold_under_in_plane_rotation(angle: float) -> None:
    got = compute_measurements(_rotate(BASE, angle), SPACING)
    assert set(got) == set(MEASUREMENTS)
    for name, value in EXPECTED.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    # inputs missing -> None, never invented
    assert got["femoral_offset_left"] is None
    assert got["cup_inclination_right"] is None
    assert got["min_joint_space_width_right"] is None


def test_anisotropic_spacing_scales_each_axis() -> None:
    landmarks = dict(BASE)
    got = compute_measurements(landmarks, (0.5, 0.25))  # columns at 0.25 mm
    assert got["hip_centre_height_right"] == pytest.approx(70.0)  # vertical: rows
    assert got["hip_centre_lateral_right"] == pytest.approx(55.0)  # horizontal: columns
    assert got["femoral_offset_right"] == pytest.approx(20.0)


def test_without_tuberosities_no_pelvic_line_measurements() -> None:
    landmarks = {k: v for k, v in BASE.items() if not k.startswith("ischial")}
    got = compute_measurements(landmarks, SPACING)
    assert got["leg_length_discrepancy"] is None and got["hip_centre_height_right"] is None
    assert got["femoral_offset_right"] == pytest.approx(40.0)  # needs no reference line


def test_pelvic_frame_vertical_points_cranially() -> None:
    _, horizontal, vertical = pelvic_frame((0, 100), (100, 100), (1, 1))
    assert np.allclose(horizontal, [1, 0]) and np.allclose(vertical, [0, -1])
    _, _, vertical = pelvic_frame((100, 100), (0, 100), (1, 1))  # order does not flip "up"
    assert np.allclose(vertical, [0, -1])
    with pytest.raises(ValueError):
        pelvic_frame((5, 5), (5, 5), (1, 1))


def test_min_joint_space_width_on_a_drawn_hip() -> None:
    shape = (200, 200)
    centre = (100.0, 120.0)
    inside, radius_px = sector_mask(shape, centre, np.array([0.0, -1.0]), 60.0, (1.0, 1.0))
    head = radius_px <= 40.0
    roof = inside & (radius_px >= 48.0) & (radius_px <= 56.0)
    joint = inside & ~head & (radius_px < 48.0)
    for spacing in (0.5, 0.2):
        width = min_joint_space_width_mm(head, roof, joint, (spacing, spacing))
        # head pixel centres reach r <= 40, roof pixel centres start at r >= 48: 7 to 8 empty pixels
        assert 7.0 * spacing - 1e-6 <= width <= 8.0 * spacing + 1e-6
    # narrower in one place: move part of the roof inward
    roof2 = roof | (inside & (radius_px >= 43.0) & (radius_px <= 56.0) & (np.abs(np.mgrid[0:200, 0:200][1] - 100) < 5))
    narrow = min_joint_space_width_mm(head, roof2, joint & ~roof2, (1.0, 1.0))
    assert 2.0 - 1e-6 <= narrow <= 3.0 + 1e-6
    assert min_joint_space_width_mm(head, np.zeros(shape, bool), joint, (1.0, 1.0)) is None


def test_measurements_use_masks_for_joint_space_only_without_implant() -> None:
    shape = (300, 300)
    inside, radius_px = sector_mask(shape, (150.0, 150.0), np.array([0.0, -1.0]), 60.0, (1.0, 1.0))
    masks = {
        "femoral_head_right": radius_px <= 30,
        "acetabular_roof_right": inside & (radius_px >= 36) & (radius_px <= 44),
        "joint_space_right": inside & (radius_px > 30) & (radius_px < 36),
        "implant_right": np.zeros(shape, bool),
    }
    landmarks = {"ischial_tuberosity_right": (100, 250), "ischial_tuberosity_left": (200, 250)}
    got = compute_measurements(landmarks, (1.0, 1.0), masks)
    assert 5.0 - 1e-6 <= got["min_joint_space_width_right"] <= 6.0 + 1e-6
    masks["implant_right"] = radius_px <= 10
    assert compute_measurements(landmarks, (1.0, 1.0), masks)["min_joint_space_width_right"] is None


def test_sphere_fit_recovers_a_noisy_sphere_patch() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(800, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v = v[v[:, 2] > 0.2]  # a cap, as the femoral head's joint surface is
    pts = np.array([10.0, -20.0, 30.0]) + 24.0 * v + rng.normal(0, 0.3, v.shape)
    centre, radius = fit_sphere(pts)
    assert np.allclose(centre, [10, -20, 30], atol=0.6) and radius == pytest.approx(24.0, abs=0.5)
    outliers = np.vstack([pts, pts[:40] + 8.0])
    centre, radius = robust_fit_sphere(outliers)
    assert np.allclose(centre, [10, -20, 30], atol=1.0) and radius == pytest.approx(24.0, abs=1.0)
    with pytest.raises(ValueError):
        fit_sphere(pts[:3])


def test_deltas_are_post_minus_pre() -> None:
    pre = {"leg_length_discrepancy": 2.0, "femoral_offset_right": 40.0, "femoral_offset_left": None}
    post = {"leg_length_discrepancy": -1.0, "femoral_offset_right": 43.5, "femoral_offset_left": 41.0}
    got = delta_measurements(pre, post)
    assert got["delta_leg_length_discrepancy"] == pytest.approx(-3.0)
    assert got["delta_femoral_offset_right"] == pytest.approx(3.5)
    assert got["delta_femoral_offset_left"] is None
