"""The DLT variants, RANSAC wrapper and degeneracy checks of ``models.align.homography``."""

from __future__ import annotations

import numpy as np
import pytest

from models.align.homography import (
    HomographyError,
    apply_homography,
    correspondence_weights,
    degeneracy_reason,
    filtered_dlt,
    fit_geometric,
    normalization_matrix,
    normalized_dlt,
    ransac_inliers,
    weighted_normalized_dlt,
)
from models.align.refine import irls_weighted_dlt

H_TRUE = np.array([[1.05, 0.04, 12.0], [-0.03, 0.98, -8.0], [2e-5, -1e-5, 1.0]])
SHAPE = (800, 1000)


def _points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform([50, 50], [950, 750], size=(n, 2))


def test_normalization_has_zero_mean_unit_spread() -> None:
    pts = _points(50)
    t = normalization_matrix(pts)
    normalized = apply_homography(t, pts)
    assert np.allclose(normalized.mean(axis=0), 0, atol=1e-12)
    assert np.allclose(normalized.std(axis=0), 1, atol=1e-12)


def test_plain_dlt_recovers_exact_homography() -> None:
    src = _points(30)
    h = normalized_dlt(src, apply_homography(H_TRUE, src))
    assert np.allclose(h, H_TRUE, rtol=1e-8, atol=1e-9)


def test_weighted_dlt_with_unit_weights_equals_plain() -> None:
    rng = np.random.default_rng(1)
    src = _points(40)
    dst = apply_homography(H_TRUE, src) + rng.normal(0, 1.0, size=src.shape)
    assert np.allclose(weighted_normalized_dlt(src, dst, np.ones(40)), normalized_dlt(src, dst))


def test_weighted_dlt_multiplies_both_rows_by_weight() -> None:
    """Zero weight removes a correspondence; scaling all weights changes nothing."""
    src = _points(30)
    dst = apply_homography(H_TRUE, src)
    dst[:5] += 80.0  # five gross outliers (e.g. matches on a moved femur)
    weights = np.ones(30)
    weights[:5] = 0.0
    h = weighted_normalized_dlt(src, dst, weights)
    assert np.allclose(apply_homography(h, src[5:]), dst[5:], atol=1e-6)
    assert np.allclose(weighted_normalized_dlt(src, dst, 3.0 * weights), h)
    # the plain DLT is pulled off by the outliers
    assert np.abs(apply_homography(normalized_dlt(src, dst), src[5:]) - dst[5:]).max() > 5.0


def test_weighted_dlt_downweights_instead_of_dropping() -> None:
    src = _points(30)
    dst = apply_homography(H_TRUE, src)
    dst[:5] += 80.0
    weights = np.ones(30)
    weights[:5] = 0.05
    error_weighted = np.abs(apply_homography(weighted_normalized_dlt(src, dst, weights), src[5:]) - dst[5:]).max()
    error_plain = np.abs(apply_homography(normalized_dlt(src, dst), src[5:]) - dst[5:]).max()
    assert error_weighted < 0.2 * error_plain


def test_correspondence_weights_are_product_of_probabilities() -> None:
    p_pre = np.zeros(SHAPE, np.float32)
    p_post = np.zeros(SHAPE, np.float32)
    p_pre[:, :500] = 0.8
    p_post[:400, :] = 0.5
    src = np.array([[100.0, 100.0], [700.0, 100.0]])
    dst = np.array([[100.0, 100.0], [100.0, 600.0]])
    assert np.allclose(correspondence_weights(src, dst, p_pre, p_post), [0.4, 0.0])


def test_filtered_dlt_uses_only_pelvis_matches() -> None:
    src = _points(30)
    dst = apply_homography(H_TRUE, src)
    dst[:6] += 50.0
    p = np.ones(30)
    p[:6] = 0.3
    h = filtered_dlt(src, dst, p, np.ones(30))
    assert np.allclose(h, H_TRUE, atol=1e-6)
    with pytest.raises(HomographyError, match="on the pelvis"):
        filtered_dlt(src, dst, np.full(30, 0.2), np.ones(30))


