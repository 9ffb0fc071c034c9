"""The segmentation model: preprocess -> predict -> postprocess on the source grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.algorithms.vocabulary import SEGMENTS
from models.inference.preprocess import GridTransform, map_to_source, to_work_grid
from models.inference.runtime import WEIGHTS_ROOT, Manifest, ModelUnavailable, run_session


@dataclass
class SegmentationOutput:
    """Working-grid probabilities (C, S, S) with the transform back to the source."""

    work_probabilities: np.ndarray
    transform: GridTransform
    labels: tuple[str, ...]

    def work_map(self, name: str) -> np.ndarray:
        return self.work_probabilities[self.labels.index(name)]

    def source_masks(self, threshold: float = 0.5) -> dict[str, np.ndarray]:
        """Boolean masks on the source pixel grid (bilinear probabilities > threshold)."""
        return {name: map_to_source(self.work_probabilities[i], self.transform) > threshold
                for i, name in enumerate(self.labels)}


class SegmentationModel:
    """Multi-label U-Net served by onnxruntime (session created on first use)."""

    def __init__(self, weights_dir: str | Path = WEIGHTS_ROOT / "segment") -> None:
        self.weights_dir = Path(weights_dir)
        self._manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            m = Manifest.read(self.weights_dir)
            if m.task != "segment" or tuple(m.labels) != SEGMENTS:
                raise ModelUnavailable(f"{self.weights_dir} is not a segmentation model with the spec's segments")
            self._manifest = m
        return self._manifest

    def preprocess(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> tuple[np.ndarray, GridTransform]:
        return to_work_grid(pixels, spacing_mm, self.manifest.work_size)

    def predict(self, work_image: np.ndarray) -> np.ndarray:
        return run_session(self.manifest, work_image)[0]

    def postprocess(self, probabilities: np.ndarray, tf: GridTransform) -> SegmentationOutput:
        return SegmentationOutput(probabilities.astype(np.float32), tf, self.manifest.labels)

    def __call__(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> SegmentationOutput:
        work, tf = self.preprocess(pixels, spacing_mm)
        return self.postprocess(self.predict(work), tf)
