"""Matcher features of analysed films, kept so a pair job runs DISK only on a film it has not seen.

DISK features depend on one film's pixels and the matcher's weights and settings
(``features_key``), never on the film it is later matched with. The study job
computes them for a film that may become a pre-op (after its results are queued,
off their path), and the pair job keeps what it computed; the pair job of a
post-op arriving later then only runs DISK on the post-op film (about 0.7 s of
its alignment on 2 cores). Cached features are the very arrays a fresh run makes,
so the matches, the homography and every object encoded from them are identical.

A cache, not a record (like :mod:`node.pipeline.artifacts`): a missing, stale or
unreadable file only means the features are computed again.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from models.align.matchers.lightglue_onnx import ImageFeatures
from models.align.matching import Matches
from storage.filestore import clean_uid


class FeatureStore:
    """``analysis/<uid>.features.npz`` files under the node's storage root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sop_instance_uid: str) -> Path:
        return self.root / "analysis" / f"{clean_uid(sop_instance_uid)}.features.npz"

    def load(self, sop_instance_uid: str, key: str) -> ImageFeatures | None:
        """The film's features for matcher ``key``, or None (missing, another matcher, unreadable)."""
        try:
            with np.load(self.path(sop_instance_uid)) as data:
                if str(data["key"]) != key:
                    return None
                cols, rows = (int(n) for n in data["size"])
                return ImageFeatures(data["keypoints"], data["descriptors"], float(data["factor"]), (cols, rows))
        except (OSError, ValueError, KeyError):
            return None

    def save(self, sop_instance_uid: str, key: str, features: ImageFeatures) -> None:
        """Write atomically (uncompressed: descriptors do not compress, and speed is the point)."""
        final = self.path(sop_instance_uid)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = final.parent / f".{uuid.uuid4().hex}.tmp.npz"
        np.savez(
            temp, key=np.asarray(key), keypoints=features.keypoints, descriptors=features.descriptors,
            factor=np.asarray(features.factor, np.float64), size=np.asarray(features.size, np.int64),
        )
        os.replace(temp, final)

    def ensure(self, matcher: Any, sop_instance_uid: str, pixels: np.ndarray) -> ImageFeatures:
        """The cached features, computed and kept first if need be."""
        found = self.load(sop_instance_uid, matcher.features_key)
        if found is None:
            found = matcher.features(pixels)
            self.save(sop_instance_uid, matcher.features_key, found)
        return found


class CachedFeaturesMatcher:
    """A feature-caching matcher (``features``/``features_key``) with its films' features kept in a store."""

    def __init__(self, matcher: Any, store: FeatureStore, pre_uid: str, post_uid: str) -> None:
        self.matcher = matcher
        self.name = matcher.name
        self._store = store
        self._uids = (pre_uid, post_uid)

    def match(self, pre: np.ndarray, post: np.ndarray) -> Matches:
        start = time.perf_counter()
        pre_features = self._store.ensure(self.matcher, self._uids[0], pre)
        post_features = self._store.ensure(self.matcher, self._uids[1], post)
        detected = time.perf_counter()
        matches = self.matcher.match(pre, post, pre_features=pre_features, post_features=post_features)
        matches.timings_ms["features"] = 1000 * (detected - start)  # what the cache left to compute
        return matches

    def sparser(self, matches: Matches) -> Matches | None:
        """The wrapped matcher's re-match with fewer keypoints (features travel in ``matches``), if it has one."""
        sparser = getattr(self.matcher, "sparser", None)
        return None if sparser is None else sparser(matches)


def supports_features(matcher: Any) -> bool:
    """Whether ``matcher`` can take precomputed features (the SIFT baseline cannot)."""
    return hasattr(matcher, "features") and hasattr(matcher, "features_key")
