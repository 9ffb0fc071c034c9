"""The spec's pre/post deltas, measured after aligning the post-op exam onto the pre-op one.

Post-op landmarks are mapped through the pelvis homography (POST -> PRE, the
inverse of ``hipnode align``'s PRE -> POST) into the pre-op image, so both
exams are measured in one frame with one pixel spacing. The pelvic reference
(both ``ischial_tuberosity`` points and ``pubic_symphysis``) is taken from the
pre-op exam for both, so a delta reflects what changed at the hip, not noise
in re-finding the pelvis. Deltas are post minus pre, in mm
(:func:`models.algorithms.measurements.delta_measurements`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.algorithms.measurements import compute_measurements, delta_measurements

Landmarks = Mapping[str, Sequence[float] | None]

PELVIC_REFERENCE: tuple[str, ...] = ("ischial_tuberosity_right", "ischial_tuberosity_left", "pubic_symphysis")


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
