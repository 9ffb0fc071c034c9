"""``hipnode align PRE.dcm POST.dcm --json OUT.json [--cdm OUT.png] [--method ...]``.

Aligns the pre-op radiograph onto the post-op one through the pelvis and
writes the homography (PRE pixels -> POST pixels) and, when asked, LinAlign's
colour difference map. When the alignment cannot be trusted (unreadable file,
different patients, not a pelvis image, no pelvis with a hip found by the
segmentation, too few matches or inliers, degenerate homography) the JSON
holds ``"failure": "<reason>"``, no CDM is written (an old one at that path
is removed) and the exit status is 3.

Exit status: 0 aligned; 3 no trustworthy alignment; 1 input missing or output
not writable.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from node.commands.exit_status import ERROR, NOT_DONE, OK

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_FAILED = OK, ERROR, NOT_DONE


def configure(parser: argparse.ArgumentParser) -> None:
    from models.align.matching import MATCHERS
    from models.align.pipeline import ALIGN_METHODS

    parser.add_argument("pre", type=Path, help="pre-op DICOM radiograph (AP pelvis)")
    parser.add_argument("post", type=Path, help="post-op DICOM radiograph of the same patient")
    parser.add_argument("--json", dest="json_out", type=Path, required=True, help="result JSON path")
    parser.add_argument("--cdm", type=Path, help="write the colour difference map here (PNG, post-op grid)")
    parser.add_argument("--method", choices=ALIGN_METHODS, default="ours",
                        help="homography method (LinAlign: plain, filtered, weighted; ours: pelvis-outline prior, "
                        "coverage-balanced robust weighted fit; see docs/align.md)")
    parser.add_argument("--matcher", choices=MATCHERS, default="disk_lightglue", help="feature matcher")
    parser.add_argument("--weights", type=Path, help="weights root holding segment/ (default: committed weights)")


@dataclass(frozen=True)
class PelvisMap:
    """One image's pelvis probability, where it came from, and why the segmentation refuses the image."""

    probability: np.ndarray
    source: str  # "segmentation_model" or "classical_stand_in"
    problem: str | None = None


def pelvis_map(pixels: np.ndarray, spacing_mm: tuple[float, float] | None, weights: Path | None = None) -> PelvisMap:
    """Pelvis probability on the image grid, and the analysis's content check on the same segmentation.

    The one plug-in point for the segmentation model (issue 4): its ``pelvis``
    map resampled to the source grid. ``problem`` is the reason
    ``hipnode analyze`` would give for an image it finds no pelvis with a hip
    in: such an image never reaches the node's pair job, and a pelvis map the
    model draws on it is off its domain (a real CT's upper pelvis, cut above
    the hips: `ours` failed 11 of 16 pairs there, docs/align.md). Without
    installed weights, the classical stand-in is used and the output says so.
    """
    from models.align.pelvis_prior import classical_pelvis_probability

    try:
        from models.inference.analyzer import content_problem
        from models.inference.runtime import ModelUnavailable
        from models.inference.segmentation import SegmentationModel
    except ImportError:
        return PelvisMap(classical_pelvis_probability(pixels), "classical_stand_in")
    try:
        model = SegmentationModel(weights / "segment") if weights is not None else SegmentationModel()
        output = model(pixels, spacing_mm)
    except ModelUnavailable as exc:
        log.warning("segmentation model unavailable; classical pelvis stand-in used", extra={"reason": str(exc)})
        return PelvisMap(classical_pelvis_probability(pixels), "classical_stand_in")
    return PelvisMap(output.source_probability("pelvis"), "segmentation_model", content_problem(output))


def pelvis_probability(pixels: np.ndarray, spacing_mm: tuple[float, float] | None,
                       weights: Path | None = None) -> tuple[np.ndarray, str]:
    """:func:`pelvis_map` without the content check: (probability, source)."""
    found = pelvis_map(pixels, spacing_mm, weights)
    return found.probability, found.source


