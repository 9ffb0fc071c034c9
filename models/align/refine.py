"""Refinements beyond LinAlign's weighted DLT ("ours").

Femurs and soft tissue move independently of the pelvis between exams, so
matches on them pull a homography away from the pelvic ring even after RANSAC.
Two remedies, used in sequence by :mod:`models.align.pipeline`:

* :func:`irls_weighted_dlt`: iteratively reweighted DLT; each correspondence
  keeps its pelvis weight times a Cauchy weight of its current residual, so
  consistent pelvic matches dominate and stragglers fade out smoothly.
* :func:`masked_ecc`: intensity-based refinement (enhanced correlation
  coefficient, homography motion) restricted to the pelvis, with metal
  excluded and contrast equalized by CLAHE; accepted only when it raises the
  correlation and stays close to the feature-based estimate. Plain ECC over
  the whole image diverges on implant pairs; masking metal and non-pelvis
  pixels is what makes it safe.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.align.homography import HomographyError, apply_homography, weighted_normalized_dlt
from models.align.matching import clahe, downscale, to_uint8


def irls_weighted_dlt(
    src: np.ndarray, dst: np.ndarray, base_weights: np.ndarray, h0: np.ndarray, iterations: int = 6,
    min_scale_px: float = 1.0,
) -> np.ndarray:
    """Weighted DLT re-solved with weights ``base_w_i / (1 + (r_i / c)^2)``.

    ``r_i`` is the forward residual under the current estimate and ``c`` is
    2.4 robust standard deviations (MAD) of the residuals of the weighted
    matches, at least ``min_scale_px``.
    """
    h = np.asarray(h0, dtype=np.float64)
    base = np.asarray(base_weights, dtype=np.float64)
    for _ in range(iterations):
        residual = np.linalg.norm(apply_homography(h, src) - dst, axis=1)
        residual = np.nan_to_num(residual, nan=1e9)
        active = base > 0
        if int(active.sum()) < 4:
            break
        mad = float(np.median(np.abs(residual[active] - np.median(residual[active]))))
        scale = max(2.4 * 1.4826 * mad, float(np.median(residual[active])), min_scale_px)
        weights = base / (1.0 + (residual / scale) ** 2)
        try:
            h_next = weighted_normalized_dlt(src, dst, weights)
        except HomographyError:
            break
        change = np.max(np.abs(apply_homography(h_next, src[active]) - apply_homography(h, src[active])))
        h = h_next
        if change < 0.01:
            break
    return h


def coverage_weights(points: np.ndarray, radius_px: float) -> np.ndarray:
    """1 / (number of points within ``radius_px``): evens out where matches cluster.

    The error that matters is spread over the whole pelvic ring, but matches
    crowd into textured regions; without balancing, a dense cluster decides
    the homography for the rest of the ring under out-of-plane rotation.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return np.zeros(0)
    d2 = np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    counts = np.sum(d2 <= radius_px**2, axis=1)
    return 1.0 / counts


