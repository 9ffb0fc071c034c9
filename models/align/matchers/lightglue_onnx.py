"""DISK + LightGlue served by onnxruntime (weights exported by ``export_disk_lightglue``).

The DISK graph returns its top-K keypoints (NMS inside the graph), LightGlue
returns the log assignment matrix, and the mutual-nearest + threshold filter
runs here in numpy. Sessions use CUDA when onnxruntime offers it, else CPU, and
are created once per process. An image's DISK features depend on that image
alone, so a caller may compute them ahead (:meth:`DiskLightGlueMatcher.features`)
and hand them to :meth:`DiskLightGlueMatcher.match`: the node keeps a pre-op
film's features so its later pair job only runs DISK on the post-op film.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.align.matching import Matches, prepare, to_full_resolution

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
DISK_DIR = WEIGHTS / "disk" / "1.1.0"
GLUE_DIR = WEIGHTS / "lightglue_disk" / "1.1.0"


class WeightsError(RuntimeError):
    """ONNX weights are missing or do not match their manifest."""


def _verified_model(directory: Path) -> tuple[Path, dict[str, object]]:
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        raise WeightsError(f"missing {manifest_path}")
    manifest = json.loads(manifest_path.read_text())
    model = directory / str(manifest["file"])
    if not model.is_file():
        raise WeightsError(f"missing {model}")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    if digest != manifest["sha256"]:
        raise WeightsError(f"{model} does not match its manifest sha256")
    return model, manifest


def _session(model: Path):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    from models.inference.runtime import session_options

    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(model), sess_options=session_options(), providers=providers)


def mutual_matches(log_assignment: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LightGlue's ``filter_matches``: mutual best in the (M, N) block with exp(score) > threshold."""
    scores = log_assignment[0, :-1, :-1]
    if scores.size == 0:
        empty = np.zeros(0, dtype=int)
        return empty, empty, np.zeros(0)
    best0 = scores.argmax(axis=1)
    best1 = scores.argmax(axis=0)
    index0 = np.arange(len(best0))
    mutual = best1[best0] == index0
    confidence = np.exp(scores[index0, best0])
    valid = mutual & (confidence > threshold)
    return index0[valid], best0[valid], confidence[valid]


@dataclass(frozen=True)
class ImageFeatures:
    """DISK keypoints of one image on its prepared (downscaled) grid, as LightGlue takes them."""

    keypoints: np.ndarray  # (K, 2) float32, prepared-grid (x, y)
    descriptors: np.ndarray  # (K, 128) float32
    factor: float  # prepared grid / full resolution
    size: tuple[int, int]  # prepared grid (cols, rows)

    def top(self, count: int) -> ImageFeatures:
        """The ``count`` best keypoints: DISK returns them sorted by score, so a prefix."""
        return ImageFeatures(self.keypoints[:count], self.descriptors[:count], self.factor, self.size)


# LightGlue keeps a mutual best match only above this confidence. Its default, 0.1, was
# set for photographs; on radiograph pairs whose exposure, collimation and pose all
# changed, correct matches are often less confident, and RANSAC plus the pelvis-outline
# gate reject the extra outliers. Chosen on training-anatomy pairs (0.1 -> 0.02: 3 -> 2
# failures of 24, 1.197x -> 1.171x the best possible homography); 0.001 refused fewer
# training pairs but let one garbage warp through on the real-CT pairs (docs/align.md,
# session 21).
MATCH_THRESHOLD = 0.02


