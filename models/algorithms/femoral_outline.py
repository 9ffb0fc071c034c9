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
  cross-section perpendicular to the shaft axis; the proximal one
  :data:`PROXIMAL_LEVEL_MM` below the lesser trochanter's foot on the axis (the
  network's own level when there is no trochanter), the distal one
  :data:`SHAFT_LEVEL_SPACING_MM` further down (or at the lowest level whose
  midpoint is in the exposed field, when the film or a collimator shutter ends
  it sooner), in the film's calibrated millimetres as the spec defines them.
  The network's own distal level erred by 8 mm on held-out anatomy: a point
  on a featureless shaft has nothing to anchor it but the distance from above. Where the film's edge
  cuts the shaft, the cut cortex is not the cortex: the shaft axis leaves
  such sections out, and a midpoint there is the visible cortex plus half the
  width of whole sections nearby (or of the other femur's shaft).

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache, partial

import numpy as np

from models.algorithms.exposed_field import EDGE_MARGIN_MM, ExposedField
from models.algorithms.hip_outline import head_radius_mm
from models.algorithms.pelvic_extremes import extreme_points, pelvic_axes
from models.algorithms.vocabulary import SIDES

Point = tuple[float, float]
Box = tuple[float, float, float, float]
"""(x of the first and last column, y of the first and last row) of a film, in mm."""

TROCHANTER_LATERAL_CLEARANCE_MM = 13.0
"""Greater-trochanter region starts this far lateral of the head's rim (12 mm in the anatomy, magnified)."""
TROCHANTER_CRANIAL_REACH_MM = (-35.0, 40.0)
"""Band along the vertical, relative to the head centre, in which the trochanter tip is sought."""
SHAFT_AXIS_LEVELS_MM = (70.0, 170.0)
"""Distances below the head centre whose cross-section centroids define the shaft axis (the diaphysis)."""
PROXIMAL_LEVEL_MM = 20.0
"""The proximal shaft level: this far below the lesser trochanter's foot on the shaft axis (film mm)."""
SHAFT_LEVEL_SPACING_MM = 60.0
"""The distal level lies this much further down (the spec's 80 mm below the lesser trochanter)."""
MIN_DISTAL_DROP_MM = 20.0
"""The shortest distance between the shaft levels when the field ends sooner (the generator's rule)."""
DISTAL_FIELD_MARGIN_MM = 3.5
"""A distal level is visible when its midpoint is this far inside the field (the generator: 1% of the film's
width, 3.6 mm at every size)."""
SHAFT_END_CLEARANCE_MM = 5.0
"""The distal level stays this far above the femur's most distal pixel, so its cross-section is whole."""
DIAPHYSIS_HALF_LENGTH_MM = 0.5 * (SHAFT_AXIS_LEVELS_MM[1] - SHAFT_AXIS_LEVELS_MM[0])
"""Around the shaft axis' origin (its centroid), the sections whose median width stands for the whole shaft."""
WIDTH_SEARCH_MM = 20.0
"""Whole cross-sections within this distance of a cut one give the shaft's width there."""
CUT = np.full(2, np.nan)
"""Returned for a point the film's edge cuts off: out of field, so the landmark is null."""
_MIN_FEMUR_PIXELS = 100
_MIN_SECTION_PIXELS = 20


def _points_mm(mask: np.ndarray, spacing_xy: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.column_stack([xs, ys]).astype(np.float64) * spacing_xy


def greater_trochanter(femur_mm: np.ndarray, head_centre_mm: np.ndarray, radius_mm: float,
                       lateral: np.ndarray, cranial: np.ndarray,
                       film_mm: Box | None = None) -> np.ndarray | None:
    """Most cranial femur point lateral of the head (mm coordinates), or None when there is none.

    :data:`CUT` when any of the pixels that make that extreme lies at the
    film's edge (``film_mm``): the trochanter may rise further beyond it.
    """
    rel = femur_mm - head_centre_mm
    height = rel @ cranial
    region = ((rel @ lateral > radius_mm + TROCHANTER_LATERAL_CLEARANCE_MM)
              & (height > TROCHANTER_CRANIAL_REACH_MM[0]) & (height < TROCHANTER_CRANIAL_REACH_MM[1]))
    if not region.any():
        return None
    top = extreme_points(femur_mm[region], cranial, np.ones(2))
    return CUT if at_film_edge(top, film_mm).any() else top.mean(axis=0)


def at_film_edge(points_mm: np.ndarray, film_mm: Box | None = None) -> np.ndarray:
    """Which points lie within :data:`EDGE_MARGIN_MM` of the film's edge (none without ``film_mm``)."""
    points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 2)
    if film_mm is None:
        return np.zeros(len(points), dtype=bool)
    x0, x1, y0, y1 = film_mm
    x, y = points[:, 0], points[:, 1]
    return ((x < x0 + EDGE_MARGIN_MM) | (x > x1 - EDGE_MARGIN_MM)
            | (y < y0 + EDGE_MARGIN_MM) | (y > y1 - EDGE_MARGIN_MM))


def shaft_axis(femur_mm: np.ndarray, head_centre_mm: np.ndarray, cranial: np.ndarray,
               film_mm: Box | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(point, distal unit direction) of the line through the diaphysis' cross-section centroids.

    Sections the film's edge (``film_mm``) cuts are left out (their centroid lies off the shaft's axis) unless
    fewer than three whole ones remain.
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
    cut = np.bincount(section, weights=at_film_edge(points, film_mm), minlength=len(counts)) > 0
    filled = (counts >= _MIN_SECTION_PIXELS) & ~cut
    if np.count_nonzero(filled) < 3:  # a shaft along the film's edge: a leaning axis beats none
        filled = counts >= _MIN_SECTION_PIXELS
    centroids = sums[filled] / counts[filled, None]
    if len(centroids) < 3:
        return None
    mean = centroids.mean(axis=0)
    direction = np.linalg.svd(centroids - mean)[2][0]
    return mean, (direction if direction @ cranial < 0 else -direction)


def _section_ends(section: np.ndarray, origin: np.ndarray, across: np.ndarray, film_mm: Box | None
                  ) -> tuple[float, float, bool, bool]:
    """(low, high) offsets across the shaft of a cross-section, and whether an edge cuts each end."""
    offsets = (section - origin) @ across
    low, high = int(np.argmin(offsets)), int(np.argmax(offsets))
    low_cut, high_cut = at_film_edge(section[[low, high]], film_mm)
    return float(offsets[low]), float(offsets[high]), bool(low_cut), bool(high_cut)


def whole_section_width(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], level: float,
                        film_mm: Box | None, search_mm: float = WIDTH_SEARCH_MM) -> float | None:
    """Median width of the cross-sections within ``search_mm`` of ``level`` that no edge cuts."""
    origin, direction = axis
    across = np.array([-direction[1], direction[0]])
    along = (femur_mm - origin) @ direction
    near = np.abs(along - level) <= search_mm + 1.0
    points, along = femur_mm[near], along[near]
    widths = []
    for other in np.arange(level - search_mm, level + search_mm + 0.1, 2.0):
        section = points[np.abs(along - other) <= 1.0]
        if len(section) < _MIN_SECTION_PIXELS:
            continue
        low, high, low_cut, high_cut = _section_ends(section, origin, across, film_mm)
        if not (low_cut or high_cut):
            widths.append(high - low)
    return float(np.median(widths)) if widths else None


