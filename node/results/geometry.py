"""Construction geometry of the spec's measurements, from landmarks (pure numpy).

The SR draws each measurement as the lines it was measured on and the overlay
burns the same lines in, so both come from here. Points are spec pixel
coordinates (x, y), origin at the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Point = tuple[float, float]
Landmarks = Mapping[str, Point | None]


def _p(lm: Landmarks, name: str) -> np.ndarray | None:
    value = lm.get(name)
    return None if value is None else np.asarray(value, dtype=float)


def _pt(v: np.ndarray) -> Point:
    return (float(v[0]), float(v[1]))


def foot_of_perpendicular(p: np.ndarray, a: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Projection of ``p`` onto the line through ``a`` along ``direction``."""
    d = direction / np.linalg.norm(direction)
    return a + d * float(np.dot(p - a, d))


def reference_line(lm: Landmarks) -> tuple[np.ndarray, np.ndarray] | None:
    """The pelvic reference line: both ischial tuberosities (right, left)."""
    r, l_ = _p(lm, "ischial_tuberosity_right"), _p(lm, "ischial_tuberosity_left")
    if r is None or l_ is None or np.allclose(r, l_):
        return None
    return r, l_


def cranial_unit(lm: Landmarks) -> np.ndarray | None:
    """Unit vector perpendicular to the reference line, pointing cranially (up the image)."""
    line = reference_line(lm)
    if line is None:
        return None
    d = line[1] - line[0]
    n = np.array([d[1], -d[0]]) / np.linalg.norm(d)
    return n if n[1] < 0 else -n  # image y grows caudally on an AP view


def shaft_axis(lm: Landmarks, side: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The femoral shaft axis of ``side``: (proximal, distal) shaft points."""
    a, b = _p(lm, f"femoral_shaft_proximal_{side}"), _p(lm, f"femoral_shaft_distal_{side}")
    if a is None or b is None or np.allclose(a, b):
        return None
    return a, b


def measurement_polyline(name: str, lm: Landmarks) -> list[Point] | None:
    """The line(s) a measurement is read on, or None when its landmarks are missing.

    Lengths give two points (from the landmark to the foot of the
    perpendicular); angles give three (arm, vertex, arm); the leg length
    discrepancy gives both lesser trochanters with their feet on the
    reference line (four points).
    """
    side = name.rsplit("_", 1)[-1] if name.endswith(("_right", "_left")) else None
    head = _p(lm, f"femoral_head_centre_{side}") if side else None
    if name == "leg_length_discrepancy":
        line, up = reference_line(lm), cranial_unit(lm)
        r, l_ = _p(lm, "lesser_trochanter_right"), _p(lm, "lesser_trochanter_left")
        if line is None or up is None or r is None or l_ is None:
            return None
        d = line[1] - line[0]
        return [
            _pt(foot_of_perpendicular(r, line[0], d)),
            _pt(r),
            _pt(l_),
            _pt(foot_of_perpendicular(l_, line[0], d)),
        ]
    if side is None:
        return None
    if name.startswith("femoral_offset_"):
        axis = shaft_axis(lm, side)
        if head is None or axis is None:
            return None
        return [_pt(head), _pt(foot_of_perpendicular(head, axis[0], axis[1] - axis[0]))]
    if name.startswith("hip_centre_height_"):
        line = reference_line(lm)
        if head is None or line is None:
            return None
        return [_pt(head), _pt(foot_of_perpendicular(head, line[0], line[1] - line[0]))]
    if name.startswith("hip_centre_lateral_"):
        sym, up = _p(lm, "pubic_symphysis"), cranial_unit(lm)
        if head is None or sym is None or up is None:
            return None
        return [_pt(head), _pt(foot_of_perpendicular(head, sym, up))]
    if name.startswith("lateral_centre_edge_angle_"):
        edge, up = _p(lm, f"acetabular_lateral_edge_{side}"), cranial_unit(lm)
        if head is None or edge is None or up is None:
            return None
        arm = float(np.linalg.norm(edge - head))
        return [_pt(head + up * arm), _pt(head), _pt(edge)]
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
