"""Stem tips read off the implant mask: the stem's most distal point, where the film shows it.

The spec defines `stem_tip` as the most distal point of the femoral stem, an
extreme of the implant's outline. The landmark network placed it 9-14 mm off
on held-out anatomy; the implant mask's caudal extreme is within about 1.5 mm.
When the mask runs into the exposed field's edge, the extreme found there is
the edge, not the tip: :func:`models.algorithms.exposed_field.null_out_of_field`
then calls the tip out of field (presence is not changed here).

Pure geometry on arrays: no I/O, no model.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.algorithms.pelvic_extremes import extreme_points, pelvic_axes
from models.algorithms.vocabulary import SIDES

Point = tuple[float, float]


def stem_tip(implant: np.ndarray, caudal: np.ndarray, spacing_mm: tuple[float, float]) -> Point | None:
    """Mean of the implant pixels within 1 mm of its caudal extreme (pixels); None if the mask is empty."""
    ys, xs = np.nonzero(implant)
    if len(xs) == 0:
        return None
    spacing_xy = np.array([spacing_mm[1], spacing_mm[0]])
    points = np.column_stack([xs, ys]).astype(np.float64)
    tip = extreme_points(points, caudal, spacing_xy)
    return float(tip[:, 0].mean()), float(tip[:, 1].mean())


def snap_to_implant_outline(landmarks: Mapping[str, Point | None], masks: Mapping[str, np.ndarray],
                            spacing_mm: tuple[float, float]) -> dict[str, Point | None]:
    """``landmarks`` with each present stem tip moved to its implant mask's distal extreme."""
    out = dict(landmarks)
    _, cranial = pelvic_axes(landmarks, spacing_mm)
    for side in SIDES:
        name, implant = f"stem_tip_{side}", masks.get(f"implant_{side}")
        if out.get(name) is not None and implant is not None:
            out[name] = stem_tip(implant, -cranial, spacing_mm) or out[name]
    return out
