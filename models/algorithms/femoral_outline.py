"""Femoral landmarks read off the femur mask: greater trochanter tip and shaft midpoints.

The spec defines `greater_trochanter` as the most cranial point of the greater
trochanter and the two shaft points as midpoints between the femoral cortices.
Both are properties of the femur's outline, which the segmentation finds to a
few millimetres on anatomy it was not trained on, while the landmark networks
carry an anatomy bias there (greater trochanter 8-9 mm on held-out anatomy).
So the network's point only says which hip and which level is meant; the
position comes from the outline:

- greater trochanter: the most cranial femur pixel lateral of the femoral head
  (beyond the head radius plus :data:`TROCHANTER_LATERAL_CLEARANCE_MM`), the
  same region the generator's ground truth is picked from;
- shaft points: moved across the shaft to the middle of the femur's
  cross-section perpendicular to the shaft axis; the proximal one at the level
  the network chose, the distal one :data:`SHAFT_LEVEL_SPACING_MM` further down
  (or at the femur's last complete section when the film ends sooner). The
  network's own distal level erred by 8 mm on held-out anatomy: a point on a
  featureless shaft has nothing to anchor it but the distance from above.
  Where the film's side edge cuts the shaft, the cut cortex is not the
  cortex: the shaft axis leaves such sections out, and a midpoint there is
  the visible cortex plus half the width of whole sections nearby.

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.algorithms.hip_outline import head_radius_mm
from models.algorithms.pelvic_extremes import EDGE_MARGIN_MM, extreme_points, pelvic_axes
from models.algorithms.vocabulary import SIDES

Point = tuple[float, float]

TROCHANTER_LATERAL_CLEARANCE_MM = 13.0
"""Greater-trochanter region starts this far lateral of the head's rim (12 mm in the anatomy, magnified)."""
TROCHANTER_CRANIAL_REACH_MM = (-35.0, 40.0)
"""Band along the vertical, relative to the head centre, in which the trochanter tip is sought."""
SHAFT_AXIS_LEVELS_MM = (70.0, 170.0)
"""Distances below the head centre whose cross-section centroids define the shaft axis (the diaphysis)."""
SHAFT_LEVEL_SPACING_MM = 57.4
"""The definition's 60 mm between the two shaft levels as it appears on a film: the mean over 39 hips of
training films (Pelvic-Ref-001/004, sd 4.2 mm; hip flexion foreshortens, depth magnifies)."""
SHAFT_END_CLEARANCE_MM = 5.0
"""The distal level stays this far above the femur's most distal pixel, so its cross-section is whole."""
WIDTH_SEARCH_MM = 20.0
"""Whole cross-sections within this distance of a cut one give the shaft's width there."""
_MIN_FEMUR_PIXELS = 100
_MIN_SECTION_PIXELS = 20


def _points_mm(mask: np.ndarray, spacing_xy: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.column_stack([xs, ys]).astype(np.float64) * spacing_xy


def greater_trochanter(femur_mm: np.ndarray, head_centre_mm: np.ndarray, radius_mm: float,
                       lateral: np.ndarray, cranial: np.ndarray) -> np.ndarray | None:
    """Most cranial femur point lateral of the head (mm coordinates), or None when there is none."""
    rel = femur_mm - head_centre_mm
    height = rel @ cranial
    region = ((rel @ lateral > radius_mm + TROCHANTER_LATERAL_CLEARANCE_MM)
              & (height > TROCHANTER_CRANIAL_REACH_MM[0]) & (height < TROCHANTER_CRANIAL_REACH_MM[1]))
    if not region.any():
        return None
    return extreme_points(femur_mm[region], cranial, np.ones(2)).mean(axis=0)


def at_side_edge(points_mm: np.ndarray, film_width_mm: float | None) -> np.ndarray:
    """Which points lie within :data:`EDGE_MARGIN_MM` of the film's left or right edge (none without a width)."""
    x = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)[:, 0]
    if film_width_mm is None:
        return np.zeros(len(x), dtype=bool)
    return (x < EDGE_MARGIN_MM) | (x > film_width_mm - EDGE_MARGIN_MM)


def shaft_axis(femur_mm: np.ndarray, head_centre_mm: np.ndarray, cranial: np.ndarray,
               film_width_mm: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(point, distal unit direction) of the line through the diaphysis' cross-section centroids.

    Sections the film's side edge cuts are left out: their centroid lies off the shaft's axis.
    """
    depth = (femur_mm - head_centre_mm) @ (-cranial) - SHAFT_AXIS_LEVELS_MM[0]
    # 2 mm thick sections every 4 mm, summed in one pass (a mask per level costs 25 passes over ~1e6 pixels)
    section = np.floor(depth / 4.0).astype(np.int64)
    inside = (depth >= 0) & (depth < SHAFT_AXIS_LEVELS_MM[1] - SHAFT_AXIS_LEVELS_MM[0]) & (depth - 4.0 * section < 2.0)
    section, points = section[inside], femur_mm[inside]
    if len(section) == 0:
        return None
    counts = np.bincount(section)
    sums = np.column_stack([np.bincount(section, weights=points[:, axis]) for axis in (0, 1)])
    cut = np.bincount(section, weights=at_side_edge(points, film_width_mm), minlength=len(counts)) > 0
    filled = (counts >= _MIN_SECTION_PIXELS) & ~cut
    centroids = sums[filled] / counts[filled, None]
    if len(centroids) < 3:
        return None
    mean = centroids.mean(axis=0)
    direction = np.linalg.svd(centroids - mean)[2][0]
    return mean, (direction if direction @ cranial < 0 else -direction)


def _section_ends(section: np.ndarray, origin: np.ndarray, across: np.ndarray, film_width_mm: float | None
                  ) -> tuple[float, float, bool, bool]:
    """(low, high) offsets across the shaft of a cross-section, and whether the film's edge cuts each end."""
    offsets = (section - origin) @ across
    low, high = int(np.argmin(offsets)), int(np.argmax(offsets))
    low_cut, high_cut = at_side_edge(section[[low, high]], film_width_mm)
    return float(offsets[low]), float(offsets[high]), bool(low_cut), bool(high_cut)


def whole_section_width(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], level: float,
                        film_width_mm: float | None) -> float | None:
    """Median width of the cross-sections within :data:`WIDTH_SEARCH_MM` of ``level`` that the film's edge does not cut."""
    origin, direction = axis
    across = np.array([-direction[1], direction[0]])
    along = (femur_mm - origin) @ direction
    near = np.abs(along - level) <= WIDTH_SEARCH_MM + 1.0
    points, along = femur_mm[near], along[near]
    widths = []
    for other in np.arange(level - WIDTH_SEARCH_MM, level + WIDTH_SEARCH_MM + 0.1, 2.0):
        section = points[np.abs(along - other) <= 1.0]
        if len(section) < _MIN_SECTION_PIXELS:
            continue
        low, high, low_cut, high_cut = _section_ends(section, origin, across, film_width_mm)
        if not (low_cut or high_cut):
            widths.append(high - low)
    return float(np.median(widths)) if widths else None