def pair_problem(pre_ds: object, post_ds: object) -> str | None:
    """Why the two headers cannot be one patient's AP pelvis pair, or None."""
    from models.inference.analyzer import Header, header_problem

    pre_id = str(getattr(pre_ds, "PatientID", "") or "").strip()
    post_id = str(getattr(post_ds, "PatientID", "") or "").strip()
    if pre_id and post_id and pre_id != post_id:
        return "different patients (PatientID differs)"
    for name, ds in (("pre-op", pre_ds), ("post-op", post_ds)):
        problem = header_problem(Header.from_dataset(ds))
        if problem is not None:
            return f"{name} image: {problem}"
    return None


def _write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _fail(args: argparse.Namespace, reason: str, extra: dict[str, object] | None = None) -> int:
    payload: dict[str, object] = {"homography": None, "method": args.method, "matcher": args.matcher,
                                  "matches": 0, "inliers": 0, "timings_ms": {}, **(extra or {})}
    payload["failure"] = reason
    _write_json(args.json_out, payload)
    if args.cdm is not None and args.cdm.exists():
        args.cdm.unlink()  # a stale map from an earlier run must not pass for this pair's
    log.warning("alignment failed", extra={"reason": reason})
    return EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    from models.align.cdm import colour_difference_map
    from models.align.matching import get_matcher
    from models.align.pipeline import AlignSettings, align_pair
    from node.imaging import UnreadableImage, load_radiograph

    for path in (args.pre, args.post):
        if not path.is_file():
            log.error("input not found", extra={"path": str(path)})
            return EXIT_ERROR
    started = time.perf_counter()
    try:
        pre = load_radiograph(args.pre)
        post = load_radiograph(args.post)
    except UnreadableImage as exc:
        return _fail(args, f"unreadable image: {exc}")
    problem = pair_problem(pre.dataset, post.dataset)
    if problem is not None:
        return _fail(args, problem)
    read_ms = 1000 * (time.perf_counter() - started)
    start = time.perf_counter()
    map_pre = pelvis_map(pre.pixels, pre.pixel_spacing_mm, args.weights)
    map_post = pelvis_map(post.pixels, post.pixel_spacing_mm, args.weights)
    pelvis_ms = 1000 * (time.perf_counter() - start)
    source = map_pre.source
    for name, found in (("pre-op", map_pre), ("post-op", map_post)):
        if found.problem is not None:  # what hipnode analyze says of it: not an AP pelvis the model knows
            return _fail(args, f"{name} image: {found.problem}", {"pelvis_probability_source": source})
    p_pre, p_post = map_pre.probability, map_post.probability
    # The pelvis-outline prior of "ours" needs a real segmentation; the classical
    # stand-in's maps are mostly a fixed spatial prior and would pull towards identity.
    settings = AlignSettings(pelvis_prior=source == "segmentation_model")
    result = align_pair(pre.pixels, post.pixels, p_pre, p_post, args.method, get_matcher(args.matcher), settings)
    result.timings_ms = {"read": read_ms, "pelvis_probability": pelvis_ms, **result.timings_ms}
    payload = result.to_json()
    payload["pelvis_probability_source"] = source
    if result.failure is not None:
        return _fail(args, result.failure, {k: v for k, v in payload.items() if k != "failure"})
    if args.cdm is not None:
        import cv2

        start = time.perf_counter()
        rgb = colour_difference_map(pre.pixels, post.pixels, result.homography)
        args.cdm.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.cdm), rgb[:, :, ::-1]):
            log.error("cannot write the colour difference map", extra={"path": str(args.cdm)})
            return EXIT_ERROR
        result.timings_ms["cdm"] = 1000 * (time.perf_counter() - start)
    result.timings_ms["total"] = 1000 * (time.perf_counter() - started)
    payload["timings_ms"] = dict(result.timings_ms)
    _write_json(args.json_out, payload)
    log.info("aligned", extra={"method": args.method, "matcher": args.matcher, "inliers": result.inliers})
    return EXIT_OK
