"""The view models: is the film an AP pelvis/hip view, a lateral, or a frog-leg lateral?

The spec's landmarks and measurements are defined on AP views. Headers often
say the view (ViewPosition, View Code Sequence, series description), and the
analysis refuses a named lateral from the header; these models are for the
header that says AP, or nothing, on a film that is not.

Two small classifiers, trained on the generator's films of two anatomies,
look at different evidence: one at the **film** itself (``source`` "image"),
one at the **segmentation's probability maps** (``source`` "maps": pelvis,
femurs, femoral heads and implants, right and left merged). Each was fooled
where the other was not (session 24, docs/models.md "View models"): the film
model called crude AP projections of the label maps, another renderer than
the generator, lateral (AP 0.04-0.23) where the maps model said AP
(0.92-0.99); the maps model called 16 of 223 AP films of the held-out anatomy
frog-leg views where the film model refused 1. So a film is refused only when
**every** installed view model says it is not AP.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from models.inference.preprocess import normalise, to_work_grid
from models.inference.runtime import ModelUnavailable, OnnxModel, session_for
from models.inference.segmentation import SegmentationOutput

VIEWS = ("ap", "lateral", "frog_leg")
VIEW_SOURCES = {"image": "film", "maps": "segmentation maps"}
"""What a view model reads (manifest ``inputs[0].source``) and how a refusal names it."""
VIEW_FOLDERS = ("view_image", "view_maps")
"""Where the analysis looks for view models under a weights root."""
VIEW_NAMES = {"ap": "AP", "lateral": "lateral", "frog_leg": "frog-leg lateral"}
VIEW_CHANNELS = ("pelvis", "femur", "femoral_head", "implant")
"""Segments the model reads; a sided segment is the maximum of its right and left maps."""
MIN_AP_PROBABILITY = 0.2
"""A film is refused when every view model gives the AP view less than this, i.e. at least 0.8 to a
lateral or frog-leg view. Low on purpose: refusing an AP film loses its analysis, and models trained on
synthetic films alone will be less sure on real ones; docs/models.md ("View models") gives both error
counts at several thresholds."""


def fit_to_grid(content: np.ndarray, size: int, renormalise: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(C, rows, cols) content onto a (C, size, size) canvas as every working grid here holds a film: longer
    side fitted, area resampling (a film then 5-95 percentile normalised: ``renormalise``), zero padding
    bottom/right. Returns the canvas and the content's shape on it."""
    rows, cols = content.shape[-2:]
    scale = size / max(rows, cols)
    shape = (max(1, min(size, round(rows * scale))), max(1, min(size, round(cols * scale))))
    canvas = np.zeros((content.shape[0], size, size), dtype=np.float32)
    for i, channel in enumerate(content):
        small = cv2.resize(np.ascontiguousarray(channel), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
        canvas[i, : shape[0], : shape[1]] = normalise(small) if renormalise else small
    return canvas, shape


def view_channels(seg: SegmentationOutput, size: int) -> np.ndarray:
    """The maps model's input: (len(VIEW_CHANNELS), size, size), the segmentation grid's content fitted."""
    rows, cols = seg.transform.content_shape
    return fit_to_grid(channel_maps(seg)[:, :rows, :cols], size)[0]


def channel_maps(seg: SegmentationOutput) -> np.ndarray:
    """(len(VIEW_CHANNELS), S, S) on the segmentation's own grid, sides merged by maximum."""
    def merged(name: str) -> np.ndarray:
        if name in seg.labels:
            return seg.work_map(name)
        return np.maximum(seg.work_map(f"{name}_right"), seg.work_map(f"{name}_left"))

    return np.stack([merged(name) for name in VIEW_CHANNELS]).astype(np.float32)


@dataclass(frozen=True)
class ViewVerdict:
    """One view model's probability for each view."""

    probabilities: dict[str, float]
    source: str = "maps"

    @property
    def view(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def other(self) -> str:
        """The most likely view that is not AP."""
        return max((v for v in VIEWS if v != "ap"), key=self.probabilities.__getitem__)

    def says_not_ap(self, min_ap_probability: float = MIN_AP_PROBABILITY) -> bool:
        return self.probabilities["ap"] < min_ap_probability

    def describe(self) -> str:
        return (f"{VIEW_SOURCES.get(self.source, self.source)}: {VIEW_NAMES[self.other]} "
                f"{self.probabilities[self.other]:.2f}, AP {self.probabilities['ap']:.2f}")


def view_problem(verdicts: list[ViewVerdict], min_ap_probability: float = MIN_AP_PROBABILITY) -> str | None:
    """Why the film is not an AP view, when every model says so; else None (also with no model)."""
    if not verdicts or not all(v.says_not_ap(min_ap_probability) for v in verdicts):
        return None
    other = max((v for v in VIEWS if v != "ap"), key=lambda view: sum(v.probabilities[view] for v in verdicts))
    return (f"the image looks like a {VIEW_NAMES[other]} view, not an AP pelvis or hip view "
            f"(view models, {'; '.join(v.describe() for v in verdicts)})")


class ViewModel(OnnxModel):
    """Small CNN classifier on the film or on the segmentation's maps, served by onnxruntime."""

    task = "view"
    labels = VIEWS
    description = "view classifier (ap, lateral, frog_leg)"

    @property
    def source(self) -> str:
        """``image`` (the film on the model's grid) or ``maps`` (:func:`view_channels`)."""
        source = str(self.manifest.raw["inputs"][0].get("source", ""))
        if source not in VIEW_SOURCES:
            raise ModelUnavailable(f"{self.weights_dir}: view model input source {source!r}, not one of "
                                   f"{tuple(VIEW_SOURCES)}")
        return source

    @property
    def segmentation(self) -> dict[str, str]:
        """Name and version of the segmentation model whose maps a ``maps`` model was trained on."""
        return dict(self.manifest.raw["inputs"][0].get("segmentation") or {})

    def check_segmentation(self, name: str, version: str) -> None:
        """ModelUnavailable unless a ``maps`` model was trained on maps of segmentation ``name`` ``version``:
        another segmentation's maps are another input."""
        if self.source != "maps":
            return
        wanted = self.segmentation
        if wanted != {"name": name, "version": version}:
            raise ModelUnavailable(f"{self.weights_dir} reads the maps of segmentation {wanted or 'unrecorded'}, "
                                   f"not {name} {version}: retrain it (hipnode train view)")

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """(N, C, S, S) inputs -> (N, len(VIEWS)) probabilities."""
        session = session_for(self.manifest)
        return np.asarray(session.run(None, {"image": np.ascontiguousarray(inputs, dtype=np.float32)})[0])

    def model_input(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None,
                    seg: SegmentationOutput) -> np.ndarray:
        """(C, S, S): the film on the model's grid, or the segmentation's maps.

        The film is resampled from full size, not taken from the segmentation's grid: that was measured
        (session 24 review) and let 17 instead of 15 of 210 held-out frog-leg films through.
        """
        if self.source == "image":
            return to_work_grid(pixels, spacing_mm, self.manifest.work_size)[0][None]
        return view_channels(seg, self.manifest.work_size)

    def __call__(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None,
                 seg: SegmentationOutput) -> ViewVerdict:
        probabilities = self.predict(self.model_input(pixels, spacing_mm, seg)[None])[0]
        return ViewVerdict({view: float(p) for view, p in zip(self.manifest.labels, probabilities, strict=True)},
                           self.source)
