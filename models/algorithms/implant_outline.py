"""Stem tips and prosthetic head centres read off the implant mask, where the film shows them.

The spec defines `stem_tip` as the most distal point of the femoral stem, an
extreme of the implant's outline. The landmark network placed it 9-14 mm off
on held-out anatomy; the implant mask's caudal extreme is within about 1.5 mm.
A replaced hip's `femoral_head_centre` is the prosthetic head's centre; the
head sits concentric in the cup, whose dome is the longest circular arc of the
implant's outline (:func:`cup_dome`: 0.22 mm held out, against
0.88 mm for the fine landmark network). The cup's rim points, the ends of the
major axis of its opening ellipse, are the ends of that dome's diameter
perpendicular to the dome's direction (:func:`cup_rim_points`): a hemispherical
shell seen from any side shows a semicircular dome closed by the opening
ellipse, which touches the dome's circle at the ends of its major axis. A
head with no metal cup around it (a hemiarthroplasty, a radiolucent
all-polyethylene cup) has no dome holding a head: its cup rims are null
(:func:`head_without_cup`), whatever the landmark network placed.
When the mask runs into the exposed field's edge, the extreme found there is
the edge, not the tip: :func:`models.algorithms.exposed_field.null_out_of_field`
then calls the tip out of field (presence is not changed here).

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.algorithms.hip_outline import (
    HEAD_OUTLINE_INWARD_MM,
    HEAD_OUTLINE_OUTWARD_MM,
    outer_outline_mm,
    rim_circle,
)
from models.algorithms.pelvic_extremes import crop_around, extreme_points, pelvic_axes
from models.algorithms.vocabulary import SIDES

Point = tuple[float, float]

CUP_WINDOW_MM = 40.0
"""Half-size of the window around the predicted centre the cup is read in: a cup's outer radius is at most
about 33 mm, and the stem's long straight outline further down stays out of most of it."""
CUP_RADIUS_MM = (15.0, 40.0)
"""Outer cup radii a fitted circle must have to count as the cup's dome (a 30-80 mm shell)."""
CUP_MAX_SHIFT_MM = 10.0
"""The dome's centre must lie this close to the predicted centre, or the prediction stands."""
DOME_GAP_MM = 2.0
"""Outline points on the dome's circle belong to one arc across gaps up to this long (a ragged predicted edge)."""
DOME_ARC_DEG = (150.0, 260.0)
"""A cup's dome arc spans about 180 degrees (a little more where the opening ellipse hugs the circle near its
ends); outside this range the arc is not a dome (a cut-off or merged mask) and the predicted rim points stand."""
HEAD_RADIUS_MM = (8.0, 40.0)
"""Radii a round piece of metal at the hip may have: a total hip's head alone (14-18 mm), a hemiarthroplasty's
(the native head's: 19-25 mm on the three bundled anatomies), a cup's dome (up to about 33 mm)."""
HEAD_INSIDE_CUP_MM = 3.0
"""A total hip's head sits inside its cup, so where the cup's opening shows, the implant outline dips well inside
the dome's circle (7.1-13.9 mm on 61 sides of the generator's films, predicted masks); a head with no cup (a
hemiarthroplasty, or an all-polyethylene cup, which does not show) has an outline that never does (0.27-0.39 mm on
15 full-size hemiarthroplasty sides: pixel steps). Between the two, this separates a cup's dome from a lone head of the same size."""


@dataclass(frozen=True)
class CupDome:
    """The circle a cup's dome traces on the implant outline, in image mm, and the outline it was fitted to."""

    centre_mm: np.ndarray
    radius_mm: float
    outline_mm: np.ndarray  # the window's outer contour, in order
    origin_px: tuple[int, int]  # the window's top-left corner in the image


def stem_tip(implant: np.ndarray, caudal: np.ndarray, spacing_mm: tuple[float, float]) -> Point | None:
    """Mean of the implant pixels within 1 mm of its caudal extreme (pixels); None if the mask is empty."""
    ys, xs = np.nonzero(implant)
    if len(xs) == 0:
        return None
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    points = np.column_stack([xs, ys]).astype(np.float64)
    tip = extreme_points(points, caudal, spacing_xy)
    return float(tip[:, 0].mean()), float(tip[:, 1].mean())


