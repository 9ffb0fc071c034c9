"""Pre/post alignment from two images and their pelvis probabilities to a checked homography.

The steps are LinAlign's (match, RANSAC, weighted normalized DLT) plus the
checks that decide whether the result may be shown at all: a pelvis in each
image, enough matches, enough inliers, enough of them on the pelvis, and a
non-degenerate homography. Any failed check returns a :class:`PairAlignment`
with ``failure`` set and no homography: no colour difference map may follow.
Method ``ours`` adds a pelvis-aware RANSAC, IRLS and metal-masked ECC, and
when its fit is refused it matches the same features once more with half the
keypoints (a matcher's ``sparser``), then, if that is refused too, matches PRE
warped onto POST by the pelvis outline overlay (:mod:`models.align.guided`),
each under the same checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.algorithms.results import AlgorithmInfo, PairAlignment
from models.align.guided import match_after_warp
from models.align.homography import (
    HomographyError,
    apply_homography,
    degeneracy_reason,
    filtered_dlt,
    normalized_dlt,
    ransac_inliers,
    sample_bilinear,
    weighted_normalized_dlt,
)
from models.align.matching import Matcher, Matches
from models.align.refine import (
    coverage_weights,
    irls_weighted_dlt,
    masked_ecc,
    metal_mask,
    pelvis_map_alignment,
    weighted_geometric_refine,
)

ALIGN_METHODS: tuple[str, ...] = ("plain", "filtered", "weighted", "ours")
VERSION = "1.2.0"  # 1.1.0: matcher graphs 1.1.0, match threshold 0.02, sparser retry (s21); 1.2.0: match on the prior (s26)


@dataclass(frozen=True)
class AlignSettings:
    """Thresholds of the trust checks; fractions are of the post-op image diagonal."""

    ransac_threshold_fraction: float = 0.015  # out-of-plane pelvic rotation bends the ring ~1% of the diagonal
    min_matches: int = 12
    min_inliers: int = 12
    min_pelvis_inliers: int = 8  # inliers with P_pre >= 0.5 and P_post >= 0.5
    min_pelvis_area_fraction: float = 0.02  # of the image, pixels with P >= 0.5
    use_ecc: bool = False  # masked ECC after the fit; measured no gain on the synthetic pairs, costs ~0.3-1 s
    pelvis_prior: bool = True  # ours: overlay of the pelvis maps as prior, gate and fallback for the matches
    prior_gate_fraction: float = 0.03  # matches farther than this (of the diagonal) from the prior are ignored
    prior_strength: float = 30.0  # the prior weighs as much as this many feature inliers
    refine: str = "geometric"  # "irls" (iteratively reweighted DLT) or "geometric" (robust weighted LM)
    coverage_radius_fraction: float = 0.06  # > 0: balance match density within this radius (of the diagonal)
    sparser_retry: bool = True  # ours: a refused pair is matched once more with half the keypoints (same features)
    match_on_prior: bool = True  # ours, with pelvis_prior: a pair still refused is matched again with PRE warped by it


def pelvis_found(probability: np.ndarray, settings: AlignSettings) -> bool:
    """A pelvis is present when at least ``min_pelvis_area_fraction`` of pixels have P >= 0.5."""
    return float(np.mean(np.asarray(probability) >= 0.5)) >= settings.min_pelvis_area_fraction


def _prior_fit(
    matches: Matches, p_pre: np.ndarray, p_post: np.ndarray, h_prior: np.ndarray, threshold_px: float,
    settings: AlignSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """ours: matches confirmed by the pelvis-map prior, fitted jointly with the prior.

    The prior enters as pseudo-correspondences (pelvis pixels of PRE mapped by
    ``h_prior``) whose total weight equals ``prior_strength`` feature inliers:
    with many consistent matches the image evidence decides, with few the
    prior keeps the fit sane. At least ``min_pelvis_inliers`` matches must
    agree with the prior, or the pair is refused for lack of image evidence.
    """
    src, dst = matches.points_pre, matches.points_post
    diagonal = threshold_px / settings.ransac_threshold_fraction
    p_src, p_dst = sample_bilinear(p_pre, src), sample_bilinear(p_post, dst)
    residual = np.linalg.norm(apply_homography(h_prior, src) - dst, axis=1)
    candidates = (np.nan_to_num(residual, nan=np.inf) < settings.prior_gate_fraction * diagonal) & (p_src >= 0.5) & (p_dst >= 0.5)
    inliers = np.zeros(len(src), dtype=bool)
    if int(candidates.sum()) >= 4:
        inliers[np.flatnonzero(candidates)] = ransac_inliers(src[candidates], dst[candidates], threshold_px)
    count = int(inliers.sum())
    if count < settings.min_pelvis_inliers:
        raise HomographyError(
            f"too few inliers on the pelvis agreeing with the pelvis outline ({count} < {settings.min_pelvis_inliers})")
    ys, xs = np.nonzero(np.asarray(p_pre) >= 0.5)
    chosen = np.random.default_rng(0).choice(len(xs), size=min(150, len(xs)), replace=False)
    pseudo = np.c_[xs[chosen], ys[chosen]].astype(np.float64)
    w_feat = p_src[inliers] * p_dst[inliers] * coverage_weights(dst[inliers], settings.coverage_radius_fraction * diagonal)
    w_feat = w_feat / max(float(w_feat.sum()), 1e-12) * count / (count + settings.prior_strength)
    w_prior = np.full(len(pseudo), settings.prior_strength / (count + settings.prior_strength) / len(pseudo))
    h = weighted_geometric_refine(np.vstack([src[inliers], pseudo]), np.vstack([dst[inliers], apply_homography(h_prior, pseudo)]),
                                  np.r_[w_feat, w_prior], h_prior, scale_px=threshold_px / 2)
    return h, inliers


def outline_prior(p_pre: np.ndarray, p_post: np.ndarray) -> np.ndarray | None:
    """ours: the pelvis-map overlay as a homography, or None when it cannot be made or is degenerate."""
    h_prior = pelvis_map_alignment(p_pre, p_post)
    if h_prior is None or degeneracy_reason(h_prior, np.shape(p_pre), np.shape(p_post)) is not None:
        return None
    return h_prior


def estimate_homography(
    matches: Matches, p_pre: np.ndarray, p_post: np.ndarray, method: str, threshold_px: float,
    settings: AlignSettings, h_prior: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit one method on ``matches``; returns (H, inlier mask). Raises HomographyError with a reason.

    ``h_prior`` (ours only, from :func:`outline_prior`) gates the matches and joins the fit.
    """
    src, dst = matches.points_pre, matches.points_post
    p_src = sample_bilinear(p_pre, src)
    p_dst = sample_bilinear(p_post, dst)
    weights = p_src * p_dst
    if method == "ours" and h_prior is not None:
        # The outline overlay gates the matches and joins the fit on every pair. Chosen on
        # pairs of the training anatomies (Pelvic-Ref-001/004): 1.21x / 1.17x the best
        # possible homography at 1000 px / full size, against 1.33x / 1.24x when a feature
        # fit with 40 or more inliers was kept without the prior (docs/align.md).
        try:
            return _prior_fit(matches, p_pre, p_post, h_prior, threshold_px, settings)
        except HomographyError:
            pass  # the matches disagree with the overlay: the features alone decide, under the checks below
    if method == "ours":
        on_pelvis = (p_src >= 0.5) & (p_dst >= 0.5)
        candidates = on_pelvis if int(on_pelvis.sum()) >= settings.min_inliers else np.ones(len(src), bool)
        inliers = np.zeros(len(src), dtype=bool)
        inliers[np.flatnonzero(candidates)] = ransac_inliers(src[candidates], dst[candidates], threshold_px)
    else:
        inliers = ransac_inliers(src, dst, threshold_px)
    if int(inliers.sum()) < settings.min_inliers:
        raise HomographyError(f"too few RANSAC inliers ({int(inliers.sum())} < {settings.min_inliers})")
    pelvis_inliers = int(((p_src >= 0.5) & (p_dst >= 0.5) & inliers).sum())
    if method != "plain" and pelvis_inliers < settings.min_pelvis_inliers:
        raise HomographyError(
            f"too few inliers on the pelvis ({pelvis_inliers} < {settings.min_pelvis_inliers})")
    s, d = src[inliers], dst[inliers]
    if method == "plain":
        return normalized_dlt(s, d), inliers
    if method == "filtered":
        return filtered_dlt(s, d, p_src[inliers], p_dst[inliers]), inliers
    if method == "weighted":
        return weighted_normalized_dlt(s, d, weights[inliers]), inliers
    if method == "ours":
        w = weights[inliers]
        if settings.coverage_radius_fraction > 0:
            w = w * coverage_weights(d, settings.coverage_radius_fraction * threshold_px / settings.ransac_threshold_fraction)
        h = weighted_normalized_dlt(s, d, w)
        h = irls_weighted_dlt(s, d, w, h)
        if settings.refine == "geometric":
            h = weighted_geometric_refine(s, d, w, h, scale_px=threshold_px / 2)
        return h, inliers
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(ALIGN_METHODS)}")


