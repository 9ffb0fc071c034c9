"""Total hip arthroplasty components and their exact projection.

Cup (hemispherical metal shell with a radiolucent polyethylene liner), a
28-36 mm metal head at the cup centre and a tapered, flattened stem down the
femoral canal. Spheres and hemispheres are projected analytically (chord
length per ray, clipped by the cup's opening plane); the stem is sampled
along each ray. All geometry is in world space and in true millimetres: an
implant is not scaled with the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.synth.projection import Geometry

MU_TITANIUM = 0.16  # 1/mm at ~55 keV
MU_COCR = 0.60


@dataclass(frozen=True)
class Hip:
    """One side's arthroplasty in world space."""

    side: str
    cup_centre: np.ndarray
    cup_axis: np.ndarray  # unit; opening direction (out of the acetabulum)
    cup_outer_mm: float
    cup_shell_mm: float
    head_radius_mm: float
    stem: tuple[tuple[np.ndarray, np.ndarray, float, float], ...]  # (a, b, radius_a, radius_b)
    stem_ap: np.ndarray  # unit vector of the stem's thin (antero-posterior) direction
    stem_flatten: float
    mu_cup: float = MU_TITANIUM
    mu_head: float = MU_COCR
    mu_stem: float = MU_TITANIUM

    @property
    def stem_tip(self) -> np.ndarray:
        """Most distal point of the stem: tip centre plus its radius along the stem."""
        a, b, _, rb = self.stem[-1]
        d = (b - a) / np.linalg.norm(b - a)
        return b + rb * d

    def rim_points(self, n: int = 360) -> np.ndarray:
        """Points on the cup's opening circle (outer radius), (n, 3)."""
        u = np.cross(self.cup_axis, [0.0, 1.0, 0.0])
        if np.linalg.norm(u) < 1e-6:
            u = np.cross(self.cup_axis, [1.0, 0.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(self.cup_axis, u)
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return self.cup_centre + self.cup_outer_mm * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)


def cup_axis_world(side: str, inclination_deg: float, anteversion_deg: float, pelvis_rotation: np.ndarray) -> np.ndarray:
    """Opening direction of a cup with radiographic inclination / anteversion (Murray), in world space.

    In the pelvis frame (lateral, anterior, inferior) the axis is
    (sin I cos A, sin A, cos I cos A); x grows to the patient's left, y posterior, z cranial.
    """
    i, a = np.radians(inclination_deg), np.radians(anteversion_deg)
    lateral = -1.0 if side == "right" else 1.0
    axis = np.array([lateral * np.sin(i) * np.cos(a), -np.sin(a), -np.cos(i) * np.cos(a)])
    axis = pelvis_rotation @ axis
    return axis / np.linalg.norm(axis)


def _sphere_halfspace_chord(s: np.ndarray, d: np.ndarray, c: np.ndarray, r: float, n: np.ndarray | None) -> np.ndarray:
    """Length of each ray (origin ``s``, unit dirs ``d`` (..., 3)) inside a sphere, optionally
    clipped to the half-space (p - c) . n <= 0."""
    oc = s - c
    b = d @ oc
    disc = b**2 - (oc @ oc - r * r)
    root = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = -b - root, -b + root
    if n is not None:
        dn = d @ n
        sn = float(oc @ n)
        with np.errstate(divide="ignore", invalid="ignore"):
            th = -sn / dn
        # dn > 0: inside for t <= th ; dn < 0: inside for t >= th
        t1 = np.where(dn > 0, np.minimum(t1, th), t1)
        t0 = np.where(dn < 0, np.maximum(t0, th), t0)
        if sn > 0:
            t1 = np.where(np.abs(dn) < 1e-12, t0, t1)
    return np.where(disc > 0, np.maximum(t1 - t0, 0.0), 0.0)


def _window(geom: Geometry, points: np.ndarray, margin_px: float) -> tuple[int, int, int, int] | None:
    pix = geom.project(points)
    c0 = int(max(np.floor(pix[:, 0].min() - margin_px), 0))
    c1 = int(min(np.ceil(pix[:, 0].max() + margin_px) + 1, geom.cols))
    r0 = int(max(np.floor(pix[:, 1].min() - margin_px), 0))
    r1 = int(min(np.ceil(pix[:, 1].max() + margin_px) + 1, geom.rows))
    if c1 <= c0 or r1 <= r0:
        return None
    return r0, r1, c0, c1


def _rays(geom: Geometry, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    x, z = geom.detector_points(rows, cols)
    det = np.stack(np.broadcast_arrays(x[None, :], geom.sid_mm - geom.sod_mm, z[:, None]), -1)
    d = det - geom.source
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def render_hip(hip: Hip, geom: Geometry, sample_pitch_mm: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Metal line integral (dimensionless, mu x length) and metal mask on the image grid."""
    mu_line = np.zeros((geom.rows, geom.cols), np.float32)
    s = geom.source
    # cup and head: analytic, at full resolution within their window
    sphere_box = hip.cup_centre + hip.cup_outer_mm * np.array(
        [[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float
    )
    win = _window(geom, sphere_box, 2)
    if win is not None:
        r0, r1, c0, c1 = win
        d = _rays(geom, np.arange(r0, r1), np.arange(c0, c1))
        n = hip.cup_axis
        outer = _sphere_halfspace_chord(s, d, hip.cup_centre, hip.cup_outer_mm, n)
        inner = _sphere_halfspace_chord(s, d, hip.cup_centre, hip.cup_outer_mm - hip.cup_shell_mm, n)
        head = _sphere_halfspace_chord(s, d, hip.cup_centre, hip.head_radius_mm, None)
        mu_line[r0:r1, c0:c1] += (hip.mu_cup * (outer - inner) + hip.mu_head * head).astype(np.float32)
    # stem: per pixel, the chord through a flattened (elliptic) tapered capsule, in 2D
    pts = np.concatenate([[a, b] for a, b, _, _ in hip.stem])
    rmax = max(max(ra, rb) for _, _, ra, rb in hip.stem)
    win = _window(geom, pts, rmax * geom.magnification / geom.pitch_mm * 1.3 + 3)
    if win is not None:
        r0, r1, c0, c1 = win
        rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        stem_line = np.zeros(rows.shape, np.float32)
        for a, b, ra, rb in hip.stem:
            (pa, pb) = geom.project(np.array([a, b]))
            ma, mb = geom.magnification_at(a), geom.magnification_at(b)
            axis = (b - a) / np.linalg.norm(b - a)
            centre = 0.5 * (a + b)
            ray = centre - geom.source
            ray /= np.linalg.norm(ray)
            # angle of the thin (AP) axis to the ray decides the projected half-width
            cos_phi = abs(float(hip.stem_ap @ ray))
            sin2 = 1.0 - cos_phi**2
            obliquity = 1.0 / max(np.sqrt(max(1.0 - float(axis @ ray) ** 2, 1e-6)), 0.2)
            ab = pb - pa
            length2 = max(float(ab @ ab), 1e-9)
            t = np.clip(((cols - pa[0]) * ab[0] + (rows - pa[1]) * ab[1]) / length2, 0.0, 1.0)
            rho = np.hypot(cols - (pa[0] + t * ab[0]), rows - (pa[1] + t * ab[1])) * geom.pitch_mm / (ma + t * (mb - ma))
            semi_ml = ra + t * (rb - ra)
            semi_ap = semi_ml / hip.stem_flatten
            w2 = semi_ml**2 * (1.0 - sin2) + semi_ap**2 * sin2
            chord = 2.0 * semi_ml * semi_ap / w2 * np.sqrt(np.maximum(w2 - rho**2, 0.0)) * obliquity
            stem_line = np.maximum(stem_line, chord.astype(np.float32))
        mu_line[r0:r1, c0:c1] += hip.mu_stem * stem_line
    return mu_line, mu_line > 0.02