def cup_dome(implant: np.ndarray, predicted: Point, spacing_mm: tuple[float, float],
             radius_mm: tuple[float, float] = CUP_RADIUS_MM) -> CupDome | None:
    """The cup's dome near ``predicted``: the longest circular arc of the implant outline of a cup's size
    (``radius_mm``), centred within :data:`CUP_MAX_SHIFT_MM` of ``predicted``; None if the mask has no plausible
    dome there."""
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    window, x0, y0 = crop_around(implant, predicted, CUP_WINDOW_MM / spacing_xy)
    outline = outer_outline_mm(window, spacing_mm)
    fitted = None if outline is None else rim_circle(outline, HEAD_OUTLINE_INWARD_MM, HEAD_OUTLINE_OUTWARD_MM)
    if outline is None or fitted is None or not radius_mm[0] <= fitted[1] <= radius_mm[1]:
        return None
    centre_px = fitted[0] / spacing_xy + (x0, y0)
    if np.linalg.norm((centre_px - predicted) * spacing_xy) > CUP_MAX_SHIFT_MM:
        return None
    return CupDome(fitted[0], fitted[1], outline, (x0, y0))


def _longest_run(on_circle: np.ndarray, max_gap: int) -> np.ndarray:
    """Indices of the longest run of True along a closed contour, bridging gaps of up to ``max_gap`` points."""
    hits = np.flatnonzero(on_circle)
    if len(hits) == 0:
        return hits
    to_next = np.diff(np.r_[hits, hits[0] + len(on_circle)])  # from each hit to the next, wrapping around
    run_ends = np.flatnonzero(to_next > max_gap)
    if len(run_ends) == 0:
        return hits  # the whole contour
    best = hits[:0]
    for k, previous_end in enumerate(run_ends):
        start, end = previous_end + 1, run_ends[(k + 1) % len(run_ends)]
        run = hits[(start + np.arange((end - start) % len(hits) + 1)) % len(hits)]
        if len(run) > len(best):
            best = run
    return best


def _arc(dome: CupDome, spacing_mm: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the dome's arc (the longest run of outline points on its circle) and their unit vectors."""
    outline = dome.outline_mm
    radial = np.linalg.norm(outline - dome.centre_mm, axis=1) - dome.radius_mm
    on_circle = (radial > -HEAD_OUTLINE_INWARD_MM) & (radial < HEAD_OUTLINE_OUTWARD_MM)
    run = _longest_run(on_circle, max(1, round(DOME_GAP_MM / min(spacing_mm))))
    unit = outline[run] - dome.centre_mm
    return run, unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)


def _span_deg(run: np.ndarray, unit: np.ndarray, outline_length: int) -> float:
    if len(run) == outline_length:
        return 360.0
    if len(run) < 3:
        return 0.0
    angles = np.unwrap(np.arctan2(unit[:, 1], unit[:, 0]))
    return float(np.degrees(abs(angles[-1] - angles[0])))


def arc_span_deg(dome: CupDome, spacing_mm: tuple[float, float]) -> float:
    """How many degrees of the dome's circle its arc covers (360 for a whole circle)."""
    return _span_deg(*_arc(dome, spacing_mm), len(dome.outline_mm))


