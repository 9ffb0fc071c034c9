"""DISK + LightGlue served by onnxruntime (weights exported by ``export_disk_lightglue``).

The DISK graph returns its top-K keypoints (NMS inside the graph), LightGlue
returns the log assignment matrix, and the mutual-nearest + threshold filter
runs here in numpy. Sessions use CUDA when onnxruntime offers it, else CPU, and
are created once per process.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from models.align.matching import Matches, prepare, to_full_resolution

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"
DISK_DIR = WEIGHTS / "disk" / "1.0.0"
GLUE_DIR = WEIGHTS / "lightglue_disk" / "1.0.0"


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

    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), sess_options=options, providers=providers)


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


class DiskLightGlueMatcher:
    """Learned matcher: DISK keypoints (top 2048 per image) matched by LightGlue."""

    name = "disk_lightglue"

    def __init__(self, max_side: int = 512, max_keypoints: int = 1024, threshold: float = 0.1) -> None:
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

    def _features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, tuple[int, int]]:
        prepared, factor = prepare(image, self.max_side)
        rows, cols = prepared.shape
        padded = np.zeros((1, 1, -(-rows // 16) * 16, -(-cols // 16) * 16), dtype=np.float32)
        padded[0, 0, :rows, :cols] = prepared.astype(np.float32) / 255.0
        keypoints, scores, descriptors = self._disk.run(None, {"image": padded})
        inside = (scores > 0) & (keypoints[:, 0] < cols) & (keypoints[:, 1] < rows)
        keep = np.flatnonzero(inside)[: self.max_keypoints]  # topk output is sorted by score
        return keypoints[keep], descriptors[keep], factor, (cols, rows)

    @staticmethod
    def _normalize(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        size_array = np.asarray(size, dtype=np.float32)
        return ((keypoints - size_array / 2) / (size_array.max() / 2)).astype(np.float32)[None]

    def match(self, pre: np.ndarray, post: np.ndarray) -> Matches:
        start = time.perf_counter()
        k0, d0, f0, s0 = self._features(pre)
        k1, d1, f1, s1 = self._features(post)
        detected = time.perf_counter()
        if len(k0) < 8 or len(k1) < 8:
            return Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0),
                           {"features": 1000 * (detected - start), "matching": 0.0})
        (log_assignment,) = self._glue.run(None, {
            "kpts0": self._normalize(k0, s0), "kpts1": self._normalize(k1, s1),
            "desc0": d0[None].astype(np.float32), "desc1": d1[None].astype(np.float32),
        })
        i0, i1, confidence = mutual_matches(log_assignment, self.threshold)
        done = time.perf_counter()
        return Matches(
            points_pre=to_full_resolution(k0[i0], f0),
            points_post=to_full_resolution(k1[i1], f1),
            scores=confidence.astype(np.float64),
            timings_ms={"features": 1000 * (detected - start), "matching": 1000 * (done - detected)},
        )