def test_ransac_rejects_outliers() -> None:
    rng = np.random.default_rng(2)
    src = _points(100)
    dst = apply_homography(H_TRUE, src) + rng.normal(0, 0.5, size=src.shape)
    dst[:30] = rng.uniform([0, 0], [1000, 800], size=(30, 2))
    inliers = ransac_inliers(src, dst, threshold_px=3.0)
    assert inliers[30:].mean() > 0.95
    assert inliers[:30].mean() < 0.1


def test_irls_recovers_from_residual_outliers() -> None:
    rng = np.random.default_rng(3)
    src = _points(80)
    dst = apply_homography(H_TRUE, src) + rng.normal(0, 0.3, size=src.shape)
    dst[:12] += rng.normal(0, 6.0, size=(12, 2))  # moderate outliers RANSAC might keep
    h0 = normalized_dlt(src, dst)
    h = irls_weighted_dlt(src, dst, np.ones(80), h0)
    truth = apply_homography(H_TRUE, src[12:])
    assert np.abs(apply_homography(h, src[12:]) - truth).mean() < 0.5 * np.abs(
        apply_homography(h0, src[12:]) - truth).mean()


def test_geometric_fit_not_worse_than_dlt() -> None:
    rng = np.random.default_rng(4)
    src = _points(40)
    dst = apply_homography(H_TRUE, src) + rng.normal(0, 2.0, size=src.shape)
    rms = lambda h: np.sqrt(np.mean(np.sum((apply_homography(h, src) - dst) ** 2, axis=1)))  # noqa: E731
    assert rms(fit_geometric(src, dst)) <= rms(normalized_dlt(src, dst)) + 1e-9


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (None, "no homography"),
        (np.full((3, 3), np.nan), "non-finite"),
        (np.diag([-1.0, 1.0, 1.0]), "mirrors"),
        (np.diag([3.0, 3.0, 1.0]), "scale"),
        (np.diag([1.5, 0.7, 1.0]), "anisotropy"),
        (np.array([[1.0, 0, 0], [0, 1.0, 0], [-0.002, 0, 1.0]]), "horizon"),
        (np.array([[1.0, 0, 900.0], [0, 1.0, 0], [0, 0, 1.0]]), "corners move"),
        (np.array([[1.0, 0, 0], [0, 1.0, 0], [1e-3, 1e-3, 1.0]]), "area"),
    ],
)
def test_degeneracy_reasons(bad: np.ndarray | None, fragment: str) -> None:
    reason = degeneracy_reason(bad, SHAPE, SHAPE)
    assert reason is not None and fragment in reason


def test_sane_homography_passes_degeneracy_check() -> None:
    assert degeneracy_reason(H_TRUE, SHAPE, SHAPE) is None
    assert degeneracy_reason(np.eye(3), SHAPE, SHAPE) is None


def test_bad_input_raises_clear_error() -> None:
    with pytest.raises(HomographyError, match="shape"):
        normalized_dlt(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(HomographyError, match="4 are needed"):
        normalized_dlt(_points(3), _points(3))
    collinear = np.c_[np.arange(10.0), np.full(10, 5.0)]
    with pytest.raises(HomographyError, match="collinear"):
        normalized_dlt(collinear, collinear)


def test_coverage_weights_even_out_clusters() -> None:
    from models.align.refine import coverage_weights

    cluster = np.full((9, 2), 100.0) + np.arange(9)[:, None] * 0.1
    lone = np.array([[500.0, 500.0]])
    w = coverage_weights(np.vstack([cluster, lone]), radius_px=10.0)
    assert np.allclose(w[:9], 1 / 9) and np.isclose(w[9], 1.0)
    assert np.isclose(w[:9].sum(), w[9])  # the cluster counts as much as the lone point


def test_weighted_geometric_refine_ignores_zero_weight_and_bounds_outliers() -> None:
    from models.align.refine import weighted_geometric_refine

    rng = np.random.default_rng(5)
    src = _points(60)
    dst = apply_homography(H_TRUE, src) + rng.normal(0, 0.5, size=src.shape)
    dst[:6] += 40.0
    weights = np.ones(60)
    weights[:3] = 0.0  # three outliers removed by weight, three left to the robust loss
    h = weighted_geometric_refine(src, dst, weights, normalized_dlt(src, dst), scale_px=2.0)
    assert np.abs(apply_homography(h, src[6:]) - apply_homography(H_TRUE, src[6:])).mean() < 0.5
