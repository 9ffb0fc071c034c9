"""The fine stage: landmarks and hip segments re-read on crops at sub-millimetre resolution.

The coarse models see the radiograph at about 3 mm per pixel; these two read
a window around each coarse estimate on a finer grid (``models/inference/crops.py``):

* :class:`FineLandmarkModel` re-locates each present landmark in a 72 mm crop
  at 0.75 mm per pixel centred on the coarse point (one crop per landmark, all
  run as one batch);
* :class:`FineHipModel` re-segments femoral head, acetabular roof, joint space
  and implant in a crop around each hip's head centre, at 0.55 mm per pixel;
* :class:`FinePelvisModel` re-segments the pelvis in a crop around each
  ischial tuberosity, at 0.4 mm per pixel, for the tuberosity rule
  (``models/algorithms/pelvic_extremes.py``), which reads the mask's caudal extreme.

Left-side crops are mirrored so one network serves both hips. Both are
optional: without their weights (or without a pixel spacing, since crops are
cut in mm) the analyzer keeps the coarse result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.inference.crops import (
    FINE_HIP_SEGMENTS,
    FINE_LANDMARK_TYPES,
    FINE_PELVIS_SEGMENTS,
    FINE_SEGMENTATION,
    Crop,
    Level,
    landmark_type,
    make_level,
)
from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable, OnnxModel, run_batch

Point = tuple[float, float]

DEFAULT_MASK_THRESHOLD = 0.5
"""Where a fine segment's mask starts when its manifest gives no calibrated threshold."""


class _CropModel(OnnxModel):
    """A fine model: its crop grid comes from the manifest's ``crop`` entry."""

    @property
    def mm_per_px(self) -> float:
        try:
            return float(self.manifest.raw["crop"]["mm_per_px"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailable(f"{self.weights_dir}/manifest.json has no crop.mm_per_px: not a fine-stage model") from exc

    @property
    def size(self) -> int:
        return int(self.manifest.work_size)

    def level(self, pixels: np.ndarray, spacing_mm: tuple[float, float]) -> Level:
        return make_level(pixels, spacing_mm, self.mm_per_px)


class FineLandmarkModel(_CropModel):
    """Per-landmark crops -> SGR coordinates, read from the crop's landmark-type channel."""

    task = "landmarks-fine"
    labels = FINE_LANDMARK_TYPES
    description = "fine landmark model with one channel per landmark type"

    def __init__(self, weights_dir: str | Path = WEIGHTS_ROOT / "landmarks_fine") -> None:
        super().__init__(weights_dir)

    def refine(self, level: Level, estimates: dict[str, Point], passes: int = 1) -> dict[str, Point]:
        """Source-grid positions of ``estimates`` (source px) re-read on crops; each pass re-centres the crops."""
        names = [n for n in estimates if landmark_type(n)[0] in self.labels]
        points = {n: level.from_source(np.array([estimates[n]]))[0] for n in names}
        for _ in range(max(1, passes)):
            if not names:
                break
            crops = [Crop.around(points[n], self.size, mirror=landmark_type(n)[1] == "left") for n in names]
            _, coords = run_batch(self.manifest, np.stack([c.cut(level.image) for c in crops]))
            for i, (name, crop) in enumerate(zip(names, crops)):
                channel = self.labels.index(landmark_type(name)[0])
                points[name] = crop.to_level(coords[i, channel][None])[0]
        return {n: tuple(float(v) for v in level.to_source(points[n][None])[0]) for n in names}  # type: ignore[misc]


@dataclass
class FineWindow:
    """Fine probabilities of one side's crop on a source-pixel window ``(x0, y0, x1, y1)``, end-exclusive."""

    side: str
    window: tuple[int, int, int, int]
    probabilities: dict[str, np.ndarray]  # segment name -> (y1 - y0, x1 - x0) float32


def manifest_mask_thresholds(manifest: dict[str, Any], labels: tuple[str, ...], where: Path) -> dict[str, float]:
    """The manifest's ``mask_thresholds`` (segment -> probability), checked.

    A calibration belongs to the weights it was measured on, so it lives in their manifest: a retrained model
    starts at 0.5 until it is calibrated again (docs/models.md, "Mask thresholds").
    """
    raw = manifest.get("mask_thresholds") or {}
    if not isinstance(raw, dict):
        raise ModelUnavailable(f"{where}/manifest.json: mask_thresholds is not an object")
    out: dict[str, float] = {}
    for segment, value in raw.items():
        if segment not in labels:
            raise ModelUnavailable(f"{where}/manifest.json: mask_thresholds names {segment!r}, not one of {labels}")
        try:
            out[segment] = float(value)
        except (TypeError, ValueError) as exc:
            raise ModelUnavailable(f"{where}/manifest.json: mask_thresholds.{segment} is not a number") from exc
        if not 0.0 < out[segment] < 1.0:
            raise ModelUnavailable(f"{where}/manifest.json: mask_thresholds.{segment} = {value} is not in (0, 1)")
    return out


class _FineSegmentationModel(_CropModel):
    """A crop around one landmark per side (``FINE_SEGMENTATION[task].centre``) -> that crop's segments."""

    folder: str  # under the weights root

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        super().__init__(weights_dir or WEIGHTS_ROOT / self.folder)
        # calibrated per segment; models/training/calibrate_hip.py sets others to compare them
        self.mask_thresholds = manifest_mask_thresholds(self.manifest.raw, self.labels, self.weights_dir)

    @property
    def centre(self) -> str:
        """The per-side landmark stem each crop is centred on."""
        return FINE_SEGMENTATION[self.task].centre

    def threshold(self, segment: str) -> float:
        """Probability at which ``segment``'s mask starts (:attr:`mask_thresholds`, else 0.5)."""
        return self.mask_thresholds.get(segment, DEFAULT_MASK_THRESHOLD)

    def segment(self, level: Level, source_shape: tuple[int, int], centres: dict[str, Point]) -> list[FineWindow]:
        """One :class:`FineWindow` per side in ``centres`` (source px of the crop's landmark) that lands in the image."""
        sides = list(centres)
        if not sides:
            return []
        crops = [Crop.around(level.from_source(np.array([centres[s]]))[0], self.size, mirror=s == "left")
                 for s in sides]
        (probabilities,) = run_batch(self.manifest, np.stack([c.cut(level.image) for c in crops]))
        out = []
        for side, crop, maps in zip(sides, crops, probabilities):
            window = crop.source_window(level, source_shape)
            if window is None:
                continue
            pasted = crop.paste_on_source(maps, level, window)
            out.append(FineWindow(side, window, dict(zip(self.labels, pasted))))
        return out


class FineHipModel(_FineSegmentationModel):
    """A crop around each head centre -> head, roof, joint space and implant of that side."""

    task = "hip-fine"
    labels = FINE_HIP_SEGMENTS
    description = "fine hip segmentation model with head, roof, joint space and implant"
    folder = "hip_fine"


class FinePelvisModel(_FineSegmentationModel):
    """A crop around each ischial tuberosity -> the pelvis there, at a third of the coarse model's pixel size."""

    task = "pelvis-fine"
    labels = FINE_PELVIS_SEGMENTS
    description = "fine pelvis segmentation model around the ischial tuberosities"
    folder = "pelvis_fine"
