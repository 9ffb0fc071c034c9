"""Stem tips and prosthetic head centres read off the implant mask, where the film shows them.

The spec defines `stem_tip` as the most distal point of the femoral stem, an
extreme of the implant's outline. The landmark network placed it 9-14 mm off
on held-out anatomy; the implant mask's caudal extreme is within about 1.5 mm.
A replaced hip's `femoral_head_centre` is the prosthetic head's centre; the
head sits concentric in the cup, whose dome is the longest circular arc of the
implant's outline (:func:`prosthetic_head_centre`: 0.22 mm held out, against
0.88 mm for the fine landmark network).
When the mask runs into the exposed field's edge, the extreme found there is
the edge, not the tip: :func:`models.algorithms.exposed_field.null_out_of_field`
then calls the tip out of field (presence is not changed here).

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping

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


def stem_tip(implant: np.ndarray, caudal: np.ndarray, spacing_mm: tuple[float, float]) -> Point | None:
    """Mean of the implant pixels within 1 mm of its caudal extreme (pixels); None if the mask is empty."""
    ys, xs = np.nonzero(implant)
    if len(xs) == 0:
        return None
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    points = np.column_stack([xs, ys]).astype(np.float64)
    tip = extreme_points(points, caudal, spacing_xy)
    return float(tip[:, 0].mean()), float(tip[:, 1].mean())


def prosthetic_head_centre(implant: np.ndarray, predicted: Point, spacing_mm: tuple[float, float]) -> Point | None:
    """Centre (pixels) of the circle the cup's dome traces on the implant outline near ``predicted``; None if
    the mask has no plausible dome there (then the prediction stands)."""
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    window, x0, y0 = crop_around(implant, predicted, CUP_WINDOW_MM / spacing_xy)
    outline = outer_outline_mm(window, spacing_mm)
    fitted = None if outline is None else rim_circle(outline, HEAD_OUTLINE_INWARD_MM, HEAD_OUTLINE_OUTWARD_MM)
    if fitted is None or not CUP_RADIUS_MM[0] <= fitted[1] <= CUP_RADIUS_MM[1]:
        return None
    centre = fitted[0] / spacing_xy + (x0, y0)
    if np.linalg.norm((centre - predicted) * spacing_xy) > CUP_MAX_SHIFT_MM:
        return None
    return float(centre[0]), float(centre[1])


def snap_to_implant_outline(landmarks: Mapping[str, Point | None], masks: Mapping[str, np.ndarray],
                            spacing_mm: tuple[float, float]) -> dict[str, Point | None]:
    """``landmarks`` with each present stem tip moved to its implant mask's distal extreme and each replaced
    hip's head centre to its cup's centre (presence is never changed)."""
    out = dict(landmarks)
    _, cranial = pelvic_axes(landmarks, spacing_mm)
    for side in SIDES:
        implant = masks.get(f"implant_{side}")
        if implant is None or not np.any(implant):
            continue
        name = f"stem_tip_{side}"
        if out.get(name) is not None:
            out[name] = stem_tip(implant, -cranial, spacing_mm) or out[name]
        name = f"femoral_head_centre_{side}"
        if (predicted := out.get(name)) is not None:
            out[name] = prosthetic_head_centre(implant, predicted, spacing_mm) or predicted
    return out