def shaft_midpoint(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], point_mm: np.ndarray,
                   film_mm: Box | None = None, other_width_mm: Callable[[], float | None] | None = None
                   ) -> np.ndarray | None:
    """``point_mm`` moved across the shaft to the middle of the femur's cross-section at its level.

    When the film's edge cuts one cortex, the middle is the other cortex plus
    half the width of whole sections nearby, or, with none (a shaft running along
    the edge), of the other femur's shaft (``other_width_mm``, called only then). The middle may
    then lie beyond the edge: out of field.
    """
    origin, direction = axis
    across = np.array([-direction[1], direction[0]])
    level = float((point_mm - origin) @ direction)
    section = femur_mm[np.abs((femur_mm - origin) @ direction - level) <= 1.0]
    if len(section) == 0:
        return None
    low, high, low_cut, high_cut = _section_ends(section, origin, across, film_mm)
    width = whole_section_width(femur_mm, axis, level, film_mm) if low_cut != high_cut else None
    if low_cut != high_cut and (width := width or (other_width_mm() if other_width_mm else None)) is not None:
        width = max(width, high - low)  # the visible part of a cut section is a lower bound of its width
        low, high = (high - width, high) if low_cut else (low, low + width)
    return origin + level * direction + 0.5 * (low + high) * across


