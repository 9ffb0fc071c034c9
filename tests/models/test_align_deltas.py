"""Pre/post deltas in one frame through the pelvis homography."""

from __future__ import annotations

import numpy as np

from models.algorithms.deltas import aligned_deltas, map_landmarks
from models.algorithms.vocabulary import DELTA_MEASUREMENTS

PRE = {
    "ischial_tuberosity_right": (100.0, 400.0),
    "ischial_tuberosity_left": (300.0, 400.0),
    "pubic_symphysis": (200.0, 350.0),
    "lesser_trochanter_right": (80.0, 450.0),
    "lesser_trochanter_left": (320.0, 450.0),
    "femoral_head_centre_right": (90.0, 300.0),
    "femoral_head_centre_left": (310.0, 300.0),
    "femoral_shaft_proximal_right": (120.0, 470.0),
    "femoral_shaft_distal_right": (125.0, 530.0),
    "femoral_shaft_proximal_left": (280.0, 470.0),
    "femoral_shaft_distal_left": (275.0, 530.0),
}


def _moved(h: np.ndarray, change: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float] | None]:
    """The post-op landmarks: pre landmarks changed in the pre frame, then imaged through ``h``."""
    changed = dict(PRE)
    for name, (dx, dy) in change.items():
        x, y = changed[name]
        changed[name] = (x + dx, y + dy)
    return map_landmarks(changed, h)


def test_no_change_gives_zero_deltas_under_any_pelvis_motion() -> None:
    a = np.deg2rad(5)
    h = np.array([[1.1 * np.cos(a), -1.1 * np.sin(a), 30], [1.1 * np.sin(a), 1.1 * np.cos(a), -12], [1e-5, 0, 1]])
    deltas = aligned_deltas(PRE, _moved(h, {}), h, (0.5, 0.5))
    assert set(deltas) == set(DELTA_MEASUREMENTS)
    assert all(v is not None and abs(v) < 1e-6 for v in deltas.values())


def test_lengthened_right_leg_and_lateralised_hip() -> None:
    h = np.array([[0.95, 0.0, 10], [0.0, 0.95, 5], [0, 0, 1]])
    post = _moved(h, {"lesser_trochanter_right": (0.0, 8.0), "femoral_head_centre_right": (-6.0, 0.0)})
    deltas = aligned_deltas(PRE, post, h, (0.5, 0.5))
    assert np.isclose(deltas["delta_leg_length_discrepancy"], 4.0)  # 8 px lower at 0.5 mm = right leg 4 mm longer
    assert np.isclose(deltas["delta_hip_centre_lateral_right"], 3.0)
    assert np.isclose(deltas["delta_hip_centre_lateral_left"], 0.0, atol=1e-9)


def test_missing_landmark_gives_none() -> None:
    post = map_landmarks({**PRE, "lesser_trochanter_left": None}, np.eye(3))
    assert aligned_deltas(PRE, post, np.eye(3), (1.0, 1.0))["delta_leg_length_discrepancy"] is None
