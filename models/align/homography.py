"""Homography estimation for pre/post pelvis alignment (LinAlign's three DLT variants).

All functions take point arrays of shape (N, 2) in pixel (x, y) and return a
3x3 float64 matrix ``H`` that maps the first set onto the second
(``x' ~ H x``), scaled so ``H[2, 2] == 1``. The weighted variant is the seed's
exactly: Hartley normalization, both DLT rows of correspondence i multiplied
by ``w_i = P_pre(u_i, v_i) * P_post(u'_i, v'_i)``, SVD, de-normalization.
Nothing here reads files or images; RANSAC uses OpenCV only for its sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares

METHODS: tuple[str, ...] = ("plain", "filtered", "weighted")
FILTER_THRESHOLD = 0.5  # the seed's pelvis-filtered DLT keeps P_pre >= 0.5 and P_post >= 0.5


class HomographyError(ValueError):
    """No homography can be estimated from the given correspondences; ``str()`` says why."""


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise HomographyError(f"{name} must have shape (N, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise HomographyError(f"{name} contains non-finite coordinates")
    return array


def normalization_matrix(points: np.ndarray) -> np.ndarray:
    """Hartley normalization by mean and standard deviation (per axis).

    Centring and scaling to unit spread makes the DLT's design matrix well
    conditioned; pixel coordinates of ~1000 otherwise square into 1e6 entries.
    """
    points = _as_points(points, "points")
    mean = points.mean(axis=0)
    std = points.std(axis=0)
    if np.any(std < 1e-9):
        raise HomographyError("points are collinear along an axis (zero spread): degenerate configuration")
    return np.array(
        [[1.0 / std[0], 0.0, -mean[0] / std[0]], [0.0, 1.0 / std[1], -mean[1] / std[1]], [0.0, 0.0, 1.0]]
    )


def apply_homography(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through ``h``; points sent to infinity become NaN."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    homogeneous = np.c_[points, np.ones(len(points))] @ np.asarray(h, dtype=np.float64).T
    w = homogeneous[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        mapped = homogeneous[:, :2] / w
    mapped[np.abs(w[:, 0]) < 1e-12] = np.nan
    return mapped


def _design_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    n = len(src)
    x, y = src[:, 0], src[:, 1]
    u, v = dst[:, 0], dst[:, 1]
    a = np.zeros((2 * n, 9))
    a[0::2, 0], a[0::2, 1], a[0::2, 2] = -x, -y, -1.0
    a[0::2, 6], a[0::2, 7], a[0::2, 8] = u * x, u * y, u
    a[1::2, 3], a[1::2, 4], a[1::2, 5] = -x, -y, -1.0
    a[1::2, 6], a[1::2, 7], a[1::2, 8] = v * x, v * y, v
    return a


def weighted_normalized_dlt(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The seed's weighted normalized DLT; ``weights=None`` is the plain normalized DLT.

    Both rows of correspondence i are multiplied by ``weights[i]`` before the
    SVD, so a correspondence with weight 0 has no influence at all.
    """
    src = _as_points(src, "src")
    dst = _as_points(dst, "dst")
    if len(src) != len(dst):
        raise HomographyError(f"src and dst differ in length ({len(src)} vs {len(dst)})")
    if weights is None:
        weights = np.ones(len(src))
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(weights) != len(src):
        raise HomographyError(f"{len(weights)} weights for {len(src)} correspondences")
    if np.any(~np.isfinite(weights)) or np.any(weights < 0):
        raise HomographyError("weights must be finite and non-negative")
    used = weights > 0
    if int(used.sum()) < 4:
        raise HomographyError(f"only {int(used.sum())} correspondences with non-zero weight; 4 are needed")
    t_src = normalization_matrix(src[used])
    t_dst = normalization_matrix(dst[used])
    a = _design_matrix(apply_homography(t_src, src), apply_homography(t_dst, dst))
    a *= np.repeat(weights, 2)[:, None]
    # Only V is needed: the full (2N, 2N) U cost up to seconds with a few thousand matches.
    _, singular, vt = np.linalg.svd(a, full_matrices=False)
    h_normalized = vt[-1].reshape(3, 3)
    h = np.linalg.inv(t_dst) @ h_normalized @ t_src
    if abs(h[2, 2]) < 1e-12:
        raise HomographyError("homography maps the origin to infinity (H[2,2] = 0)")
    return h / h[2, 2]