def proximal_level(axis: tuple[np.ndarray, np.ndarray], trochanter_mm: np.ndarray) -> np.ndarray:
    """The point on the shaft axis :data:`PROXIMAL_LEVEL_MM` below the lesser trochanter's foot on it.

    The spec measures both levels from the trochanter on the radiograph; a
    network's own level on a featureless shaft has nothing to anchor it.
    """
    origin, direction = axis
    return origin + (float((trochanter_mm - origin) @ direction) + PROXIMAL_LEVEL_MM) * direction


def distal_shaft_level(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], proximal_mm: np.ndarray
                       ) -> np.ndarray:
    """A point on the shaft axis :data:`SHAFT_LEVEL_SPACING_MM` below ``proximal_mm``, or higher if the femur ends."""
    origin, direction = axis
    last = float(((femur_mm - origin) @ direction).max()) - SHAFT_END_CLEARANCE_MM
    level = min(float((proximal_mm - origin) @ direction) + SHAFT_LEVEL_SPACING_MM, last)
    return origin + level * direction


def _box_mm(field: ExposedField, spacing_xy: np.ndarray) -> Box:
    """``field`` (here the whole film) as a :data:`Box` in mm."""
    sx, sy = float(spacing_xy[0]), float(spacing_xy[1])
    return field.col0 * sx, (field.col1 - 1) * sx, field.row0 * sy, (field.row1 - 1) * sy


def lowest_visible_midpoint(femur_mm: np.ndarray, axis: tuple[np.ndarray, np.ndarray], proximal_mm: np.ndarray,
                            lowest_mm: np.ndarray, field: ExposedField, spacing_xy: np.ndarray,
                            film_mm: Box | None = None, other_width_mm: Callable[[], float | None] | None = None
                            ) -> np.ndarray | None:
    """The distal shaft point: the lowest level from ``lowest_mm`` up whose midpoint is in the field.

    A shaft leaving the field sideways or under a shutter has its middle out of
    field lower down; the definition then takes the most distal visible level,
    as the generator does, but never less than :data:`MIN_DISTAL_DROP_MM` below
    the proximal level. None when no such level has its middle in the field.
    """
    direction = axis[1]
    drop = float((lowest_mm - proximal_mm) @ direction)
    while drop >= MIN_DISTAL_DROP_MM:
        point = shaft_midpoint(femur_mm, axis, proximal_mm + drop * direction, film_mm, other_width_mm)
        if point is not None:
            xy = (float(point[0] / spacing_xy[0]), float(point[1] / spacing_xy[1]))
            if field.contains(xy) and not field.near_edge(xy, spacing_xy, DISTAL_FIELD_MARGIN_MM):
                return point
        drop -= 2.0
    return None