def cup_rim_points(dome: CupDome, lateral_mm: np.ndarray, spacing_mm: tuple[float, float]) -> tuple[Point, Point] | None:
    """(lateral, medial) rim points (pixels): the ends of the dome's diameter perpendicular to its direction.

    The direction is the arc-length weighted mean of the dome arc's unit vectors from the centre (the contour's
    8-connected steps are 1 or 1.4 pixels long; unweighted, the mean leans toward the axes: 1.0 deg of
    inclination error on the true masks against 0.2 deg weighted). None when the arc does not span a dome's
    :data:`DOME_ARC_DEG`.
    """
    outline = dome.outline_mm
    run, unit = _arc(dome, spacing_mm)
    if not DOME_ARC_DEG[0] <= _span_deg(run, unit, len(outline)) <= DOME_ARC_DEG[1]:
        return None
    step = np.linalg.norm(np.diff(outline[np.r_[run, run[-1] + 1] % len(outline)], axis=0), axis=1)
    length = 0.5 * (step + np.r_[step[0], step[:-1]])  # each point's share of the arc
    direction = (unit * length[:, None]).sum(axis=0)
    direction /= np.linalg.norm(direction)
    across = np.array([-direction[1], direction[0]])
    if across @ lateral_mm < 0:
        across = -across
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    lateral, medial = ((dome.centre_mm + sign * dome.radius_mm * across) / spacing_xy + dome.origin_px for sign in (1, -1))
    return (float(lateral[0]), float(lateral[1])), (float(medial[0]), float(medial[1]))


def holds_a_head(dome: CupDome) -> bool:
    """Whether the implant outline dips :data:`HEAD_INSIDE_CUP_MM` inside the dome's circle: a cup with its head."""
    radial = np.linalg.norm(dome.outline_mm - dome.centre_mm, axis=1) - dome.radius_mm
    return float(radial.min()) < -HEAD_INSIDE_CUP_MM


def head_without_cup(implant: np.ndarray, predicted: Point, spacing_mm: tuple[float, float]) -> bool:
    """Whether the implant near ``predicted`` is a prosthetic head with no metal cup around it: its outline's
    longest circular arc is of a head's size, covers at least a half circle (:data:`DOME_ARC_DEG`), and
    nothing of the outline lies inside that circle.

    The segmentation, trained on total hips only, tends to paint a crescent of "cup" into the acetabulum beside a
    lone head; the crescent lies outside the head's circle, so it does not make a cup here.
    """
    head = cup_dome(implant, predicted, spacing_mm, HEAD_RADIUS_MM)
    return head is not None and arc_span_deg(head, spacing_mm) >= DOME_ARC_DEG[0] and not holds_a_head(head)


def snap_to_implant_outline(landmarks: Mapping[str, Point | None], masks: Mapping[str, np.ndarray],
                            spacing_mm: tuple[float, float]) -> dict[str, Point | None]:
    """``landmarks`` with each present stem tip moved to its implant mask's distal extreme, each replaced
    hip's head centre to its cup's (or lone head's) centre and its cup rim points to the dome's diameter; rim
    points are nulled where the implant is a head with no cup (:func:`head_without_cup`), and otherwise never
    added or removed."""
    out = dict(landmarks)
    horizontal, cranial = pelvic_axes(landmarks, spacing_mm)
    for side in SIDES:
        implant = masks.get(f"implant_{side}")
        if implant is None or not np.any(implant):
            continue
        name = f"stem_tip_{side}"
        if out.get(name) is not None:
            out[name] = stem_tip(implant, -cranial, spacing_mm) or out[name]
        name = f"femoral_head_centre_{side}"
        if (predicted := out.get(name)) is None:
            continue
        rim = (f"cup_rim_lateral_{side}", f"cup_rim_medial_{side}")
        rims_present = out.get(rim[0]) is not None and out.get(rim[1]) is not None
        dome = cup_dome(implant, predicted, spacing_mm)
        points = None
        if dome is not None:
            centre = dome.centre_mm / np.array([spacing_mm[1], spacing_mm[0]]) + dome.origin_px
            out[name] = (float(centre[0]), float(centre[1]))  # a cup's centre, or a lone head's
            if rims_present and holds_a_head(dome):
                points = cup_rim_points(dome, -horizontal if side == "right" else horizontal, spacing_mm)
        if points is not None:
            out[rim[0]], out[rim[1]] = points
        elif rims_present and head_without_cup(implant, predicted, spacing_mm):
            out[rim[0]] = out[rim[1]] = None  # no cup shows: its rim cannot be read
    return out
