"""Kept matcher features: the pair job's matches are the same with them as without (the objects stay identical)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.align.matching import get_matcher
from node.pipeline.features import CachedFeaturesMatcher, FeatureStore, supports_features
from tests.models.align_pairs import make_pair


@pytest.fixture(scope="module")
def pair():
    return make_pair(seed=6, femur_motion=False, implant=False)


def test_kept_features_give_the_same_matches(pair, tmp_path: Path) -> None:
    matcher = get_matcher("disk_lightglue")
    fresh = matcher.match(pair.pre, pair.post)
    store = FeatureStore(tmp_path)
    store.ensure(matcher, "1.2.3", pair.pre)  # the study job keeps the pre-op's features
    assert store.path("1.2.3").is_file() and not store.path("1.2.4").exists()
    cached = CachedFeaturesMatcher(matcher, store, "1.2.3", "1.2.4").match(pair.pre, pair.post)
    assert store.path("1.2.4").is_file()  # the pair job keeps what it computed
    again = CachedFeaturesMatcher(matcher, store, "1.2.3", "1.2.4").match(pair.pre, pair.post)
    for result in (cached, again):
        assert np.array_equal(result.points_pre, fresh.points_pre)
        assert np.array_equal(result.points_post, fresh.points_post)
        assert np.array_equal(result.scores, fresh.scores)


def test_features_of_another_matcher_setting_are_not_used(pair, tmp_path: Path) -> None:
    matcher = get_matcher("disk_lightglue")
    store = FeatureStore(tmp_path)
    store.save("1.2.3", "disk:other-weights", matcher.features(pair.pre))
    assert store.load("1.2.3", matcher.features_key) is None
    assert store.load("1.2.9", matcher.features_key) is None  # none kept
    store.path("1.2.3").write_bytes(b"not an npz")
    assert store.load("1.2.3", matcher.features_key) is None


def test_sift_takes_no_features() -> None:
    assert supports_features(get_matcher("disk_lightglue")) and not supports_features(get_matcher("sift"))