def shaft_midpoint(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], point_mm: np.ndarray,
                   film_width_mm: float | None = None) -> np.ndarray | None:
    """``point_mm`` moved across the shaft to the middle of the femur's cross-section at its level.

    When the film's side edge cuts one cortex, the middle is the other cortex plus
    half the width of whole sections nearby (if there are any).
    """
    origin, direction = axis
    across = np.array([-direction[1], direction[0]])
    level = float((point_mm - origin) @ direction)
    section = femur_mm[np.abs((femur_mm - origin) @ direction - level) <= 1.0]
    if len(section) == 0:
        return None
    low, high, low_cut, high_cut = _section_ends(section, origin, across, film_width_mm)
    if low_cut != high_cut and (width := whole_section_width(femur_mm, axis, level, film_width_mm)) is not None:
        width = max(width, high - low)  # the visible part of a cut section is a lower bound of its width
        low, high = (high - width, high) if low_cut else (low, low + width)
    return origin + level * direction + 0.5 * (low + high) * across


def distal_shaft_level(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], proximal_mm: np.ndarray
                       ) -> np.ndarray:
    """A point on the shaft axis :data:`SHAFT_LEVEL_SPACING_MM` below ``proximal_mm``, or higher if the femur ends."""
    origin, direction = axis
    last = float(((femur_mm - origin) @ direction).max()) - SHAFT_END_CLEARANCE_MM
    level = min(float((proximal_mm - origin) @ direction) + SHAFT_LEVEL_SPACING_MM, last)
    return origin + level * direction


def snap_to_femoral_outline(landmarks: Mapping[str, Point | None], masks: Mapping[str, np.ndarray],
                            spacing_mm: tuple[float, float]) -> dict[str, Point | None]:
    """``landmarks`` with each hip's greater trochanter and shaft points moved onto its femur mask.

    Presence is never changed, and a point keeps its predicted position when
    the mask cannot place it (no femur, no head centre, shaft out of field).
    """
    out = dict(landmarks)
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]], dtype=np.float64)
    horizontal, cranial = pelvic_axes(landmarks, spacing_mm)
    for side in SIDES:
        femur, centre = masks.get(f"femur_{side}"), landmarks.get(f"femoral_head_centre_{side}")
        if femur is None or centre is None or np.count_nonzero(femur) < _MIN_FEMUR_PIXELS:
            continue
        femur_mm = _points_mm(femur, spacing_xy)
        film_width_mm = (femur.shape[1] - 1) * float(spacing_xy[0])
        centre_mm = np.asarray(centre, dtype=np.float64) * spacing_xy
        lateral = -horizontal if side == "right" else horizontal  # image x grows toward the patient's left
        moved: dict[str, np.ndarray | None] = {}
        if landmarks.get(f"greater_trochanter_{side}") is not None:
            radius = head_radius_mm(masks, side, spacing_mm)
            moved[f"greater_trochanter_{side}"] = greater_trochanter(femur_mm, centre_mm, radius, lateral, cranial)
        axis = shaft_axis(femur_mm, centre_mm, cranial, film_width_mm)
        proximal, distal = landmarks.get(f"femoral_shaft_proximal_{side}"), landmarks.get(f"femoral_shaft_distal_{side}")
        if axis is not None and proximal is not None:
            proximal_mm = np.asarray(proximal, dtype=np.float64) * spacing_xy
            moved[f"femoral_shaft_proximal_{side}"] = shaft_midpoint(femur_mm, axis, proximal_mm, film_width_mm)
            if distal is not None:
                level = distal_shaft_level(femur_mm, axis, proximal_mm)
                moved[f"femoral_shaft_distal_{side}"] = shaft_midpoint(femur_mm, axis, level, film_width_mm)
        elif axis is not None and distal is not None:
            distal_mm = np.asarray(distal, dtype=np.float64) * spacing_xy
            moved[f"femoral_shaft_distal_{side}"] = shaft_midpoint(femur_mm, axis, distal_mm, film_width_mm)
        for name, point_mm in moved.items():
            if point_mm is not None:
                out[name] = (float(point_mm[0] / spacing_xy[0]), float(point_mm[1] / spacing_xy[1]))
    return out