def snap_to_femoral_outline(landmarks: Mapping[str, Point | None], masks: Mapping[str, np.ndarray],
                            spacing_mm: tuple[float, float], field: ExposedField | None = None,
                            cut_field: ExposedField | None = None) -> dict[str, Point | None]:
    """``landmarks`` with each hip's greater trochanter and shaft points moved onto its femur mask.

    A point keeps its predicted position when the mask cannot place it (no
    femur, no head centre, shaft out of field). Presence changes only where
    an edge cuts a point off: a trochanter top at the film's edge
    (:data:`CUT`), and a distal shaft point with no visible level at least
    :data:`MIN_DISTAL_DROP_MM` below the proximal one (:func:`lowest_visible_midpoint`).
    ``field`` is the exposed field (default: the whole film), whose edge cuts
    cross-sections as the film's does; ``masks`` are the network's, not clipped to it.
    ``cut_field``: where sections are cut, when that is not ``field`` (the
    generator's true masks go on under a shutter: only the film's edge cuts them).
    """
    out = dict(landmarks)
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]], dtype=np.float64)
    horizontal, cranial = pelvic_axes(landmarks, spacing_mm)
    shafts: dict[str, tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]] = {}
    shape = next((m.shape for side in SIDES if (m := masks.get(f"femur_{side}")) is not None), None)
    if shape is None:
        return out
    film = ExposedField.whole(shape)
    exposed = field or film
    # Sections are cut where the exposed field ends, at the film's edge or a shutter's: what a network draws
    # under a shutter is a guess. Segmentation 0.3.0 carries the femur on under shutters (cutting only at the
    # film's edge was better for it in session 10; with the session-14 fine landmarks the two are within noise);
    # a 384 px candidate stopped at the shutter, and a shaft running along one kept its middle inside the field:
    # 17 invented points on the 512 px held-out set with the film's edge, 7 with the shutter's (session 14).
    film_mm = _box_mm(cut_field or exposed, spacing_xy)
    for side in SIDES:
        femur, centre = masks.get(f"femur_{side}"), landmarks.get(f"femoral_head_centre_{side}")
        if femur is None or centre is None or np.count_nonzero(femur) < _MIN_FEMUR_PIXELS:
            continue
        femur_mm = _points_mm(femur, spacing_xy)
        centre_mm = np.asarray(centre, dtype=np.float64) * spacing_xy
        shafts[side] = (femur_mm, centre_mm, shaft_axis(femur_mm, centre_mm, cranial, film_mm))
    # the other femur's shaft width, measured only where the film's edge leaves a cut section no whole one nearby
    other_widths = {side: cache(partial(whole_section_width, femur_mm, axis, 0.0, film_mm, DIAPHYSIS_HALF_LENGTH_MM))
                    for side, (femur_mm, _, axis) in shafts.items() if axis is not None}
    for side, (femur_mm, centre_mm, axis) in shafts.items():
        other_width = other_widths.get("left" if side == "right" else "right")
        lateral = -horizontal if side == "right" else horizontal  # image x grows toward the patient's left
        moved: dict[str, np.ndarray | None] = {}
        if landmarks.get(f"greater_trochanter_{side}") is not None:
            radius = head_radius_mm(masks, side, spacing_mm)
            moved[f"greater_trochanter_{side}"] = greater_trochanter(femur_mm, centre_mm, radius, lateral, cranial,
                                                                     film_mm)
        proximal, distal = landmarks.get(f"femoral_shaft_proximal_{side}"), landmarks.get(f"femoral_shaft_distal_{side}")
        if axis is not None and proximal is not None:
            proximal_mm = np.asarray(proximal, dtype=np.float64) * spacing_xy
            if (trochanter := landmarks.get(f"lesser_trochanter_{side}")) is not None:
                proximal_mm = proximal_level(axis, np.asarray(trochanter, dtype=np.float64) * spacing_xy)
            moved[f"femoral_shaft_proximal_{side}"] = shaft_midpoint(femur_mm, axis, proximal_mm, film_mm, other_width)
            if distal is not None:
                lowest = distal_shaft_level(femur_mm, axis, proximal_mm)
                point = lowest_visible_midpoint(femur_mm, axis, proximal_mm, lowest, exposed, spacing_xy,
                                                film_mm, other_width)
                if point is None:  # the field ends too soon: out of field
                    out[f"femoral_shaft_distal_{side}"] = None
                else:
                    moved[f"femoral_shaft_distal_{side}"] = point
        elif axis is not None and distal is not None:
            distal_mm = np.asarray(distal, dtype=np.float64) * spacing_xy
            moved[f"femoral_shaft_distal_{side}"] = shaft_midpoint(femur_mm, axis, distal_mm, film_mm, other_width)
        for name, point_mm in moved.items():
            if point_mm is not None and np.isnan(point_mm).any():
                out[name] = None  # cut by the film's edge: out of field
            elif point_mm is not None:
                out[name] = (float(point_mm[0] / spacing_xy[0]), float(point_mm[1] / spacing_xy[1]))
    return out