class DiskLightGlueMatcher:
    """Learned matcher: DISK keypoints (top 2048 per image) matched by LightGlue."""

    name = "disk_lightglue"

    def __init__(self, max_side: int = 512, max_keypoints: int = 1024, threshold: float = MATCH_THRESHOLD) -> None:
        disk_model, self.disk_manifest = _verified_model(DISK_DIR)
        glue_model, self.glue_manifest = _verified_model(GLUE_DIR)
        self.max_side = max_side
        self.max_keypoints = max_keypoints
        self.threshold = threshold
        self._disk = _session(disk_model)
        self._glue = _session(glue_model)

    @property
    def providers(self) -> list[str]:
        return list(self._disk.get_providers())

    @property
    def features_key(self) -> str:
        """What :meth:`features` depends on besides the image: a cache of features must match it."""
        return f"disk:{self.disk_manifest['sha256']}:side{self.max_side}:top{self.max_keypoints}"

    def features(self, image: np.ndarray) -> ImageFeatures:
        """DISK keypoints and descriptors of one radiograph (the best ``max_keypoints``)."""
        prepared, factor = prepare(image, self.max_side)
        rows, cols = prepared.shape
        padded = np.zeros((1, 1, -(-rows // 16) * 16, -(-cols // 16) * 16), dtype=np.float32)
        padded[0, 0, :rows, :cols] = prepared.astype(np.float32) / 255.0
        keypoints, scores, descriptors = self._disk.run(None, {"image": padded})
        inside = (scores > 0) & (keypoints[:, 0] < cols) & (keypoints[:, 1] < rows)
        keep = np.flatnonzero(inside)[: self.max_keypoints]  # topk output is sorted by score
        return ImageFeatures(keypoints[keep], descriptors[keep], factor, (cols, rows))

    @staticmethod
    def _normalize(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        size_array = np.asarray(size, dtype=np.float32)
        return ((keypoints - size_array / 2) / (size_array.max() / 2)).astype(np.float32)[None]

    def match(
        self,
        pre: np.ndarray,
        post: np.ndarray,
        pre_features: ImageFeatures | None = None,
        post_features: ImageFeatures | None = None,
    ) -> Matches:
        """Match two radiographs; features given for either (from :meth:`features`) are not recomputed."""
        start = time.perf_counter()
        a = pre_features if pre_features is not None else self.features(pre)
        b = post_features if post_features is not None else self.features(post)
        detected = time.perf_counter()
        matches = self._glue_match(a, b)
        matches.timings_ms["features"] = 1000 * (detected - start)
        return matches

    def sparser(self, matches: Matches) -> Matches | None:
        """The same films matched again with the best half of the keypoints, or None if there is no such half.

        On hard pairs (exposure, collimation and pose all changed) LightGlue
        matched more keypoints worse, not better: on held-out and training
        pairs whose 1024-keypoint matching was refused, the top 512 of the same
        DISK keypoints were sometimes matched well (docs/align.md, session 21).
        The DISK features are reused, so this costs one smaller LightGlue run.
        """
        if matches.features is None:
            return None
        a, b = matches.features
        count = self.max_keypoints // 2
        if len(a.keypoints) <= count and len(b.keypoints) <= count:
            return None
        return self._glue_match(a.top(count), b.top(count))

    def _glue_match(self, a: ImageFeatures, b: ImageFeatures) -> Matches:
        """LightGlue on two films' features, mutual matches above the threshold, in full-resolution pixels."""
        start = time.perf_counter()
        if len(a.keypoints) < 8 or len(b.keypoints) < 8:
            return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), {"matching": 0.0}, features=(a, b))
        (log_assignment,) = self._glue.run(None, {
            "kpts0": self._normalize(a.keypoints, a.size), "kpts1": self._normalize(b.keypoints, b.size),
            "desc0": a.descriptors[None].astype(np.float32), "desc1": b.descriptors[None].astype(np.float32),
        })
        i0, i1, confidence = mutual_matches(log_assignment, self.threshold)
        return Matches(
            points_pre=to_full_resolution(a.keypoints[i0], a.factor),
            points_post=to_full_resolution(b.keypoints[i1], b.factor),
            scores=confidence.astype(np.float64),
            timings_ms={"matching": 1000 * (time.perf_counter() - start)},
            features=(a, b),
        )