def normalized_dlt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Plain normalized DLT (Hartley), every correspondence weighted equally."""
    return weighted_normalized_dlt(src, dst, None)


def correspondence_weights(
    src: np.ndarray, dst: np.ndarray, p_pre: np.ndarray, p_post: np.ndarray
) -> np.ndarray:
    """``w_i = P_pre(u_i, v_i) * P_post(u'_i, v'_i)``, sampled bilinearly on each grid."""
    return sample_bilinear(p_pre, src) * sample_bilinear(p_post, dst)


def sample_bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear sample of a 2-D array at (x, y) points; outside the grid gives 0."""
    image = np.asarray(image, dtype=np.float32)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros(0)
    map_x = points[:, 0].reshape(-1, 1)
    map_y = points[:, 1].reshape(-1, 1)
    values = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return values.reshape(-1).astype(np.float64)


def filtered_dlt(
    src: np.ndarray, dst: np.ndarray, p_pre_at_src: np.ndarray, p_post_at_dst: np.ndarray
) -> np.ndarray:
    """The seed's pelvis-filtered DLT: plain DLT over matches with both P >= 0.5."""
    keep = (np.asarray(p_pre_at_src) >= FILTER_THRESHOLD) & (np.asarray(p_post_at_dst) >= FILTER_THRESHOLD)
    if int(keep.sum()) < 4:
        raise HomographyError(f"only {int(keep.sum())} matches lie on the pelvis in both images; 4 are needed")
    return normalized_dlt(np.asarray(src)[keep], np.asarray(dst)[keep])


def ransac_inliers(
    src: np.ndarray, dst: np.ndarray, threshold_px: float, confidence: float = 0.999, max_iters: int = 5000,
    seed: int = 0,
) -> np.ndarray:
    """Boolean inlier mask of a RANSAC homography consensus (OpenCV's sampler, fixed seed)."""
    src = _as_points(src, "src")
    dst = _as_points(dst, "dst")
    if len(src) < 4:
        return np.zeros(len(src), dtype=bool)
    cv2.setRNGSeed(seed)
    h, mask = cv2.findHomography(
        src.astype(np.float32), dst.astype(np.float32), cv2.RANSAC, threshold_px,
        maxIters=max_iters, confidence=confidence,
    )
    if h is None or mask is None:
        return np.zeros(len(src), dtype=bool)
    return mask.reshape(-1).astype(bool)


def fit_geometric(src: np.ndarray, dst: np.ndarray, h0: np.ndarray | None = None) -> np.ndarray:
    """Least-squares homography minimising the reprojection error in the target image.

    Used as the "best possible homography" of the evaluation: fitted to the
    true pelvic points, it is the physical limit of any homography on a pair.
    """
    src = _as_points(src, "src")
    dst = _as_points(dst, "dst")
    h_start = normalized_dlt(src, dst) if h0 is None else np.asarray(h0, dtype=np.float64) / h0[2, 2]
    t_src = normalization_matrix(src)
    t_dst = normalization_matrix(dst)
    hn0 = t_dst @ h_start @ np.linalg.inv(t_src)
    hn0 = hn0 / hn0[2, 2]
    src_n = apply_homography(t_src, src)
    dst_n = apply_homography(t_dst, dst)

    def residuals(params: np.ndarray) -> np.ndarray:
        hn = np.append(params, 1.0).reshape(3, 3)
        return (apply_homography(hn, src_n) - dst_n).ravel()

    solution = least_squares(residuals, hn0.ravel()[:8], method="lm")
    hn = np.append(solution.x, 1.0).reshape(3, 3)
    h = np.linalg.inv(t_dst) @ hn @ t_src
    return h / h[2, 2]


