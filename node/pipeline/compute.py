"""The analysis steps shared by the node's jobs and ``hipnode process``.

One implementation of "analyse an image, encode its results" and "align a pair,
encode its results", so the offline command writes exactly the objects the node
sends. Models are created once per process (the analyzer and matcher caches).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydicom.dataset import Dataset

from models.algorithms.deltas import DELTA_RULE, pre_post_deltas
from models.algorithms.results import ImageAnalysis, PairAlignment
from models.algorithms.vocabulary import DELTA_MEASUREMENTS, SIDES
from node.imaging import Radiograph
from node.network.contexts import CR, DX_PRESENTATION, DX_PROCESSING
from node.pipeline.features import CachedFeaturesMatcher, FeatureStore, supports_features

DEFAULT_ALIGN_METHOD = "ours"
DEFAULT_MATCHER = "disk_lightglue"
PROJECTION_SOP_CLASSES = frozenset({CR, DX_PRESENTATION, DX_PROCESSING})  # what the analysis takes
IMPLANT_MIN_AREA_MM2 = 50.0  # smaller "implant" blobs are noise, not an arthroplasty


@dataclass
class AnalysedImage:
    """A decoded radiograph with its analysis (``pelvis_probability`` on the source grid)."""

    radiograph: Radiograph
    analysis: ImageAnalysis
    pelvis_probability: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def dataset(self) -> Dataset:
        return self.radiograph.dataset


def warm_up(matcher: str = DEFAULT_MATCHER) -> dict[str, float]:
    """Load the analysis and matching models and run each once; returns seconds per part.

    A worker does this at start so the first study it analyses does not pay for
    ONNX session creation and onnxruntime's first-run allocations (about 1 s), nor
    its first pair job for importing the encoders and the aligner (scipy.optimize,
    highdicom: 0.2-0.4 s each, measured with py-spy in the worker).
    """
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    import models.align.cdm  # noqa: F401
    import models.align.pipeline  # noqa: F401
    import node.results  # noqa: F401
    from models.align.matching import get_matcher
    from models.inference.analyzer import default_analyzer

    seconds["imports"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    from models.inference.runtime import warm_session

    analyzer = default_analyzer()
    for model in analyzer.models:  # coarse, fine and view models, each in its own input shape
        warm_session(model.manifest, batch=4)
    seconds["analysis_models"] = round(time.perf_counter() - start, 2)
    rng = np.random.default_rng(0)
    film = cv2.GaussianBlur(rng.random((2048, 2560), dtype=np.float32), (0, 0), 8)  # a full-size film's shape
    start = time.perf_counter()
    get_matcher(matcher).match(film, film[::-1].copy())
    seconds["matcher"] = round(time.perf_counter() - start, 2)
    return seconds


def analyse(radiograph: Radiograph) -> AnalysedImage:
    """Run the committed segmentation + landmark models on one radiograph."""
    from models.inference.analyzer import analyze_radiograph
    from node.pipeline.artifacts import quantise_probability

    analysis = analyze_radiograph(radiograph)
    return AnalysedImage(radiograph, analysis, quantise_probability(analysis.probabilities.get("pelvis")))


def side_states(analysis: ImageAnalysis) -> dict[str, str | None]:
    """``native`` or ``implant`` per side, from the implant segmentation (None if unknown)."""
    if analysis.not_analysable is not None:
        return {side: None for side in SIDES}
    spacing = analysis.pixel_spacing_mm or (1.0, 1.0)
    pixel_area_mm2 = float(spacing[0] * spacing[1])
    states: dict[str, str | None] = {}
    for side in SIDES:
        mask = analysis.masks.get(f"implant_{side}")
        head = analysis.masks.get(f"femoral_head_{side}")
        if mask is None:
            states[side] = None
        elif float(np.count_nonzero(mask)) * pixel_area_mm2 >= IMPLANT_MIN_AREA_MM2:
            states[side] = "implant"
        elif head is not None and np.any(head):
            states[side] = "native"
        else:
            states[side] = None  # neither a head nor an implant found on that side
    return states


def image_result_datasets(image: AnalysedImage) -> list[tuple[str, Dataset]]:
    """SEG and TID 1500 SR of one analysed image, with their catalogue kinds."""
    from node.results import encode_image_results, result_kind

    datasets = encode_image_results(image.dataset, image.analysis, pixels=image.radiograph.pixels)
    return [(result_kind(ds) or "unknown", ds) for ds in datasets]


def pelvis_probability(image: AnalysedImage) -> np.ndarray:
    """The pelvis probability map (from the analysis, else the segmentation model again)."""
    if image.pelvis_probability is None:
        from node.commands.align import pelvis_probability as model_pelvis_probability

        image.pelvis_probability, _source = model_pelvis_probability(
            image.radiograph.pixels, image.radiograph.pixel_spacing_mm
        )
    return image.pelvis_probability


def align(
    pre: AnalysedImage,
    post: AnalysedImage,
    method: str = DEFAULT_ALIGN_METHOD,
    matcher: str = DEFAULT_MATCHER,
    features: FeatureStore | None = None,
) -> PairAlignment:
    """Align pre onto post through the pelvis; ``failure`` says why when it cannot be trusted.

    With a ``features`` store, each film's matcher features come from it when kept
    there (and are kept when computed): the same matches, less time.
    """
    from models.align.matching import get_matcher
    from models.align.pipeline import align_pair

    start = time.perf_counter()
    p_pre, p_post = pelvis_probability(pre), pelvis_probability(post)
    probability_ms = 1000 * (time.perf_counter() - start)
    chosen = get_matcher(matcher)
    if features is not None and supports_features(chosen):
        chosen = CachedFeaturesMatcher(chosen, features, pre.dataset.SOPInstanceUID, post.dataset.SOPInstanceUID)
    alignment = align_pair(pre.radiograph.pixels, post.radiograph.pixels, p_pre, p_post, method, chosen)
    alignment.timings_ms["pelvis_probability"] = probability_ms
    alignment.algorithms = (*alignment.algorithms, DELTA_RULE)  # the pair's results carry its deltas
    return alignment


def may_become_pre(image: AnalysedImage) -> bool:
    """Whether the pairing rules could pair this film as a later post-op's pre-op (a side in the pre state)."""
    from node.pairing.rules import DEFAULT_RULES

    return DEFAULT_RULES.pre_state in side_states(image.analysis).values()


