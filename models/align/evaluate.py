"""Evaluation of pre/post alignment on synthetic pairs with known pelvic-ring points.

For every pair, matcher and method the error is the mean radial error (MRE)
of the true pelvic-ring points of the pre-op image mapped by the estimated
homography against their true post-op positions, normalized by the post-op
image diagonal and in mm. A pair fails when the method gives no homography or
its normalized MRE exceeds 0.03 (LinAlign's failure criterion). The best
possible homography (geometric least squares on the true points) is the
physical limit: out-of-plane pelvic rotation is not a homography.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.align.homography import apply_homography, fit_geometric
from models.align.matching import Matcher
from models.align.pipeline import ALIGN_METHODS, AlignSettings, align_pair

FAILURE_MRE = 0.03


@dataclass
class EvalPair:
    """One synthetic pair with its truth; probabilities keyed by weighting source."""

    name: str
    pre: np.ndarray
    post: np.ndarray
    points_pre: np.ndarray
    points_post: np.ndarray
    spacing_mm: float  # post-op pixel spacing (mean of row and column)
    probabilities: dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (p_pre, p_post)
    metal: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
    refusals: dict[str, str] = field(default_factory=dict)  # source -> why `hipnode align` refuses the pair with it


@dataclass
class Outcome:
    pair: str
    matcher: str
    weighting: str
    method: str
    mre_px: float | None
    mre_norm: float | None
    mre_mm: float | None
    failure: str | None
    seconds: float
    inliers: int = 0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    best: dict[str, tuple[float, float]] = field(default_factory=dict)  # pair -> (norm, mm)
    match_seconds: dict[str, list[float]] = field(default_factory=dict)  # matcher -> per pair


def smoothed_probability(mask: np.ndarray, sigma_px: float = 3.0) -> np.ndarray:
    """Ground-truth mask blurred into a probability map: the oracle weighting."""
    return np.clip(cv2.GaussianBlur(np.asarray(mask, dtype=np.float32), (0, 0), sigma_px), 0.0, 1.0)


def mean_radial_error(h: np.ndarray, points_pre: np.ndarray, points_post: np.ndarray) -> float:
    mapped = apply_homography(h, points_pre)
    errors = np.linalg.norm(mapped - points_post, axis=1)
    return float(np.nanmean(errors)) if np.all(np.isfinite(errors)) else float("inf")


ABLATIONS: dict[str, tuple[str, AlignSettings]] = {
    "ours_with_ecc": ("ours", AlignSettings(use_ecc=True)),
    "ours_without_prior": ("ours", AlignSettings(pelvis_prior=False)),
    "ours_irls_only": ("ours", AlignSettings(pelvis_prior=False, refine="irls", coverage_radius_fraction=0.0)),
}


def evaluate(
    pairs: Iterable[EvalPair], matchers: Sequence[Matcher], methods: Sequence[str] = ALIGN_METHODS,
    settings: AlignSettings = AlignSettings(),
) -> Report:
    """Run every matcher x weighting x method on every pair; matches are shared across methods.

    ``methods`` may also name entries of :data:`ABLATIONS` (a method with
    some of "ours"'s parts switched off).
    """
    report = Report()
    for pair in pairs:
        diagonal = float(np.hypot(*pair.post.shape))
        best_h = fit_geometric(pair.points_pre, pair.points_post)
        best_px = mean_radial_error(best_h, pair.points_pre, pair.points_post)
        report.best[pair.name] = (best_px / diagonal, best_px * pair.spacing_mm)
        for matcher in matchers:
            start = time.perf_counter()
            matches = matcher.match(pair.pre, pair.post)
            match_seconds = time.perf_counter() - start
            report.match_seconds.setdefault(matcher.name, []).append(match_seconds)
            for weighting, (p_pre, p_post) in pair.probabilities.items():
                if (refusal := pair.refusals.get(weighting)) is not None:  # counted as the command counts it
                    report.outcomes.extend(Outcome(pair.name, matcher.name, weighting, method, None, None, None,
                                                   refusal, match_seconds) for method in methods)
                    continue
                for method in methods:
                    base, method_settings = ABLATIONS.get(method, (method, settings))
                    start = time.perf_counter()
                    result = align_pair(pair.pre, pair.post, p_pre, p_post, base, matcher, method_settings,
                                        pair.metal[0], pair.metal[1], matches=matches)
                    seconds = match_seconds + time.perf_counter() - start
                    if result.homography is None:
                        report.outcomes.append(Outcome(pair.name, matcher.name, weighting, method, None, None, None,
                                                       result.failure, seconds, result.inliers))
                        continue
                    px = mean_radial_error(result.homography, pair.points_pre, pair.points_post)
                    norm = px / diagonal
                    failure = None if norm <= FAILURE_MRE else f"normalized MRE {norm:.3f} > {FAILURE_MRE}"
                    report.outcomes.append(Outcome(pair.name, matcher.name, weighting, method, px, norm,
                                                   px * pair.spacing_mm, failure, seconds, result.inliers))
    return report


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(report: Report) -> list[dict[str, object]]:
    """One row per matcher x weighting x method, plus the best-possible-homography row."""
    rows: list[dict[str, object]] = []
    best_norm = [v[0] for v in report.best.values()]
    best_mm = [v[1] for v in report.best.values()]
    rows.append({"matcher": "-", "weighting": "truth", "method": "best_possible_homography",
                 "pairs": len(best_norm), "mre_norm": _mean(best_norm), "mre_mm": _mean(best_mm),
                 "median_norm": float(np.median(best_norm)) if best_norm else float("nan"),
                 "failures": int(sum(v > FAILURE_MRE for v in best_norm)), "ratio_to_best": 1.0, "seconds": 0.0})
    keys = sorted({(o.matcher, o.weighting, o.method) for o in report.outcomes},
                  key=lambda k: (k[0], k[1], (ALIGN_METHODS + tuple(ABLATIONS)).index(k[2])))
    for matcher, weighting, method in keys:
        group = [o for o in report.outcomes if (o.matcher, o.weighting, o.method) == (matcher, weighting, method)]
        ok = [o for o in group if o.mre_norm is not None]
        # mean over pairs with a homography (failed-by-error pairs included: their error counts)
        ratio = [o.mre_norm / report.best[o.pair][0] for o in ok if report.best[o.pair][0] > 0]
        rows.append({
            "matcher": matcher, "weighting": weighting, "method": method, "pairs": len(group),
            "mre_norm": _mean([o.mre_norm for o in ok]), "mre_mm": _mean([o.mre_mm for o in ok]),
            "median_norm": float(np.median([o.mre_norm for o in ok])) if ok else float("nan"),
            "failures": sum(o.failure is not None for o in group),
            "no_homography": sum(o.mre_norm is None for o in group),
            "ratio_to_best": _mean([o.mre_norm for o in ok]) / _mean([report.best[o.pair][0] for o in ok]) if ok else float("nan"),
            "median_ratio": float(np.median(ratio)) if ratio else float("nan"),
            "seconds": _mean([o.seconds for o in group]),
        })
    return rows


PAIRED_COMPARISONS: tuple[tuple[str, str], ...] = (("plain", "weighted"), ("plain", "ours"), ("weighted", "ours"))


def paired_comparisons(report: Report, comparisons: Sequence[tuple[str, str]] = PAIRED_COMPARISONS,
                       resamples: int = 2000) -> list[dict[str, object]]:
    """Method B against method A pair by pair, per matcher and weighting.

    Means over pairs hide whether a method is better on most pairs or much
    better on a few, and the pairs differ in difficulty; a paired difference of
    the per-pair ratio to the best possible homography (B - A, negative = B
    better) with a bootstrap 95% interval says whether a gain is measurable.
    Pairs where either method gave no homography are counted apart.
    """
    by_key: dict[tuple[str, str, str, str], Outcome] = {
        (o.matcher, o.weighting, o.method, o.pair): o for o in report.outcomes}
    groups = sorted({(o.matcher, o.weighting) for o in report.outcomes})
    rng = np.random.default_rng(0)
    rows: list[dict[str, object]] = []
    for matcher, weighting in groups:
        for method_a, method_b in comparisons:
            diffs: list[float] = []
            only_a = only_b = 0
            for pair, (best_norm, _) in sorted(report.best.items()):
                a = by_key.get((matcher, weighting, method_a, pair))
                b = by_key.get((matcher, weighting, method_b, pair))
                if a is None or b is None or best_norm <= 0:
                    continue
                if a.mre_norm is None or b.mre_norm is None:
                    only_a += a.mre_norm is not None and b.mre_norm is None
                    only_b += b.mre_norm is not None and a.mre_norm is None
                    continue
                diffs.append((b.mre_norm - a.mre_norm) / best_norm)
            if not diffs and not only_a and not only_b:
                continue
            values = np.asarray(diffs, dtype=np.float64)
            if len(values) >= 2:
                means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
                low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
            else:
                low = high = float("nan")
            rows.append({
                "matcher": matcher, "weighting": weighting, "a": method_a, "b": method_b,
                "pairs": len(values), "mean_diff": float(values.mean()) if len(values) else float("nan"),
                "ci_low": low, "ci_high": high,
                "b_better": int((values < 0).sum()), "b_worse": int((values > 0).sum()),
                "only_a_aligned": int(only_a), "only_b_aligned": int(only_b),
                "measurably_better": bool(len(values) >= 2 and high < 0),
            })
    return rows


def format_paired(rows: list[dict[str, object]]) -> str:
    """The paired comparisons as lines under the table."""
    lines = ["paired (B - A in units of the best possible MRE, per pair; negative: B better; 95% bootstrap interval):"]
    for r in rows:
        verdict = "B measurably better" if r["measurably_better"] else "no measurable gain for B"
        lines.append(
            f"  {r['matcher']!s:<16}{r['weighting']!s:<20}{r['b']!s:>8} vs {r['a']!s:<9}"
            f"{r['pairs']:>4} pairs  mean {r['mean_diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            f"  B better/worse {r['b_better']}/{r['b_worse']}"
            f"  aligned only by A/B {r['only_a_aligned']}/{r['only_b_aligned']}  {verdict}")
    return "\n".join(lines)


def format_table(rows: list[dict[str, object]], title: str) -> str:
    """LinAlign Table 1/3 style: MRE (normalized, mm) and failures per matcher and method."""
    lines = [title, f"load average {tuple(round(x, 2) for x in os.getloadavg())}",
             f"{'matcher':<16}{'weighting':<20}{'method':<26}{'pairs':>6}{'MRE norm':>10}{'MRE mm':>9}"
             f"{'median':>9}{'fail':>6}{'x best':>8}{'med x':>7}{'s/pair':>8}"]
    for r in rows:
        lines.append(
            f"{r['matcher']!s:<16}{r['weighting']!s:<20}{r['method']!s:<26}{r['pairs']:>6}{r['mre_norm']:>10.4f}"
            f"{r['mre_mm']:>9.2f}{r['median_norm']:>9.4f}{r['failures']:>6}{r['ratio_to_best']:>8.2f}"
            f"{r.get('median_ratio', 1.0):>7.2f}{r['seconds']:>8.2f}")
    lines.append(f"failure: no homography or normalized MRE > {FAILURE_MRE}; 'x best' = mean MRE / mean MRE of the "
                 "best possible homography on the same pairs; s/pair includes matching")
    return "\n".join(lines)


def load_pair_folder(
    folder: Path | str, read_pixels: Callable[[Path], tuple[np.ndarray, tuple[float, float] | None]],
    weightings: Sequence[str] = ("oracle", "classical_stand_in"),
    model_probability: Callable[[np.ndarray, tuple[float, float] | None], tuple[np.ndarray, str | None]] | None = None,
) -> EvalPair:
    """Read one ``hipnode synth`` pair folder (pre.dcm, post.dcm, *_masks.npz, pair.json).

    ``read_pixels`` decodes a DICOM file (the node's reader; models never
    import pydicom). Weighting ``oracle`` is the ground-truth pelvis mask
    smoothed into a probability; ``classical_stand_in`` the classical prior;
    ``segmentation_model`` calls ``model_probability``, which returns the map
    and the reason the model refuses the image (None when it does not).
    """
    import json

    from models.align.pelvis_prior import classical_pelvis_probability

    path = Path(folder)
    truth = json.loads((path / "pair.json").read_text())
    points_pre = np.asarray(truth["pelvis_points_pre"], dtype=np.float64)
    points_post = np.asarray(truth["pelvis_points_post"], dtype=np.float64)
    pre, spacing_pre = read_pixels(path / "pre.dcm")
    post, spacing = read_pixels(path / "post.dcm")
    probabilities: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    refusals: dict[str, str] = {}
    for weighting in weightings:
        if weighting == "oracle":
            with np.load(path / "pre_masks.npz") as m_pre, np.load(path / "post_masks.npz") as m_post:
                probabilities[weighting] = (smoothed_probability(m_pre["pelvis"]), smoothed_probability(m_post["pelvis"]))
        elif weighting == "classical_stand_in":
            probabilities[weighting] = (classical_pelvis_probability(pre), classical_pelvis_probability(post))
        elif weighting == "segmentation_model" and model_probability is not None:
            (p_pre, problem_pre), (p_post, problem_post) = model_probability(pre, spacing_pre), model_probability(post, spacing)
            probabilities[weighting] = (p_pre, p_post)
            for name, problem in (("pre-op", problem_pre), ("post-op", problem_post)):
                if problem is not None and weighting not in refusals:
                    refusals[weighting] = f"{name} image: {problem}"
        else:
            raise ValueError(f"unknown or unavailable weighting {weighting!r}")
    spacing_mm = float(np.mean(spacing)) if spacing is not None else float("nan")
    return EvalPair(path.name, pre, post, points_pre, points_post, spacing_mm, probabilities, refusals=refusals)
