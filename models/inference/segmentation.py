"""The segmentation model: preprocess -> predict -> postprocess on the source grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.algorithms.vocabulary import SEGMENTS
from models.inference.preprocess import GridTransform, map_to_source
from models.inference.runtime import WEIGHTS_ROOT, OnnxModel, run_session


@dataclass
class SegmentationOutput:
    """Working-grid probabilities (C, S, S) with the transform back to the source."""

    work_probabilities: np.ndarray
    transform: GridTransform
    labels: tuple[str, ...]

    def work_map(self, name: str) -> np.ndarray:
        return self.work_probabilities[self.labels.index(name)]

    def source_probability(self, name: str) -> np.ndarray:
        """One segment's probability resampled to the source pixel grid, in [0, 1]."""
        return np.clip(map_to_source(self.work_map(name), self.transform), 0.0, 1.0)

    def source_masks(self, threshold: float = 0.5) -> dict[str, np.ndarray]:
        """Boolean masks on the source pixel grid (bilinear probabilities > threshold)."""
        return {name: map_to_source(self.work_probabilities[i], self.transform) > threshold
                for i, name in enumerate(self.labels)}


class SegmentationModel(OnnxModel):
    """Multi-label U-Net served by onnxruntime (session created on first use)."""

    task = "segment"
    labels = SEGMENTS
    description = "segmentation model with the spec's segments"

    def __init__(self, weights_dir: str | Path = WEIGHTS_ROOT / "segment") -> None:
        super().__init__(weights_dir)

    def predict(self, work_image: np.ndarray) -> np.ndarray:
        return run_session(self.manifest, work_image)[0]

    def postprocess(self, probabilities: np.ndarray, tf: GridTransform) -> SegmentationOutput:
        return SegmentationOutput(probabilities.astype(np.float32), tf, self.manifest.labels)

    def __call__(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> SegmentationOutput:
        work, tf = self.preprocess(pixels, spacing_mm)
        return self.postprocess(self.predict(work), tf)