def _checked_fit(
    matches: Matches, pre: np.ndarray, post: np.ndarray, p_pre: np.ndarray, p_post: np.ndarray, method: str,
    settings: AlignSettings, result: PairAlignment, h_prior: np.ndarray | None = None,
) -> np.ndarray | str:
    """A homography that passed every check, or the reason it was refused; counts go into ``result``."""
    result.matches, result.inliers = len(matches), 0
    if len(matches) < settings.min_matches:
        return f"too few matches ({len(matches)} < {settings.min_matches})"
    threshold_px = settings.ransac_threshold_fraction * float(np.hypot(*np.shape(post)))
    start = time.perf_counter()
    try:
        h, inliers = estimate_homography(matches, p_pre, p_post, method, threshold_px, settings, h_prior)
    except HomographyError as exc:
        return str(exc)
    finally:
        result.timings_ms["homography"] = result.timings_ms.get("homography", 0.0) + 1000 * (time.perf_counter() - start)
    result.inliers = int(inliers.sum())
    reason = degeneracy_reason(h, np.shape(pre), np.shape(post))
    if reason is not None:
        return f"degenerate homography: {reason}"
    return h


def _second_chances(
    reason: str, matches: Matches, pre: np.ndarray, post: np.ndarray, p_pre: np.ndarray, p_post: np.ndarray,
    matcher: Matcher, settings: AlignSettings, result: PairAlignment, h_prior: np.ndarray | None,
) -> np.ndarray | str:
    """ours, after its first fit was refused: two more matchings, each fitted under the same checks.

    First the same features with half the keypoints (cheap: one smaller
    LightGlue run), then PRE warped onto POST by the pelvis outline overlay and
    matched again (one more detection on PRE). The first that passes is kept;
    when none does, the reason names every attempt. Counts in ``result`` stay
    those of the first matching unless an attempt succeeds.
    """
    first_counts = (result.matches, result.inliers)
    sparser = getattr(matcher, "sparser", None)
    if settings.sparser_retry and sparser is not None:
        start = time.perf_counter()
        retry = sparser(matches)
        result.timings_ms["match_sparser"] = 1000 * (time.perf_counter() - start)
        if retry is not None:
            retried = _checked_fit(retry, pre, post, p_pre, p_post, "ours", settings, result, h_prior)
            if not isinstance(retried, str):
                result.retried_sparser = True
                return retried
            reason = f"{reason}; matched again with half the keypoints: {retried}"
    if settings.match_on_prior and settings.pelvis_prior:
        if h_prior is None:
            reason = f"{reason}; the pelvis outlines could not be overlaid to match again"
        else:
            start = time.perf_counter()
            guided = match_after_warp(matcher, pre, post, h_prior, first=matches)
            result.timings_ms["match_on_prior"] = 1000 * (time.perf_counter() - start)
            refit = _checked_fit(guided, pre, post, p_pre, p_post, "ours", settings, result, h_prior)
            if not isinstance(refit, str):
                result.matched_on_prior = True
                return refit
            reason = f"{reason}; matched again on the pelvis outline overlay: {refit}"
    result.matches, result.inliers = first_counts
    return reason


