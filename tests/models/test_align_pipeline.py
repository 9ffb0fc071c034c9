"""Alignment pipeline on pairs projected from a real pelvic label map, and its failure paths."""

from __future__ import annotations

import numpy as np
import pytest

from models.align.evaluate import mean_radial_error, smoothed_probability
from models.align.matching import SiftMatcher, get_matcher
from models.align.pipeline import align_pair
from tests.models.align_pairs import make_pair


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=1)


@pytest.fixture(scope="module")
def learned():
    return get_matcher("disk_lightglue")


@pytest.fixture(scope="module")
def pair_matches(pair, learned):
    return learned.match(pair.pre, pair.post)


def _probabilities(p):
    return smoothed_probability(p.pelvis_pre), smoothed_probability(p.pelvis_post)


@pytest.mark.parametrize("method", ["plain", "filtered", "weighted", "ours"])
def test_learned_matcher_aligns_pelvis(pair, learned, pair_matches, method: str) -> None:
    p_pre, p_post = _probabilities(pair)
    result = align_pair(pair.pre, pair.post, p_pre, p_post, method, learned, matches=pair_matches)
    assert result.failure is None, result.failure
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(result.homography, pair.points_pre, pair.points_post) / diagonal < 0.01
    assert result.inliers >= 12 and result.matches >= result.inliers


def test_weighting_beats_plain_when_femurs_move(learned) -> None:
    """Over a few pairs with independent femur motion, pelvis weighting reduces the error."""
    errors = {"plain": [], "weighted": []}
    for seed in (2, 3, 4):
        p = make_pair(seed=seed)
        p_pre, p_post = _probabilities(p)
        matches = learned.match(p.pre, p.post)
        for method in errors:
            result = align_pair(p.pre, p.post, p_pre, p_post, method, learned, matches=matches)
            assert result.failure is None, result.failure
            errors[method].append(mean_radial_error(result.homography, p.points_pre, p.points_post))
    assert np.mean(errors["weighted"]) < np.mean(errors["plain"])


def test_no_pelvis_found(pair) -> None:
    zeros = np.zeros_like(pair.pre)
    result = align_pair(pair.pre, pair.post, zeros, np.ones_like(pair.post), "weighted", SiftMatcher())
    assert result.homography is None and result.failure == "no pelvis found in the pre-op image"


def test_unrelated_images_give_too_few_inliers(pair) -> None:
    rng = np.random.default_rng(0)
    import cv2

    noise = cv2.GaussianBlur(rng.normal(size=pair.post.shape).astype(np.float32), (0, 0), 2.0)
    ones = np.ones_like(pair.post)
    result = align_pair(pair.pre, noise, ones, ones, "plain", SiftMatcher())
    assert result.homography is None
    assert result.failure is not None and result.failure.startswith(("too few matches", "too few RANSAC inliers"))


def test_degenerate_homography_is_refused(pair) -> None:
    """A 2.2x zoom is a valid match geometrically but not a same-patient pelvis pair."""
    import cv2

    rows, cols = pair.pre.shape
    zoom = np.array([[2.2, 0, -0.6 * cols], [0, 2.2, -0.6 * rows], [0, 0, 1.0]])
    post = cv2.warpPerspective(pair.pre, zoom, (cols, rows))
    ones = np.ones_like(pair.pre)
    result = align_pair(pair.pre, post, ones, ones, "plain", SiftMatcher())
    assert result.homography is None
    assert result.failure is not None and "scale" in result.failure, result.failure


def test_unknown_method_is_a_clear_error(pair) -> None:
    with pytest.raises(ValueError, match="unknown method"):
        align_pair(pair.pre, pair.post, pair.pre, pair.post, "affine", SiftMatcher())


def test_pelvis_map_alignment_recovers_outline_motion(pair) -> None:
    from models.align.refine import pelvis_map_alignment

    p_pre, p_post = _probabilities(pair)
    h = pelvis_map_alignment(p_pre, p_post)
    assert h is not None
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(h, pair.points_pre, pair.points_post) / diagonal < 0.01


def test_ours_refuses_without_matches_agreeing_with_the_outline(pair) -> None:
    """The outline prior alone never passes: image evidence must confirm it."""
    import cv2

    rng = np.random.default_rng(1)
    noise = cv2.GaussianBlur(rng.normal(size=pair.post.shape).astype(np.float32), (0, 0), 2.0)
    p_pre, p_post = _probabilities(pair)
    result = align_pair(pair.pre, noise, p_pre, p_post, "ours", SiftMatcher())
    assert result.homography is None and result.failure is not None


