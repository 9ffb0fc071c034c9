"""Calibrating where the fine hip model's head and roof masks start (``hipnode eval hip-threshold``).

The minimum joint-space width is the gap between two masks, so any bias in
where the network's probabilities cross 0.5 at the head's and the roof's
borders shows up twice in it: on training-anatomy films not used for
training, reference weights 0.4.0 measured it 0.14 mm too wide at 0.5, while
the masks' Dice is flat between 0.4 and 0.6. This scores the whole analysis
at each candidate threshold (head and roof share it, since they bound the
same gap), then scores the threshold where the mean signed error crosses
zero (interpolated between the two candidates that bracket it) and keeps the
least biased. Run it on films of the anatomies the model was trained on (new
seeds), never on the anatomy it is to be evaluated on, and write the choice
into the weights' manifest (``mask_thresholds``), where the analysis reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.algorithms.vocabulary import SIDES
from models.training.evaluate import dice, labelled_films

if TYPE_CHECKING:
    from models.inference.analyzer import HipAnalyzer

log = logging.getLogger(__name__)

CALIBRATED_SEGMENTS = ("femoral_head", "acetabular_roof")
"""The two masks whose borders bound the joint space; they share one threshold."""
DEFAULT_CANDIDATES = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


@dataclass(frozen=True)
class ThresholdScore:
    """The analysis's minimum joint-space width and masks at one head/roof threshold."""

    threshold: float
    signed_errors_mm: tuple[float, ...]  # predicted minus true, per native hip with both present
    dice: dict[str, float]  # mean Dice of each calibrated segment over the sides that have it

    @property
    def mean_error_mm(self) -> float:
        return float(np.mean(self.signed_errors_mm)) if self.signed_errors_mm else float("nan")

    @property
    def mae_mm(self) -> float:
        return float(np.mean(np.abs(self.signed_errors_mm))) if self.signed_errors_mm else float("nan")


def score_thresholds(analyzer: HipAnalyzer, data: Path, candidates: Sequence[float] = DEFAULT_CANDIDATES,
                     anatomy: set[str] | None = None) -> list[ThresholdScore]:
    """Run ``analyzer`` on every film of ``data`` once per candidate threshold (it is left at the last one).

    A film the analysis refuses counts at no threshold, and is logged with the reason.
    """
    if analyzer.fine_hips is None:
        raise ValueError("the weights have no fine hip model (hip_fine/): nothing to calibrate")
    errors: dict[float, list[float]] = {t: [] for t in candidates}
    dices: dict[float, dict[str, list[float]]] = {t: {s: [] for s in CALIBRATED_SEGMENTS} for t in candidates}
    for film in labelled_films(data, anatomy):
        for threshold in candidates:
            analyzer.fine_hips.mask_thresholds = {**analyzer.fine_hips.mask_thresholds,
                                                  **{s: threshold for s in CALIBRATED_SEGMENTS}}
            pred = analyzer(film.image)
            if pred.not_analysable is not None:
                log.warning("film not analysable, left out of the calibration",
                            extra={"film": film.name, "reason": pred.not_analysable})
                break
            for side in SIDES:
                name = f"min_joint_space_width_{side}"
                true, got = film.measurements.get(name), pred.measurements.get(name)
                if true is not None and got is not None:
                    errors[threshold].append(float(got) - float(true))
                for segment in CALIBRATED_SEGMENTS:
                    key = f"{segment}_{side}"
                    if key in film.masks and key in pred.masks and (d := dice(pred.masks[key], film.masks[key])) is not None:
                        dices[threshold][segment].append(d)
    return [ThresholdScore(t, tuple(errors[t]), {s: float(np.mean(v)) if v else float("nan")
                                                 for s, v in dices[t].items()}) for t in candidates]


def unbiased_threshold(scores: Sequence[ThresholdScore]) -> float | None:
    """Where the mean signed error crosses zero, linearly between the two candidates that bracket it (to 0.01).

    None when no two neighbouring candidates bracket zero (widen the candidates then).
    """
    scored = sorted((s for s in scores if s.signed_errors_mm), key=lambda s: s.threshold)
    for low, high in pairwise(scored):
        if low.mean_error_mm <= 0.0 <= high.mean_error_mm and high.mean_error_mm > low.mean_error_mm:
            share = -low.mean_error_mm / (high.mean_error_mm - low.mean_error_mm)
            return round(low.threshold + share * (high.threshold - low.threshold), 2)
    return None


def best_threshold(scores: Sequence[ThresholdScore]) -> ThresholdScore:
    """The scored threshold whose joint-space widths are least biased (mean signed error closest to zero)."""
    scored = [s for s in scores if s.signed_errors_mm]
    if not scored:
        raise ValueError("no native hip with a true and a predicted minimum joint-space width: nothing to calibrate on")
    return min(scored, key=lambda s: (abs(s.mean_error_mm), abs(s.threshold - 0.5)))


def calibrate(weights: Path, data: Path, candidates: Sequence[float] = DEFAULT_CANDIDATES,
              anatomy: set[str] | None = None) -> tuple[list[ThresholdScore], ThresholdScore]:
    """Score the candidates, then the threshold where their bias crosses zero (if new); the least biased wins."""
    from models.inference.analyzer import HipAnalyzer

    analyzer = HipAnalyzer.from_weights(weights)
    if analyzer.fine_hips is None:
        raise ValueError(f"{weights} has no fine hip model (hip_fine/): nothing to calibrate")
    scores = score_thresholds(analyzer, data, candidates, anatomy)
    crossing = unbiased_threshold(scores)
    if crossing is not None and 0.0 < crossing < 1.0 and all(abs(s.threshold - crossing) > 1e-9 for s in scores):
        scores = sorted(scores + score_thresholds(analyzer, data, [crossing], anatomy), key=lambda s: s.threshold)
    return scores, best_threshold(scores)


def format_threshold_report(scores: Sequence[ThresholdScore], chosen: ThresholdScore) -> str:
    lines = [f"{'threshold':>9} {'n':>4} {'JSW mean err':>12} {'JSW MAE':>8} "
             + " ".join(f"{'dice ' + s:>21}" for s in CALIBRATED_SEGMENTS)]
    for s in scores:
        mark = "  <- chosen" if s is chosen else ""
        lines.append(f"{s.threshold:>9.2f} {len(s.signed_errors_mm):>4} {s.mean_error_mm:>+12.3f} {s.mae_mm:>8.3f} "
                     + " ".join(f"{s.dice[k]:>21.4f}" for k in CALIBRATED_SEGMENTS) + mark)
    return "\n".join(lines)


def write_thresholds(weights: Path, chosen: ThresholdScore, data: Path) -> Path:
    """Record ``chosen`` in ``weights/hip_fine/manifest.json`` (thresholds and what they were chosen on)."""
    path = weights / "hip_fine" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["mask_thresholds"] = {s: chosen.threshold for s in CALIBRATED_SEGMENTS}
    manifest["mask_thresholds_calibration"] = {
        "rule": "head and roof threshold whose minimum joint-space width has the mean signed error closest to 0",
        "data": str(data),
        "data_header": _dataset_header(data),
        "native_hips": len(chosen.signed_errors_mm),
        "mean_signed_error_mm": round(chosen.mean_error_mm, 4),
        "command": "hipnode eval hip-threshold --data DATA --weights WEIGHTS --write",
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _dataset_header(data: Path) -> dict[str, object]:
    try:
        header = json.loads((data / "dataset.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: header[k] for k in ("source", "seed", "size_px", "labels", "samples") if k in header}
