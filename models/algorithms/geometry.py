"""Geometric definitions of the spec, each written once (pure numpy).

The generator's ground truth and the analysis models' predictions both go
through these functions, so a definition can never differ between them.
Points are image pixels ``(x, y)`` = (column, row) unless the name says mm;
``spacing_mm`` is ``(row_mm, col_mm)`` as in DICOM.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Point = Sequence[float]


def to_mm(point: Point, spacing_mm: Sequence[float]) -> np.ndarray:
    """Pixel ``(x, y)`` to millimetres ``(x_mm, y_mm)`` (column spacing for x, row spacing for y)."""
    return np.array([float(point[0]) * float(spacing_mm[1]), float(point[1]) * float(spacing_mm[0])])


def pelvic_frame(
    tuberosity_right: Point, tuberosity_left: Point, spacing_mm: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spec's pelvic reference frame in mm: ``(origin, horizontal, vertical)``.

    ``horizontal`` is the unit vector along the line through the two
    ``ischial_tuberosity`` points; ``vertical`` is perpendicular to it and points
    cranially (toward smaller image rows when the image is upright).
    """
    a = to_mm(tuberosity_right, spacing_mm)
    b = to_mm(tuberosity_left, spacing_mm)
    horizontal = b - a
    norm = float(np.hypot(*horizontal))
    if norm < 1e-6:
        raise ValueError("ischial tuberosities coincide: no pelvic reference line")
    horizontal = horizontal / norm
    vertical = np.array([horizontal[1], -horizontal[0]])
    if vertical[1] > 0:  # cranial = up in the image (rows decrease)
        vertical = -vertical
    return a, horizontal, vertical


def height_above_line_mm(point_mm: np.ndarray, origin_mm: np.ndarray, vertical: np.ndarray) -> float:
    """Signed distance of ``point_mm`` above the reference line along ``vertical`` (mm)."""
    return float(np.dot(np.asarray(point_mm, float) - origin_mm, vertical))


def point_line_distance_mm(point_mm: np.ndarray, a_mm: np.ndarray, b_mm: np.ndarray) -> float:
    """Perpendicular distance from a point to the infinite line through ``a`` and ``b`` (mm)."""
    direction = np.asarray(b_mm, float) - np.asarray(a_mm, float)
    norm = float(np.hypot(*direction))
    if norm < 1e-9:
        raise ValueError("line points coincide")
    d = np.asarray(point_mm, float) - np.asarray(a_mm, float)
    return float(abs(direction[0] * d[1] - direction[1] * d[0]) / norm)


def angle_between_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Unsigned angle between two 2D directions in degrees, 0..180."""
    u = np.asarray(u, float)
    v = np.asarray(v, float)
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def line_angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    """Acute angle between two undirected lines with directions ``u`` and ``v``, 0..90 degrees."""
    angle = angle_between_deg(u, v)
    return min(angle, 180.0 - angle)


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere (or circle, for 2D points) through ``points``: ``(centre, radius)``.

    Algebraic fit |p|^2 = 2 c.p + (r^2 - |c|^2), solved linearly; used for the
    femoral head sphere in 3D (spec: "best-fit sphere").

    >>> t = np.linspace(0, 6.0, 40)
    >>> c, r = fit_sphere(np.c_[3 + 2 * np.cos(t), -1 + 2 * np.sin(t)])
    >>> [round(float(v), 6) for v in (*c, r)]
    [3.0, -1.0, 2.0]
    """
    p = np.asarray(points, float)
    if p.ndim != 2 or len(p) < p.shape[1] + 1:
        raise ValueError(f"need at least {p.shape[-1] + 1} points to fit a sphere")
    a = np.c_[2 * p, np.ones(len(p))]
    b = (p**2).sum(1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:-1]
    radius = float(np.sqrt(max(sol[-1] + centre @ centre, 0.0)))
    return centre, radius


def robust_fit_sphere(points: np.ndarray, tolerance_mm: float = 2.0, rounds: int = 3) -> tuple[np.ndarray, float]:
    """:func:`fit_sphere` refitted on the points within ``tolerance_mm`` of the previous surface."""
    p = np.asarray(points, float)
    centre, radius = fit_sphere(p)
    for _ in range(rounds):
        residual = np.abs(np.linalg.norm(p - centre, axis=1) - radius)
        keep = residual <= max(tolerance_mm, float(np.percentile(residual, 60)))
        if keep.sum() < p.shape[1] + 1:
            break
        centre, radius = fit_sphere(p[keep])
    return centre, radius


def sector_mask(
    shape: tuple[int, int],
    centre_xy: Point,
    vertical: np.ndarray,
    half_angle_deg: float,
    spacing_mm: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within ``half_angle_deg`` of ``vertical`` seen from ``centre_xy``, and their radius in mm.

    Returns ``(inside, radius_mm)`` arrays of ``shape``; angles are measured
    in millimetre space so anisotropic pixels are handled.
    """
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    dx = (cols - float(centre_xy[0])) * float(spacing_mm[1])
    dy = (rows - float(centre_xy[1])) * float(spacing_mm[0])
    radius = np.hypot(dx, dy)
    cos = (dx * vertical[0] + dy * vertical[1]) / np.maximum(radius, 1e-9)
    inside = cos >= np.cos(np.radians(half_angle_deg))
    return inside, radius