def metal_mask(image: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """Pixels much denser than bone (implants), slightly dilated; empty on a native hip.

    Metal saturates far above the densest bone, so the threshold sits a third
    of the way from the bone level (98th percentile inside ``region``) to the
    image maximum, and only when such a separate bright tail exists.
    """
    image = np.asarray(image, dtype=np.float32)
    values = image[region] if region is not None and region.any() else image.ravel()
    median, bone = np.percentile(values, [50, 98])
    top = float(image.max())
    if top - bone < 0.25 * max(bone - median, 1e-6):
        return np.zeros(image.shape, dtype=bool)
    mask = image > bone + 0.35 * (top - bone)
    return cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


@dataclass(frozen=True)
class EccResult:
    """Outcome of :func:`masked_ecc`; ``homography`` is the input when not accepted."""

    homography: np.ndarray
    accepted: bool
    correlation_before: float
    correlation_after: float
    reason: str


def _scaling(factor: float) -> np.ndarray:
    """Map full-resolution pixel centres to a grid downscaled by ``factor``."""
    return np.array([[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5], [0.0, 0.0, 1.0]])


def masked_ecc(
    pre: np.ndarray, post: np.ndarray, h0: np.ndarray, pelvis_pre: np.ndarray, pelvis_post: np.ndarray,
    metal_pre: np.ndarray | None = None, metal_post: np.ndarray | None = None, max_side: int = 512,
    iterations: int = 60, max_shift_fraction: float = 0.02,
) -> EccResult:
    """ECC homography refinement over the pelvis of both images, metal excluded.

    ``pelvis_*`` are boolean masks (or probabilities thresholded at 0.5) on
    each image's grid. The template is the post-op image; ECC estimates the
    warp post -> pre, inverted on return so the result maps PRE -> POST.
    """
    pre_small, f_pre = downscale(np.asarray(pre, dtype=np.float32), max_side)
    post_small, f_post = downscale(np.asarray(post, dtype=np.float32), max_side)
    s_pre, s_post = _scaling(f_pre), _scaling(f_post)

    def small_mask(mask: np.ndarray | None, shape: tuple[int, int], metal: np.ndarray | None) -> np.ndarray:
        keep = np.ones(shape, dtype=np.uint8)
        if mask is not None:
            keep = cv2.resize((np.asarray(mask) >= 0.5).astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST)
            keep = cv2.dilate(keep, np.ones((5, 5), np.uint8))
        if metal is not None:
            metal_small = cv2.resize(metal.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST)
            keep[cv2.dilate(metal_small, np.ones((3, 3), np.uint8)) > 0] = 0
        return keep

    template_mask = small_mask(pelvis_post, post_small.shape, metal_post)
    input_mask = small_mask(pelvis_pre, pre_small.shape, metal_pre)
    h0 = np.asarray(h0, dtype=np.float64)
    if template_mask.sum() < 500 or input_mask.sum() < 500:
        return EccResult(h0, False, float("nan"), float("nan"), "pelvis region too small for ECC")
    template = clahe(to_uint8(post_small)).astype(np.float32) / 255.0
    moving = clahe(to_uint8(pre_small)).astype(np.float32) / 255.0
    h_small = s_post @ h0 @ np.linalg.inv(s_pre)
    warp0 = np.linalg.inv(h_small)
    warp0 = (warp0 / warp0[2, 2]).astype(np.float32)

    def correlation(warp: np.ndarray) -> float:
        warped = cv2.warpPerspective(moving, warp, template.shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        valid = cv2.warpPerspective(input_mask, warp, template.shape[::-1],
                                    flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) & template_mask
        if valid.sum() < 100:
            return float("nan")
        a = template[valid > 0] - template[valid > 0].mean()
        b = warped[valid > 0] - warped[valid > 0].mean()
        return float((a @ b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))

    before = correlation(warp0)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-6)
    try:
        _, warp = cv2.findTransformECCWithMask(template, moving, template_mask, input_mask, warp0.copy(),
                                               cv2.MOTION_HOMOGRAPHY, criteria, 5)
    except cv2.error as exc:
        return EccResult(h0, False, before, float("nan"), f"ECC did not converge: {str(exc).splitlines()[-1]}")
    after = correlation(warp)
    if not np.isfinite(after) or not after > before:
        return EccResult(h0, False, before, after, "ECC did not raise the pelvis correlation")
    h_small_new = np.linalg.inv(warp.astype(np.float64))
    h_new = np.linalg.inv(s_post) @ h_small_new @ s_pre
    h_new = h_new / h_new[2, 2]
    rows, cols = np.nonzero(np.asarray(pelvis_pre) >= 0.5)
    if len(rows) == 0:
        return EccResult(h0, False, before, after, "empty pre-op pelvis mask")
    step = max(1, len(rows) // 2000)
    probe = np.c_[cols[::step], rows[::step]].astype(np.float64)
    shift = np.nanmax(np.linalg.norm(apply_homography(h_new, probe) - apply_homography(h0, probe), axis=1))
    limit = max_shift_fraction * float(np.hypot(*np.shape(post)))
    if not np.isfinite(shift) or shift > limit:
        return EccResult(h0, False, before, after, f"ECC moved the pelvis by {shift:.1f} px (limit {limit:.1f})")
    return EccResult(h_new, True, before, after, "accepted")


def weighted_geometric_refine(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray, h0: np.ndarray, scale_px: float = 2.0,
) -> np.ndarray:
    """Robust weighted reprojection-error homography, started from ``h0``.

    Minimizes ``sum_i w_i * rho(|H x_i - x'_i|^2)`` with a Cauchy ``rho`` of
    scale ``scale_px``: the error the evaluation measures (distance in the
    post-op image) rather than the DLT's algebraic error, with the pelvis
    weights kept and gross stragglers bounded.
    """
    from scipy.optimize import least_squares

    from models.align.homography import normalization_matrix

    weights = np.asarray(weights, dtype=np.float64)
    used = weights > 0
    if int(used.sum()) < 4:
        return np.asarray(h0, dtype=np.float64)
    s, d, root_w = src[used], dst[used], np.sqrt(weights[used] / weights[used].max())
    t_src = normalization_matrix(s)
    t_dst = normalization_matrix(d)
    hn0 = t_dst @ np.asarray(h0, dtype=np.float64) @ np.linalg.inv(t_src)
    hn0 = hn0 / hn0[2, 2]
    s_n = apply_homography(t_src, s)
    # residuals are computed in pixels so the robust scale is in pixels
    t_dst_inv = np.linalg.inv(t_dst)

    def residuals(params: np.ndarray) -> np.ndarray:
        hn = np.append(params, 1.0).reshape(3, 3)
        mapped = apply_homography(t_dst_inv @ hn, s_n)
        return ((mapped - d) * root_w[:, None]).ravel()

    solution = least_squares(residuals, hn0.ravel()[:8], loss="cauchy", f_scale=scale_px, method="trf", max_nfev=200)
    if not solution.success or not np.all(np.isfinite(solution.x)):
        return np.asarray(h0, dtype=np.float64)
    hn = np.append(solution.x, 1.0).reshape(3, 3)
    h = t_dst_inv @ hn @ t_src
    return h / h[2, 2]


def _moments_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Translation + isotropic scale that maps the centroid and area of map ``a`` onto ``b``."""
    ma, mb = cv2.moments(a), cv2.moments(b)
    if ma["m00"] <= 1e-6 or mb["m00"] <= 1e-6:
        return None
    ca = np.array([ma["m10"] / ma["m00"], ma["m01"] / ma["m00"]])
    cb = np.array([mb["m10"] / mb["m00"], mb["m01"] / mb["m00"]])
    s = float(np.sqrt(mb["m00"] / ma["m00"]))
    return np.array([[s, 0.0, cb[0] - s * ca[0]], [0.0, s, cb[1] - s * ca[1]], [0.0, 0.0, 1.0]])


def pelvis_map_alignment(p_pre: np.ndarray, p_post: np.ndarray, max_side: int = 256, sigma_px: float = 2.0) -> np.ndarray | None:
    """PRE -> POST homography that best overlays the two pelvis probability maps.

    Moments give a similarity start; ECC then fits an affine and a homography
    to the blurred maps. The maps are smooth and free of image noise, so this
    converges where feature matching on a noisy, low-contrast film finds few
    correct matches; it is a prior and a fallback, not the final answer, since
    a silhouette is not the ring. Returns None when ECC cannot converge.
    """
    a, fa = downscale(np.asarray(p_pre, dtype=np.float32), max_side)
    b, fb = downscale(np.asarray(p_post, dtype=np.float32), max_side)
    a = cv2.GaussianBlur(a, (0, 0), sigma_px)
    b = cv2.GaussianBlur(b, (0, 0), sigma_px)
    start = _moments_similarity(a, b)
    if start is None:
        return None
    warp = np.linalg.inv(start).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-7)
    try:
        _, affine = cv2.findTransformECC(b, a, warp[:2].copy(), cv2.MOTION_AFFINE, criteria, None, 1)
        warp = np.vstack([affine, [0.0, 0.0, 1.0]]).astype(np.float32)
        _, warp = cv2.findTransformECC(b, a, warp.copy(), cv2.MOTION_HOMOGRAPHY, criteria, None, 1)
    except cv2.error:
        return None
    h_small = np.linalg.inv(warp.astype(np.float64))
    h = np.linalg.inv(_scaling(fb)) @ h_small @ _scaling(fa)
    return h / h[2, 2]
