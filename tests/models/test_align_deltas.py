"""Pre/post deltas: hip centres in one frame through the pelvis homography, femur measures per film."""

from __future__ import annotations

import numpy as np

from models.algorithms.deltas import PER_FILM_DELTAS, aligned_deltas, map_landmarks, pre_post_deltas
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


def test_femur_measures_come_from_each_film_hip_centres_through_the_pelvis() -> None:
    """An imperfect pelvis homography (out-of-plane turn) moves mapped femur landmarks; per film it cannot."""
    truth = np.array([[1.0, 0.0, 12.0], [0.0, 1.0, -7.0], [0.0, 0.0, 1.0]])
    post = _moved(truth, {"lesser_trochanter_left": (0.0, 6.0), "femoral_head_centre_right": (0.0, -4.0)})
    shear = np.array([[1.0, 0.0, 0.0], [0.02, 1.0, -4.0], [0.0, 0.0, 1.0]])  # right side up, left down
    estimate = truth @ shear
    mapped = aligned_deltas(PRE, post, estimate, (0.5, 0.5))
    deltas = pre_post_deltas(PRE, post, estimate, (0.5, 0.5), (0.5, 0.5))
    # the left trochanter 6 px (3 mm) lower: left leg 3 mm longer, read off each film alone
    assert np.isclose(deltas["delta_leg_length_discrepancy"], -3.0)
    assert abs(mapped["delta_leg_length_discrepancy"] + 3.0) > 1.0  # the mapping's shear shows in it
    assert np.isclose(deltas["delta_femoral_offset_left"], 0.0, atol=1e-9)  # head and shaft unchanged on the film
    for name in ("delta_hip_centre_height_right", "delta_hip_centre_lateral_left"):
        assert deltas[name] == mapped[name]  # hip centres: through the pelvis


def test_per_film_deltas_use_each_films_own_calibration() -> None:
    post = dict(PRE)
    deltas = pre_post_deltas(PRE, post, np.eye(3), (0.5, 0.5), (0.6, 0.6))
    own = {name: deltas[name] for name in PER_FILM_DELTAS}
    # the same pixels at a coarser calibration: offsets grow by 20%, leg length (0 px) stays 0
    assert np.isclose(own["delta_leg_length_discrepancy"], 0.0, atol=1e-9)
    assert own["delta_femoral_offset_right"] > 0.5 and own["delta_femoral_offset_left"] > 0.5
    assert all(abs(deltas[n]) < 1e-9 for n in deltas if n not in PER_FILM_DELTAS)
    assert pre_post_deltas(PRE, post, np.eye(3), (0.5, 0.5), None) == aligned_deltas(PRE, post, np.eye(3), (0.5, 0.5))