@dataclass(frozen=True)
class DegeneracyLimits:
    """Bounds a PRE->POST homography of one patient's AP pelvis must respect.

    Two AP films of the same pelvis differ by a moderate similarity plus a
    little perspective; anything outside these bounds is a failed match,
    not anatomy.
    """

    min_scale: float = 0.6
    max_scale: float = 1.6
    max_anisotropy: float = 1.5  # ratio of the singular values of the affine part
    max_condition: float = 1e7  # of H normalized to the image frame
    min_area_ratio: float = 0.35  # mapped image area / target image area
    max_area_ratio: float = 2.8
    max_corner_shift: float = 0.5  # as a fraction of the target diagonal


def degeneracy_reason(
    h: np.ndarray | None, source_shape: tuple[int, int], target_shape: tuple[int, int],
    limits: DegeneracyLimits = DegeneracyLimits(),
) -> str | None:
    """Why ``h`` is not a sane PRE->POST pelvis homography, or None when it is.

    Checks finiteness, orientation (determinant sign), conditioning, scale and
    anisotropy, and that the source image's corners land in front of the camera
    (no horizon crossing), as a convex quadrilateral of plausible area not far
    from the target frame.
    """
    if h is None:
        return "no homography"
    h = np.asarray(h, dtype=np.float64)
    if h.shape != (3, 3) or not np.all(np.isfinite(h)):
        return "homography has non-finite entries"
    rows_s, cols_s = source_shape
    rows_t, cols_t = target_shape
    diagonal_t = float(np.hypot(rows_t, cols_t))
    t_src = np.diag([2.0 / cols_s, 2.0 / rows_s, 1.0])
    t_dst = np.diag([2.0 / cols_t, 2.0 / rows_t, 1.0])
    hn = t_dst @ h @ np.linalg.inv(t_src)
    if abs(hn[2, 2]) < 1e-12:
        return "homography sends the image origin to infinity"
    hn = hn / hn[2, 2]
    condition = float(np.linalg.cond(hn))
    if not np.isfinite(condition) or condition > limits.max_condition:
        return f"ill-conditioned homography (condition number {condition:.3g})"
    affine = h[:2, :2] / h[2, 2]
    determinant = float(np.linalg.det(affine))
    if determinant <= 0:
        return "homography mirrors the image (negative determinant)"
    scale = float(np.sqrt(determinant))
    if not limits.min_scale <= scale <= limits.max_scale:
        return f"implausible scale change {scale:.2f} (allowed {limits.min_scale}-{limits.max_scale})"
    singular = np.linalg.svd(affine, compute_uv=False)
    anisotropy = float(singular[0] / singular[1])
    if anisotropy > limits.max_anisotropy:
        return f"implausible shear/anisotropy {anisotropy:.2f} (allowed <= {limits.max_anisotropy})"
    corners = np.array([[0, 0], [cols_s - 1, 0], [cols_s - 1, rows_s - 1], [0, rows_s - 1]], dtype=np.float64)
    w = np.c_[corners, np.ones(4)] @ h[2]
    if np.any(w <= 1e-9 * np.abs(h[2, 2])) or np.any(np.sign(w) != np.sign(h[2, 2])):
        return "image corners cross the homography's horizon line"
    mapped = apply_homography(h, corners)
    edges = np.roll(mapped, -1, axis=0) - mapped
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not (np.all(cross > 0) or np.all(cross < 0)):
        return "mapped image corners do not form a convex quadrilateral"
    area = 0.5 * abs(float(np.sum(mapped[:, 0] * np.roll(mapped[:, 1], -1) - np.roll(mapped[:, 0], -1) * mapped[:, 1])))
    area_ratio = area / float(rows_t * cols_t)
    if not limits.min_area_ratio <= area_ratio <= limits.max_area_ratio:
        return f"mapped image area is {area_ratio:.2f} of the target (allowed {limits.min_area_ratio}-{limits.max_area_ratio})"
    target_corners = np.array([[0, 0], [cols_t - 1, 0], [cols_t - 1, rows_t - 1], [0, rows_t - 1]], dtype=np.float64)
    shift = float(np.max(np.linalg.norm(mapped - target_corners, axis=1))) / diagonal_t
    if shift > limits.max_corner_shift:
        return f"image corners move by {shift:.2f} of the diagonal (allowed <= {limits.max_corner_shift})"
    return None