def may_become_post(image: AnalysedImage) -> bool:
    """Whether the pairing rules could pair this film as a post-op (a side in the post state)."""
    from node.pairing.rules import DEFAULT_RULES

    return DEFAULT_RULES.post_state in side_states(image.analysis).values()


def keep_features(image: AnalysedImage, features: FeatureStore, matcher: str = DEFAULT_MATCHER) -> bool:
    """Compute and keep the film's matcher features unless kept already; False if the matcher cannot."""
    from models.align.matching import get_matcher

    chosen = get_matcher(matcher)
    if not supports_features(chosen):
        return False
    features.ensure(chosen, image.dataset.SOPInstanceUID, image.radiograph.pixels)
    return True


def paired_sides(pre: AnalysedImage, post: AnalysedImage) -> list[str]:
    """Sides the node's pairing rules pair for this pre/post (pre native, post operated).

    ``hipnode process`` uses it so its pair objects carry the same sides, hence the
    same content, as the node's under the same deterministic UIDs.
    """
    from node.pairing.rules import DEFAULT_RULES

    pre_states, post_states = side_states(pre.analysis), side_states(post.analysis)
    return [
        side for side in SIDES
        if pre_states.get(side) == DEFAULT_RULES.pre_state and post_states.get(side) == DEFAULT_RULES.post_state
    ]


def deltas_for_sides(deltas: Mapping[str, float | None], sides: Iterable[str]) -> dict[str, float | None]:
    """Keep the side-specific deltas of ``sides`` (and leg length, which concerns both)."""
    wanted = set(sides)
    kept: dict[str, float | None] = {}
    for name in DELTA_MEASUREMENTS:
        side = name.rsplit("_", 1)[-1]
        if side in SIDES and side not in wanted:
            continue
        kept[name] = deltas.get(name)
    return kept


def pair_deltas(
    pre: AnalysedImage, post: AnalysedImage, alignment: PairAlignment, sides: Iterable[str] = SIDES
) -> dict[str, float | None]:
    """The pair's ``delta_*`` (post minus pre, mm; ``pre_post_deltas``) for ``sides``; None where unmeasurable."""
    deltas: dict[str, float | None] = {name: None for name in DELTA_MEASUREMENTS}
    spacing = pre.analysis.pixel_spacing_mm or pre.radiograph.pixel_spacing_mm
    if alignment.homography is not None and spacing is not None:
        deltas = pre_post_deltas(pre.analysis.landmarks, post.analysis.landmarks, alignment.homography, spacing,
                                 post.analysis.pixel_spacing_mm or post.radiograph.pixel_spacing_mm)
    return deltas_for_sides(deltas, sides)


def pair_result_datasets(
    pre: AnalysedImage, post: AnalysedImage, alignment: PairAlignment, sides: Iterable[str] = SIDES
) -> tuple[list[tuple[str, Dataset]], dict[str, float | None]]:
    """Pair SR (deltas), colour difference map SC and overlay SC; returns them and the deltas."""
    from models.align.cdm import colour_difference_map
    from node.results import encode_pair_results, result_kind

    cdm = None
    if alignment.homography is not None:
        cdm = colour_difference_map(pre.radiograph.pixels, post.radiograph.pixels, alignment.homography)
    deltas = pair_deltas(pre, post, alignment, sides)
    datasets = encode_pair_results(
        pre.dataset, post.dataset, pre.analysis, post.analysis, alignment, cdm, deltas,
        pre_pixels=pre.radiograph.pixels, post_pixels=post.radiograph.pixels,
    )
    return [(result_kind(ds) or "unknown", ds) for ds in datasets], deltas