def align_pair(
    pre: np.ndarray, post: np.ndarray, p_pre: np.ndarray, p_post: np.ndarray, method: str, matcher: Matcher,
    settings: AlignSettings = AlignSettings(), metal_pre: np.ndarray | None = None,
    metal_post: np.ndarray | None = None, matches: Matches | None = None,
) -> PairAlignment:
    """Align PRE onto POST; never raises for bad images, returns ``failure`` instead.

    ``p_pre``/``p_post`` are pelvis probability maps on each image's grid (from
    the segmentation model, or any stand-in). ``metal_*`` default to an
    intensity-based implant mask. ``matches`` may be passed in when several
    methods are compared on the same putative matches.
    """
    if method not in ALIGN_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(ALIGN_METHODS)}")
    info = (AlgorithmInfo(f"hipnode-align-{method}", VERSION), AlgorithmInfo(matcher.name, VERSION))
    result = PairAlignment(homography=None, method=method, matcher=matcher.name, algorithms=info)
    for name, image, probability in (("pre-op", pre, p_pre), ("post-op", post, p_post)):
        if np.shape(probability) != np.shape(image):
            raise ValueError(f"{name} pelvis probability shape {np.shape(probability)} != image {np.shape(image)}")
        if not pelvis_found(probability, settings):
            result.failure = f"no pelvis found in the {name} image"
            return result
    if matches is None:
        start = time.perf_counter()
        matches = matcher.match(pre, post)
        result.timings_ms["match"] = 1000 * (time.perf_counter() - start)
    result.timings_ms.update({f"match_{k}": v for k, v in matches.timings_ms.items()})
    h_prior = None
    if method == "ours" and settings.pelvis_prior:  # computed once, used by every fit of the pair
        start = time.perf_counter()
        h_prior = outline_prior(p_pre, p_post)
        result.timings_ms["homography"] = 1000 * (time.perf_counter() - start)
    fitted = _checked_fit(matches, pre, post, p_pre, p_post, method, settings, result, h_prior)
    if isinstance(fitted, str) and method == "ours":
        fitted = _second_chances(fitted, matches, pre, post, p_pre, p_post, matcher, settings, result, h_prior)
    if isinstance(fitted, str):
        result.failure = fitted
        return result
    h = fitted
    if method == "ours" and settings.use_ecc:
        start = time.perf_counter()
        pelvis_pre, pelvis_post = np.asarray(p_pre) >= 0.5, np.asarray(p_post) >= 0.5
        metal_pre = metal_mask(pre, pelvis_pre) if metal_pre is None else metal_pre
        metal_post = metal_mask(post, pelvis_post) if metal_post is None else metal_post
        ecc = masked_ecc(pre, post, h, pelvis_pre, pelvis_post, metal_pre, metal_post)
        result.timings_ms["ecc"] = 1000 * (time.perf_counter() - start)
        if ecc.accepted and degeneracy_reason(ecc.homography, np.shape(pre), np.shape(post)) is None:
            h = ecc.homography
    result.homography = h
    return result