def test_ours_falls_back_to_the_features_when_the_outline_overlay_is_wrong(pair, learned, pair_matches) -> None:
    """A pelvis map displaced by a segmentation error gates out every match: the features still align.

    Thirty matches (fewer than the 40 inliers that used to skip the prior) so the
    fallback, not a feature-first shortcut, is what is tested. They are drawn from
    the confident matches (LightGlue confidence >= 0.1, the pre-session-21 filter):
    thirty drawn from all of them would be mostly the low-confidence ones, and the
    test is about the fallback, not about RANSAC on a few matches that are mostly wrong.
    """
    from models.align.matching import Matches

    p_pre, p_post = _probabilities(pair)
    shift = int(0.08 * np.hypot(*pair.post.shape))  # beyond the prior's 3% gate
    displaced = np.zeros_like(p_post)
    displaced[shift:, :] = p_post[:-shift, :]
    displaced = np.maximum(displaced, p_post)  # still covers the true pelvis, but its centroid moved
    on_pelvis = p_pre[pair_matches.points_pre[:, 1].astype(int), pair_matches.points_pre[:, 0].astype(int)] >= 0.5
    keep = np.flatnonzero(on_pelvis & (pair_matches.scores >= 0.1))
    chosen = np.random.default_rng(0).choice(keep, size=30, replace=False)
    few = Matches(pair_matches.points_pre[chosen], pair_matches.points_post[chosen], pair_matches.scores[chosen])
    result = align_pair(pair.pre, pair.post, p_pre, displaced, "ours", learned, matches=few)
    assert result.failure is None, result.failure
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(result.homography, pair.points_pre, pair.points_post) / diagonal < 0.01


class _RefusedFirst:
    """A matcher whose first matches are 5 points (refused) and whose sparser re-match is the real one."""

    name = "refused_first"

    def __init__(self, good_matches) -> None:
        self.good, self.calls = good_matches, 0

    def match(self, pre, post):
        return type(self.good)(self.good.points_pre[:5], self.good.points_post[:5], self.good.scores[:5],
                               features=self.good.features)

    def sparser(self, matches):
        self.calls += 1
        return self.good


def test_ours_retries_a_refused_matching_with_fewer_keypoints(pair, learned, pair_matches) -> None:
    p_pre, p_post = _probabilities(pair)
    matcher = _RefusedFirst(pair_matches)
    result = align_pair(pair.pre, pair.post, p_pre, p_post, "ours", matcher)
    assert matcher.calls == 1 and result.failure is None and result.retried_sparser
    assert result.to_json()["retried_with_fewer_keypoints"] is True
    assert result.matches == len(pair_matches) and result.inliers >= 12
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(result.homography, pair.points_pre, pair.points_post) / diagonal < 0.01
    # LinAlign's methods stay as published: no second matching.
    plain = align_pair(pair.pre, pair.post, p_pre, p_post, "weighted", matcher)
    assert matcher.calls == 1 and plain.failure == "too few matches (5 < 12)" and not plain.retried_sparser


def test_a_refused_retry_reports_both_reasons(pair, pair_matches) -> None:
    p_pre, p_post = _probabilities(pair)
    few = type(pair_matches)(pair_matches.points_pre[:5], pair_matches.points_post[:5], pair_matches.scores[:5])
    matcher = _RefusedFirst(few)
    result = align_pair(pair.pre, pair.post, p_pre, p_post, "ours", matcher)
    assert result.homography is None and not result.retried_sparser
    # Every attempt is named: the first matching, the sparser one, the one on the outline overlay (whose
    # warped film's border drops one of the five points).
    assert result.failure == ("too few matches (5 < 12); matched again with half the keypoints: too few matches "
                              "(5 < 12); matched again on the pelvis outline overlay: too few matches (4 < 12)")
    assert "retried_with_fewer_keypoints" not in result.to_json()
    assert "matched_on_pelvis_outline_overlay" not in result.to_json()


class _RefusedUntilWarped:
    """Refuses the films as they come (5 matches, no sparser half); matches PRE warped onto POST for real."""

    name = "refused_until_warped"

    def __init__(self, pre, learned) -> None:
        self.pre, self.learned, self.warped_calls = pre, learned, 0

    def match(self, pre, post, post_features=None):
        found = self.learned.match(pre, post, post_features=post_features)
        if pre is self.pre:
            return type(found)(found.points_pre[:5], found.points_post[:5], found.scores[:5], features=found.features)
        self.warped_calls += 1
        return found

    def sparser(self, matches):
        return None


