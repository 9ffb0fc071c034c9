"""Pelvic landmarks defined as extremes of the bone outline, read off the pelvis mask.

The spec defines `ischial_tuberosity` as the most caudal point of the ischium
and `pubic_symphysis` as the superior end of the symphysis: both are extreme
points of the pelvis silhouette in a known direction. A network regressing
them from two training anatomies learns where they sat on those pelves (a
bias of 10-16 mm on held-out anatomy), while the pelvis segmentation's outline
is accurate to a few millimetres. So the predicted point only says *which*
extreme is meant; the position is the outline's extreme near it.

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.algorithms.geometry import pelvic_frame
from models.algorithms.vocabulary import SIDES

Point = tuple[float, float]

TUBEROSITY_SEARCH_MM = 20.0
"""Radius around the predicted tuberosity searched for the caudal extreme (the network errs by about 11 mm;
further out the lowest bone is sometimes another structure: 30-40 mm gave worse leg lengths)."""
EXTREME_TOLERANCE_MM = 1.0
"""Outline pixels within this distance of the extreme are averaged (a flat bottom has no single extreme)."""


def caudal_direction(landmarks: Mapping[str, Point | None]) -> np.ndarray:
    """Unit vector (x, y) pointing caudally in the image.

    Perpendicular to the line through the femoral head centres (well found),
    else through the tuberosities, else the image's own down direction.
    """
    for stem in ("femoral_head_centre", "ischial_tuberosity"):
        right, left = landmarks.get(f"{stem}_right"), landmarks.get(f"{stem}_left")
        if right is not None and left is not None:
            across = np.subtract(left, right, dtype=np.float64)
            if np.linalg.norm(across) > 1e-6:
                down = np.array([-across[1], across[0]]) / np.linalg.norm(across)
                return down if down[1] > 0 else -down
    return np.array([0.0, 1.0])


def pelvic_axes(landmarks: Mapping[str, Point | None], spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal toward the patient's left, cranial) unit vectors in image mm.

    The spec's pelvic frame (through the tuberosities) when both are present,
    else perpendicular to the caudal direction the head centres give.
    """
    tuberosities = landmarks.get("ischial_tuberosity_right"), landmarks.get("ischial_tuberosity_left")
    if tuberosities[0] is not None and tuberosities[1] is not None:
        _, horizontal, cranial = pelvic_frame(tuberosities[0], tuberosities[1], spacing_mm)
        return horizontal, cranial
    cranial = -caudal_direction(landmarks)
    horizontal = np.array([-cranial[1], cranial[0]])
    return (horizontal if horizontal[0] > 0 else -horizontal), cranial


def crop_around(mask: np.ndarray, centre: Point, radius_px: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The part of ``mask`` within ``radius_px`` (x, y) of ``centre``, and its top-left corner (x0, y0)."""
    x0 = max(0, int(np.floor(centre[0] - radius_px[0])))
    y0 = max(0, int(np.floor(centre[1] - radius_px[1])))
    x1 = min(mask.shape[1], int(np.ceil(centre[0] + radius_px[0])) + 1)
    y1 = min(mask.shape[0], int(np.ceil(centre[1] + radius_px[1])) + 1)
    return mask[y0:y1, x0:x1], x0, y0


def extreme_points(points: np.ndarray, direction: np.ndarray, spacing_xy: np.ndarray) -> np.ndarray:
    """The ``points`` within :data:`EXTREME_TOLERANCE_MM` of the extreme along ``direction`` (mm metric).

    Their mean is the landmark: a flat or rounded end has no single extreme pixel.
    """
    along = (points * spacing_xy) @ direction
    return points[along >= along.max() - EXTREME_TOLERANCE_MM]


def extreme_near(
    mask: np.ndarray, predicted: Point, direction: np.ndarray, spacing_mm: tuple[float, float], radius_mm: float
) -> Point | None:
    """Mean of the ``mask`` pixels within ``radius_mm`` of ``predicted`` that lie at their extreme along
    ``direction`` (within :data:`EXTREME_TOLERANCE_MM`); None when the mask has no pixel there."""
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]], dtype=np.float64)
    window, x0, y0 = crop_around(mask, predicted, radius_mm / spacing_xy)
    ys, xs = np.nonzero(window)
    if len(xs) == 0:
        return None
    points = np.column_stack([xs + x0, ys + y0]).astype(np.float64)
    inside = np.linalg.norm((points - predicted) * spacing_xy, axis=1) <= radius_mm
    if not inside.any():
        return None
    chosen = extreme_points(points[inside], direction, spacing_xy)
    return float(chosen[:, 0].mean()), float(chosen[:, 1].mean())


def ischial_tuberosity(
    pelvis: np.ndarray, predicted: Point, caudal: np.ndarray, spacing_mm: tuple[float, float]
) -> Point | None:
    """Most caudal pelvis pixels within :data:`TUBEROSITY_SEARCH_MM` of ``predicted``."""
    return extreme_near(pelvis, predicted, caudal, spacing_mm, TUBEROSITY_SEARCH_MM)


def snap_to_pelvis_outline(
    landmarks: Mapping[str, Point | None], pelvis: np.ndarray, spacing_mm: tuple[float, float]
) -> dict[str, Point | None]:
    """``landmarks`` with the tuberosities and the symphysis moved to the outline's extremes.

    Presence is never changed: a null landmark stays null, and a present one
    keeps its predicted position when the mask has no bone near it.
    """
    out = dict(landmarks)
    caudal = caudal_direction(landmarks)
    for side in SIDES:
        name = f"ischial_tuberosity_{side}"
        if (point := landmarks.get(name)) is not None:
            out[name] = ischial_tuberosity(pelvis, point, caudal, spacing_mm) or point
    return out
