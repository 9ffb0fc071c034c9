"""Feature matching between a pre-op and a post-op radiograph.

A matcher takes two float32 grey-scale images (bright = dense, any range) and
returns putative correspondences in full-resolution pixel (x, y). The classical
baseline (SIFT on CLAHE-equalized images, Lowe ratio test, mutual check) lives
here; learned matchers served by onnxruntime live in :mod:`models.align.matchers`
and are reached through :func:`get_matcher`, which caches them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np


@dataclass
class Matches:
    """Putative correspondences ``points_pre[i] <-> points_post[i]`` in pixel (x, y)."""

    points_pre: np.ndarray  # (N, 2) float64
    points_post: np.ndarray  # (N, 2) float64
    scores: np.ndarray  # (N,) higher is better
    timings_ms: dict[str, float] = field(default_factory=dict)
    features: tuple[Any, Any] | None = None  # the matcher's per-film features, for a re-match without detection

    def __len__(self) -> int:
        return len(self.points_pre)


class Matcher(Protocol):
    """Anything that matches two radiographs."""

    name: str

    def match(self, pre: np.ndarray, post: np.ndarray) -> Matches: ...


def to_uint8(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Window a radiograph to 8 bits between robust percentiles (ignores metal outliers)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"a 2-D image is expected, got shape {image.shape}")
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        raise ValueError("image has no finite pixels")
    low, high = np.percentile(finite, [low_pct, high_pct])
    if high - low < 1e-6:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(image, nan=float(low)) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def clahe(image8: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization: evens out exposure between exams."""
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(image8)


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Area-downscale so the longer side is at most ``max_side``; returns (image, factor <= 1)."""
    rows, cols = image.shape[:2]
    factor = min(1.0, max_side / float(max(rows, cols)))
    if factor >= 1.0:
        return image, 1.0
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def to_full_resolution(points: np.ndarray, factor: float) -> np.ndarray:
    """Pixel-centre-correct map from a ``downscale``-d grid back to the original grid."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / factor - 0.5


def prepare(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """8-bit, CLAHE-equalized and downscaled copy of a radiograph, with its scale factor."""
    small, factor = downscale(np.asarray(image, dtype=np.float32), max_side)
    return clahe(to_uint8(small)), factor


class SiftMatcher:
    """SIFT + CLAHE + Lowe ratio test + mutual nearest neighbour (OpenCV)."""

    name = "sift"

    def __init__(self, max_side: int = 1024, max_features: int = 4000, ratio: float = 0.8) -> None:
        self.max_side = max_side
        self.ratio = ratio
        self._sift = cv2.SIFT_create(nfeatures=max_features)

    def _detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        prepared, factor = prepare(image, self.max_side)
        keypoints, descriptors = self._sift.detectAndCompute(prepared, None)
        points = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
        if descriptors is None:
            descriptors = np.zeros((0, 128), dtype=np.float32)
        return points, descriptors, factor

    def match(self, pre: np.ndarray, post: np.ndarray) -> Matches:
        import time

        start = time.perf_counter()
        points_a, desc_a, factor_a = self._detect(pre)
        points_b, desc_b, factor_b = self._detect(post)
        detected = time.perf_counter()
        empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))
        if len(desc_a) < 2 or len(desc_b) < 2:
            empty.timings_ms = {"features": 1000 * (detected - start), "matching": 0.0}
            return empty
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        forward = matcher.knnMatch(desc_a, desc_b, k=2)
        backward = matcher.knnMatch(desc_b, desc_a, k=1)
        best_back = {m[0].queryIdx: m[0].trainIdx for m in backward if m}
        pairs: list[tuple[int, int, float]] = []
        for candidates in forward:
            if len(candidates) < 2:
                continue
            first, second = candidates
            if first.distance < self.ratio * second.distance and best_back.get(first.trainIdx) == first.queryIdx:
                pairs.append((first.queryIdx, first.trainIdx, 1.0 - first.distance / max(second.distance, 1e-9)))
        done = time.perf_counter()
        if not pairs:
            empty.timings_ms = {"features": 1000 * (detected - start), "matching": 1000 * (done - detected)}
            return empty
        index = np.array(pairs)
        ia, ib = index[:, 0].astype(int), index[:, 1].astype(int)
        return Matches(
            points_pre=to_full_resolution(points_a[ia], factor_a),
            points_post=to_full_resolution(points_b[ib], factor_b),
            scores=index[:, 2],
            timings_ms={"features": 1000 * (detected - start), "matching": 1000 * (done - detected)},
        )


MATCHERS: tuple[str, ...] = ("sift", "disk_lightglue")


@functools.lru_cache(maxsize=4)
def get_matcher(name: str) -> Matcher:
    """The named matcher, built once per process (ONNX sessions are expensive to create)."""
    if name == "sift":
        return SiftMatcher()
    if name == "disk_lightglue":
        from models.align.matchers.lightglue_onnx import DiskLightGlueMatcher

        return DiskLightGlueMatcher()
    raise ValueError(f"unknown matcher {name!r}; choose one of {', '.join(MATCHERS)}")
