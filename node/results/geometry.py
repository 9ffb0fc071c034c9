"""Construction geometry of the spec's measurements, from landmarks (pure numpy).

The SR draws each measurement as the lines it was measured on and the overlay
burns the same lines in, so both come from here. Points are spec pixel
coordinates (x, y), origin at the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.algorithms import geometry as geo

Point = tuple[float, float]
Landmarks = Mapping[str, Point | None]


def _p(lm: Landmarks, name: str) -> np.ndarray | None:
    value = lm.get(name)
    return None if value is None else np.asarray(value, dtype=float)


def _pt(v: np.ndarray) -> Point:
    return (float(v[0]), float(v[1]))


def _foot(p: np.ndarray, a: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Projection of ``p`` onto the line through ``a`` along ``direction``."""
    d = direction / np.linalg.norm(direction)
    return a + d * float(np.dot(p - a, d))


def reference_line(lm: Landmarks) -> tuple[np.ndarray, np.ndarray] | None:
    """The pelvic reference line in pixels: both ischial tuberosities (right, left)."""
    r, l_ = _p(lm, "ischial_tuberosity_right"), _p(lm, "ischial_tuberosity_left")
    if r is None or l_ is None or np.allclose(r, l_):
        return None
    return r, l_


def shaft_axis(lm: Landmarks, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The femoral shaft axis of ``side`` in pixels: (proximal, distal) shaft points."""
    a, b = _p(lm, f"femoral_shaft_proximal_{side}"), _p(lm, f"femoral_shaft_distal_{side}")
    if a is None or b is None or np.allclose(a, b):
        return None
    return a, b


def measurement_polyline(
    name: str, lm: Landmarks, spacing_mm: Sequence[float] | None = None
) -> list[Point] | None:
    """The line(s) a measurement is read on, in pixels, or None when its landmarks are missing.

    Lengths give two points (from the landmark to the foot of the
    perpendicular); angles give three (arm, vertex, arm); the leg length
    discrepancy gives both lesser trochanters with their feet on the
    reference line (four points). Perpendiculars are taken in millimetres
    (``spacing_mm`` = (row, col), the spec's frame via
    :func:`models.algorithms.geometry.pelvic_frame`), so they are right
    angles on the patient even with anisotropic pixels.
    """
    spacing = (1.0, 1.0) if spacing_mm is None else (float(spacing_mm[0]), float(spacing_mm[1]))

    def mm(key: str) -> np.ndarray | None:
        p = _p(lm, key)
        return None if p is None else geo.to_mm(p, spacing)

    def px(v: np.ndarray) -> Point:
        return (float(v[0]) / spacing[1], float(v[1]) / spacing[0])

    side = name.rsplit("_", 1)[-1] if name.endswith(("_right", "_left")) else None
    frame = None
    line = reference_line(lm)
    if line is not None:
        frame = geo.pelvic_frame(line[0], line[1], spacing)
    head = mm(f"femoral_head_centre_{side}") if side else None
    if name == "leg_length_discrepancy":
        r, l_ = mm("lesser_trochanter_right"), mm("lesser_trochanter_left")
        if frame is None or r is None or l_ is None:
            return None
        origin, horizontal, _ = frame
        return [px(_foot(r, origin, horizontal)), px(r), px(l_), px(_foot(l_, origin, horizontal))]
    if side is None or (head is None and not name.startswith("cup_inclination_")):
        return None
    if name.startswith("femoral_offset_"):
        a, b = mm(f"femoral_shaft_proximal_{side}"), mm(f"femoral_shaft_distal_{side}")
        if a is None or b is None or np.allclose(a, b):
            return None
        return [px(head), px(_foot(head, a, b - a))]
    if name.startswith("hip_centre_height_"):
        if frame is None:
            return None
        return [px(head), px(_foot(head, frame[0], frame[1]))]
    if name.startswith("hip_centre_lateral_"):
        symphysis = mm("pubic_symphysis")
        if frame is None or symphysis is None:
            return None
        return [px(head), px(_foot(head, symphysis, frame[2]))]
    if name.startswith("lateral_centre_edge_angle_"):
        edge = mm(f"acetabular_lateral_edge_{side}")
        if frame is None or edge is None:
            return None
        arm = float(np.linalg.norm(edge - head))
        return [px(head + frame[2] * arm), px(head), px(edge)]
    if name.startswith("cup_inclination_"):
        a, b = _p(lm, f"cup_rim_lateral_{side}"), _p(lm, f"cup_rim_medial_{side}")
        if a is None or b is None:
            return None
        return [_pt(a), _pt(b)]
    return None


def clip_line(a: np.ndarray, b: np.ndarray, width: int, height: int) -> tuple[Point, Point] | None:
    """The infinite line through ``a`` and ``b`` clipped to the image rectangle."""
    d = b - a
    if np.allclose(d, 0):
        return None
    ts: list[float] = []
    for axis, limit in ((0, width - 1.0), (1, height - 1.0)):
        if abs(d[axis]) > 1e-12:
            for bound in (0.0, limit):
                t = (bound - a[axis]) / d[axis]
                q = a + t * d
                other = 1 - axis
                other_limit = height - 1.0 if other == 1 else width - 1.0
                if -1e-6 <= q[other] <= other_limit + 1e-6:
                    ts.append(float(t))
    if len(ts) < 2:
        return None
    return _pt(a + min(ts) * d), _pt(a + max(ts) * d)
