"""The spec's pre/post deltas: hip centres through the pelvis alignment, the femur's own measures per film.

Hip-centre deltas say where the hip now sits on the pelvis. Post-op landmarks
are mapped through the pelvis homography (POST -> PRE, the inverse of
``hipnode align``'s PRE -> POST) into the pre-op image, so both exams are
measured in one frame with one pixel spacing, against the pre-op exam's pelvic
reference (both ``ischial_tuberosity`` points and ``pubic_symphysis``).

Leg length and femoral offset are differences within one film (right against
left, head against shaft): each film measures them in its own frame and the
delta is post minus pre. A homography fitted to the pelvis cannot carry the
femur, which lies off the pelvis's plane, once the pelvis turned out of plane
between the films; mapping these landmarks added error. Measured against the
physical truth (the post-op state rendered with the pre-op pelvis pose) on
synthetic pairs, predicted landmarks (docs/align.md, "Session 18"):

* leg length MAE 6.7 -> 4.9 mm (1000 px, held out), 10.8 -> 5.8 (full size,
  held out), 5.6 -> 3.1 (1000 px, training anatomy), mapped -> per film;
* femoral offset 4.6 -> 3.2, 4.3 -> 2.5, 2.6 -> 1.8 mm;
* hip centres the other way round: per film 2.4-4.9 mm, mapped 1.3-2.7 mm.

Deltas are post minus pre, in mm
(:func:`models.algorithms.measurements.delta_measurements`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.algorithms.measurements import compute_measurements, delta_measurements
from models.algorithms.results import AlgorithmInfo

Landmarks = Mapping[str, Sequence[float] | None]

PELVIC_REFERENCE: tuple[str, ...] = ("ischial_tuberosity_right", "ischial_tuberosity_left", "pubic_symphysis")
PER_FILM_DELTAS: tuple[str, ...] = (
    "delta_leg_length_discrepancy", "delta_femoral_offset_right", "delta_femoral_offset_left",
)
"""Deltas of measures taken within one film, so each film measures them in its own frame."""
DELTA_RULE = AlgorithmInfo("hipnode-pre-post-deltas", "2.0")
"""2.0: leg length and offsets per film (1.0 mapped every landmark through the pelvis homography)."""


def map_landmarks(landmarks: Landmarks, h: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """Map every present landmark through the 3x3 homography ``h``; absent stay None.

    >>> map_landmarks({"a": (1.0, 2.0), "b": None}, np.diag([2.0, 2.0, 1.0]))
    {'a': (2.0, 4.0), 'b': None}
    """
    h = np.asarray(h, dtype=np.float64)
    out: dict[str, tuple[float, float] | None] = {}
    for name, point in landmarks.items():
        if point is None:
            out[name] = None
            continue
        x, y, w = h @ np.array([float(point[0]), float(point[1]), 1.0])
        out[name] = None if abs(w) < 1e-12 else (float(x / w), float(y / w))
    return out


def aligned_deltas(
    pre_landmarks: Landmarks, post_landmarks: Landmarks, h_pre_to_post: np.ndarray,
    pre_spacing_mm: Sequence[float],
) -> dict[str, float | None]:
    """``delta_*`` measurements (post minus pre, mm) in the pre-op frame."""
    h_post_to_pre = np.linalg.inv(np.asarray(h_pre_to_post, dtype=np.float64))
    post_in_pre = map_landmarks(post_landmarks, h_post_to_pre)
    for name in PELVIC_REFERENCE:
        post_in_pre[name] = None if pre_landmarks.get(name) is None else tuple(pre_landmarks[name])  # type: ignore[assignment]
    pre_measured = compute_measurements(pre_landmarks, pre_spacing_mm)
    post_measured = compute_measurements(post_in_pre, pre_spacing_mm)
    return delta_measurements(pre_measured, post_measured)


def pre_post_deltas(
    pre_landmarks: Landmarks, post_landmarks: Landmarks, h_pre_to_post: np.ndarray,
    pre_spacing_mm: Sequence[float], post_spacing_mm: Sequence[float] | None,
) -> dict[str, float | None]:
    """The node's ``delta_*``: hip centres through the pelvis, :data:`PER_FILM_DELTAS` per film.

    Without the post-op film's own calibration (``post_spacing_mm`` None) its
    per-film measures cannot be in mm, and the mapped values are kept.
    """
    deltas = aligned_deltas(pre_landmarks, post_landmarks, h_pre_to_post, pre_spacing_mm)
    if post_spacing_mm is None:
        return deltas
    per_film = delta_measurements(compute_measurements(pre_landmarks, pre_spacing_mm),
                                  compute_measurements(post_landmarks, post_spacing_mm))
    return {**deltas, **{name: per_film.get(name) for name in PER_FILM_DELTAS}}
