"""The SGR landmark model: preprocess -> predict -> postprocess on the source grid.

The network returns exactly one coordinate per landmark; whether the landmark
is present is decided by the analyzer from the segmentation (a femur point
needs that femur, implant points an implant). The disc peaks are kept as
``presence`` for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.algorithms.vocabulary import LANDMARKS
from models.inference.preprocess import GridTransform
from models.inference.runtime import WEIGHTS_ROOT, OnnxModel, run_session


@dataclass
class LandmarkOutput:
    """Per landmark: source-grid (x, y), working-grid (x, y) and disc peak probability."""

    source_xy: dict[str, tuple[float, float]]
    work_xy: dict[str, tuple[float, float]]
    presence: dict[str, float]


class LandmarkModel(OnnxModel):
    """Segmentation-guided coordinate regression served by onnxruntime."""

    task = "landmarks"
    labels = LANDMARKS
    description = "landmark model with the spec's landmarks"

    def __init__(self, weights_dir: str | Path = WEIGHTS_ROOT / "landmarks") -> None:
        super().__init__(weights_dir)

    def predict(self, work_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        discs, coords = run_session(self.manifest, work_image)
        return discs, coords

    def postprocess(self, discs: np.ndarray, coords: np.ndarray, tf: GridTransform) -> LandmarkOutput:
        src = tf.to_source(coords)
        labels = self.manifest.labels
        return LandmarkOutput(
            source_xy={n: (float(src[i, 0]), float(src[i, 1])) for i, n in enumerate(labels)},
            work_xy={n: (float(coords[i, 0]), float(coords[i, 1])) for i, n in enumerate(labels)},
            presence={n: float(discs[i].max()) for i, n in enumerate(labels)},
        )

    def __call__(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> LandmarkOutput:
        work, tf = self.preprocess(pixels, spacing_mm)
        return self.postprocess(*self.predict(work), tf)