def test_ours_matches_again_on_the_pelvis_outline_overlay(pair, learned) -> None:
    """A pair refused at first is matched again with PRE warped by the outline prior; its points come back to PRE."""
    p_pre, p_post = _probabilities(pair)
    matcher = _RefusedUntilWarped(pair.pre, learned)
    result = align_pair(pair.pre, pair.post, p_pre, p_post, "ours", matcher)
    assert result.failure is None, result.failure
    assert matcher.warped_calls == 1 and result.matched_on_prior and not result.retried_sparser
    assert result.to_json()["matched_on_pelvis_outline_overlay"] is True
    assert result.inliers >= 12 and "match_on_prior" in result.timings_ms
    diagonal = float(np.hypot(*pair.post.shape))
    assert mean_radial_error(result.homography, pair.points_pre, pair.points_post) / diagonal < 0.01
    # LinAlign's methods stay as published: refused, and no matching on the overlay.
    weighted = align_pair(pair.pre, pair.post, p_pre, p_post, "weighted", matcher)
    assert weighted.failure == "too few matches (5 < 12)" and matcher.warped_calls == 1


def test_matching_after_a_warp_maps_points_back_to_pre(pair, learned) -> None:
    from models.align.guided import match_after_warp, warp_onto

    _, cols = pair.post.shape
    shift = np.array([[1.0, 0.0, 0.25 * cols], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # PRE moved a quarter right
    warped, covered = warp_onto(pair.pre, shift, pair.post.shape)
    assert not covered[:, : int(0.25 * cols) - 1].any() and covered[:, int(0.25 * cols) + 1:].all()
    assert np.allclose(warped[:, : int(0.25 * cols) - 1], np.median(pair.pre))  # no black frame to match
    found = match_after_warp(learned, pair.pre, pair.pre, shift)  # the shifted PRE against PRE itself
    assert len(found) >= 12
    # Mapped back through the inverse warp: a match of the shifted film to the film is the identity.
    identity = np.linalg.norm(found.points_pre - found.points_post, axis=1) < 3.0
    assert identity.mean() > 0.9


class _FixedPoints:
    """Returns the same putative matches for any films: where they lie decides what survives."""

    name = "fixed"

    def __init__(self, points) -> None:
        self.points = np.asarray(points, dtype=np.float64)

    def match(self, pre, post):
        from models.align.matching import Matches

        return Matches(self.points.copy(), self.points.copy(), np.ones(len(self.points)))


def test_matches_on_the_warped_border_are_dropped(pair) -> None:
    """The warped film's border is an edge the warp made, not anatomy: matches within 1% of the diagonal go."""
    from models.align.guided import match_after_warp

    rows, cols = pair.post.shape
    edge = 0.25 * cols
    margin = 0.01 * np.hypot(rows, cols)
    shift = np.array([[1.0, 0.0, edge], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    xs = [edge - 2.0, edge + 0.5 * margin, edge + margin + 2.0, 0.75 * cols, cols + 10.0]
    matcher = _FixedPoints([[x, rows / 2] for x in xs])
    found = match_after_warp(matcher, pair.pre, pair.post, shift)
    # Outside the warp, on its border band and off the film are dropped; the two inside come back to PRE.
    np.testing.assert_allclose(found.points_pre[:, 0], [margin + 2.0, 0.5 * cols])
    np.testing.assert_allclose(found.points_post[:, 0], [edge + margin + 2.0, 0.75 * cols])


def test_disk_lightglue_sparser_reuses_the_best_half_of_the_keypoints(pair, learned, pair_matches) -> None:
    a, _ = pair_matches.features
    assert len(a.keypoints) == learned.max_keypoints  # the test film has more keypoints than the budget
    half = learned.sparser(pair_matches)
    assert half is not None and half.features[0].keypoints.shape[0] == learned.max_keypoints // 2
    np.testing.assert_array_equal(half.features[0].keypoints, a.keypoints[: learned.max_keypoints // 2])
    # Every sparser match is between keypoints of the top halves, mapped to full resolution.
    top_pre = (a.keypoints[: learned.max_keypoints // 2] + 0.5) / a.factor - 0.5
    assert len(half) >= 12
    assert np.isin(half.points_pre[:, 0], top_pre[:, 0]).all()
    assert learned.sparser(half) is None  # already the best half: no third matching
