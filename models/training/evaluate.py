"""``hipnode eval analyze``: score the analysis models on anatomy held out of training.

Rotation: for each anatomy in the dataset, train both networks on the other
anatomies, export them to ONNX, and run the real inference path
(:class:`models.inference.analyzer.HipAnalyzer`) on the held-out images.
Reported: per-segment Dice on the source grid, per-landmark radial error in
mm (mean, median, p95, count > 5 mm, count missed, count invented), MAE per
measurement, and the spec's targets next to them.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.algorithms.measurements import compute_measurements
from models.algorithms.vocabulary import LANDMARKS, MEASUREMENTS, SEGMENTS

log = logging.getLogger(__name__)

SMALL_SEGMENTS = tuple(s for s in SEGMENTS if s.startswith(("femoral_head", "acetabular_roof", "joint_space", "implant")))
TARGETS = {
    "pelvis_dice_min": 0.97,
    "small_segments_mean_dice_min": 0.93,
    "landmark_mean_radial_error_mm_max": 1.5,
    "landmarks_missed_max": 0,
    "leg_length_discrepancy_mae_mm_max": 1.0,
    "angle_mae_deg_max": 1.5,
    "min_joint_space_width_mae_mm_max": 0.3,
}


def dice(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Dice of two boolean masks; None when both are empty (nothing to score)."""
    p, t = np.asarray(pred, bool), np.asarray(true, bool)
    denom = int(p.sum()) + int(t.sum())
    if denom == 0:
        return None
    return 2.0 * int((p & t).sum()) / denom


@dataclass
class Scores:
    """Accumulated per-image results of one evaluation."""

    dice: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SEGMENTS})
    radial_mm: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in LANDMARKS})
    missed: dict[str, int] = field(default_factory=lambda: {n: 0 for n in LANDMARKS})
    invented: dict[str, int] = field(default_factory=lambda: {n: 0 for n in LANDMARKS})
    abs_err: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASUREMENTS})
    not_analysable: list[str] = field(default_factory=list)
    images: int = 0

    def add(self, other: Scores) -> None:
        for name, values in other.dice.items():
            self.dice[name].extend(values)
        for name, values in other.radial_mm.items():
            self.radial_mm[name].extend(values)
        for name in LANDMARKS:
            self.missed[name] += other.missed[name]
            self.invented[name] += other.invented[name]
        for name, values in other.abs_err.items():
            self.abs_err[name].extend(values)
        self.not_analysable.extend(other.not_analysable)
        self.images += other.images


def score_image(
    scores: Scores,
    predicted: Any,
    true_masks: dict[str, np.ndarray],
    true_landmarks: dict[str, Any],
    true_measurements: dict[str, float | None],
    spacing_mm: tuple[float, float],
    name: str = "",
) -> None:
    """Add one image's comparison of an ImageAnalysis with its truth to ``scores``."""
    scores.images += 1
    if predicted.not_analysable is not None:
        scores.not_analysable.append(f"{name}: {predicted.not_analysable}")
        for lm in LANDMARKS:
            if true_landmarks.get(lm) is not None:
                scores.missed[lm] += 1
        return
    for seg in SEGMENTS:
        if seg in true_masks and seg in predicted.masks:
            d = dice(predicted.masks[seg], true_masks[seg])
            if d is not None:
                scores.dice[seg].append(d)
    for lm in LANDMARKS:
        if lm not in true_landmarks:
            continue
        t, p = true_landmarks[lm], predicted.landmarks.get(lm)
        if t is not None and p is None:
            scores.missed[lm] += 1
        elif t is None and p is not None:
            scores.invented[lm] += 1
        elif t is not None and p is not None:
            dx = (float(p[0]) - float(t[0])) * spacing_mm[1]
            dy = (float(p[1]) - float(t[1])) * spacing_mm[0]
            scores.radial_mm[lm].append(float(np.hypot(dx, dy)))
    for m in MEASUREMENTS:
        t, p = true_measurements.get(m), predicted.measurements.get(m)
        if t is not None and p is not None:
            scores.abs_err[m].append(abs(float(p) - float(t)))


def _stats(values: Iterable[float]) -> dict[str, float | int | None]:
    v = np.asarray(list(values), float)
    if v.size == 0:
        return {"n": 0, "mean": None, "median": None, "p95": None}
    return {"n": int(v.size), "mean": float(v.mean()), "median": float(np.median(v)), "p95": float(np.percentile(v, 95))}


def summarise(scores: Scores) -> dict[str, Any]:
    """Numbers for the report, and each target with met / not met."""
    seg = {s: _stats(v) for s, v in scores.dice.items()}
    small = [x for s in SMALL_SEGMENTS for x in scores.dice[s]]
    lms = {}
    for lm in LANDMARKS:
        st = _stats(scores.radial_mm[lm])
        st["over_5mm"] = int(sum(1 for x in scores.radial_mm[lm] if x > 5.0))
        st["missed"] = scores.missed[lm]
        st["invented"] = scores.invented[lm]
        lms[lm] = st
    all_err = [x for v in scores.radial_mm.values() for x in v]
    overall = _stats(all_err)
    overall["over_5mm"] = int(sum(1 for x in all_err if x > 5.0))
    overall["missed"] = int(sum(scores.missed.values()))
    overall["invented"] = int(sum(scores.invented.values()))
    meas = {m: {"n": len(v), "mae": (float(np.mean(v)) if v else None)} for m, v in scores.abs_err.items()}

    def mae(prefix: str) -> float | None:
        vals = [x for m, v in scores.abs_err.items() if m.startswith(prefix) for x in v]
        return float(np.mean(vals)) if vals else None

    pelvis = seg["pelvis"]["mean"]
    small_mean = float(np.mean(small)) if small else None
    checks = {
        "pelvis_dice": (pelvis, pelvis is not None and pelvis >= TARGETS["pelvis_dice_min"]),
        "small_segments_mean_dice": (small_mean, small_mean is not None and small_mean >= TARGETS["small_segments_mean_dice_min"]),
        "landmark_mean_radial_error_mm": (overall["mean"], overall["mean"] is not None and overall["mean"] <= TARGETS["landmark_mean_radial_error_mm_max"]),
        "landmarks_missed": (overall["missed"], overall["missed"] == 0),
        "leg_length_discrepancy_mae_mm": (mae("leg_length"), _le(mae("leg_length"), TARGETS["leg_length_discrepancy_mae_mm_max"])),
        "lateral_centre_edge_angle_mae_deg": (mae("lateral_centre_edge"), _le(mae("lateral_centre_edge"), TARGETS["angle_mae_deg_max"])),
        "cup_inclination_mae_deg": (mae("cup_inclination"), _le(mae("cup_inclination"), TARGETS["angle_mae_deg_max"])),
        "min_joint_space_width_mae_mm": (mae("min_joint_space"), _le(mae("min_joint_space"), TARGETS["min_joint_space_width_mae_mm_max"])),
    }
    return {
        "images": scores.images,
        "not_analysable": scores.not_analysable,
        "dice": seg,
        "small_segments_mean_dice": small_mean,
        "landmarks": lms,
        "landmarks_overall": overall,
        "measurements_mae": meas,
        "targets": {k: {"value": v, "met": bool(ok)} for k, (v, ok) in checks.items()},
    }


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def format_report(summary: dict[str, Any], title: str) -> str:
    """Plain-text tables of one summary."""
    lines = [f"== {title}: {summary['images']} images, {len(summary['not_analysable'])} not analysable"]
    lines += [f"   not analysable: {x}" for x in summary["not_analysable"][:10]]
    lines.append(f"{'segment':28s} {'n':>4s} {'dice mean':>10s} {'median':>8s}")
    for s, st in summary["dice"].items():
        lines.append(f"{s:28s} {st['n']:>4d} {_fmt(st['mean']):>10s} {_fmt(st['median']):>8s}")
    lines.append(f"{'landmark (radial error mm)':32s} {'n':>4s} {'mean':>7s} {'median':>7s} {'p95':>7s} {'>5mm':>5s} {'missed':>6s} {'invented':>8s}")
    for lm, st in list(summary["landmarks"].items()) + [("ALL", summary["landmarks_overall"])]:
        lines.append(f"{lm:32s} {st['n']:>4d} {_fmt(st['mean'], 2):>7s} {_fmt(st['median'], 2):>7s} {_fmt(st['p95'], 2):>7s} "
                     f"{st['over_5mm']:>5d} {st['missed']:>6d} {st['invented']:>8d}")
    lines.append(f"{'measurement':36s} {'n':>4s} {'MAE':>8s}")
    for m, st in summary["measurements_mae"].items():
        lines.append(f"{m:36s} {st['n']:>4d} {_fmt(st['mae'], 3):>8s}")
    lines.append("targets:")
    for k, t in summary["targets"].items():
        lines.append(f"  {k:36s} {_fmt(t['value'], 3):>8s}  {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


@dataclass
class _Image:
    pixels: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    calibration: str | None
    dataset: Any = None


def processing_look(image: np.ndarray, spacing: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """``image`` as another detector's processing might have rendered it (robustness test).

    The training augmentation's unsharp masking, blur and tone curve, with its
    pixel sizes (set on the coarse grid) scaled to this image's pixels.
    """
    from dataclasses import replace as dc_replace

    from models.inference.preprocess import normalise
    from models.training.augment import COARSE_GRID_MM_PER_PX, AugmentConfig, processing

    base = AugmentConfig()
    scale = COARSE_GRID_MM_PER_PX / max(1e-6, float(np.mean(spacing)))
    cfg = dc_replace(base, processing_p=1.0, blur_sigma_px=base.blur_sigma_px * scale,
                     unsharp_sigma_px=(base.unsharp_sigma_px[0] * scale, base.unsharp_sigma_px[1] * scale))
    return processing(normalise(image, 0.5, 99.5), rng, cfg)


def evaluate_weights(weights: Path, data: Path, anatomy: set[str] | None = None,
                     look_seed: int | None = None) -> Scores:
    """Run the ONNX analysis under ``weights`` (segment/, landmarks/) on dataset samples.

    ``look_seed``: give every image a random detector-processing look first
    (:func:`processing_look`), to measure how much the weights depend on one rendering style.
    """
    from models.inference.analyzer import HipAnalyzer

    analyzer = HipAnalyzer.from_weights(weights)
    scores = Scores()
    for sample in labelled_films(data, anatomy):
        image = sample.image.pixels
        if look_seed is not None:
            image = processing_look(image, sample.spacing, np.random.default_rng((look_seed, zlib.crc32(sample.name.encode()))))
        pred = analyzer(_Image(image, sample.spacing, sample.image.calibration))
        score_image(scores, pred, sample.masks, sample.landmarks, sample.measurements, sample.spacing, sample.name)
    return scores


@dataclass
class LabelledFilm:
    """One dataset sample as the analysis sees it (``image``) and its truth."""

    name: str
    image: _Image
    masks: dict[str, np.ndarray]
    landmarks: dict[str, Any]
    measurements: dict[str, float | None]

    @property
    def spacing(self) -> tuple[float, float]:
        return self.image.pixel_spacing_mm


def labelled_films(data: Path, anatomy: set[str] | None = None) -> Iterator[LabelledFilm]:
    """The samples of a dataset folder (of ``anatomy`` only, when given), one at a time, with their truth."""
    from models.training.dataset import list_samples

    for ref in list_samples(data):
        if anatomy is not None and str(ref.meta.get("anatomy", "")) not in anatomy:
            continue
        spacing = (float(ref.meta["pixel_spacing_mm"][0]), float(ref.meta["pixel_spacing_mm"][1]))  # type: ignore[index]
        with np.load(ref.npz) as npz:
            image = np.asarray(npz["image"], np.float32)
            masks = {s: np.asarray(npz[s], bool) for s in SEGMENTS if s in npz}
        truth_lm = dict(ref.meta.get("landmarks") or {})  # type: ignore[call-overload]
        truth_meas = ref.meta.get("measurements")
        if not isinstance(truth_meas, dict):
            truth_meas = compute_measurements(truth_lm, spacing, masks)
        yield LabelledFilm(ref.name, _Image(image, spacing, str(ref.meta.get("calibration") or "")), masks,
                           truth_lm, truth_meas)


ROTATION_FINE_TASKS = ("landmarks-fine", "hip-fine")
"""The fine stage of the reference pipeline; ``pelvis-fine`` is trainable but not part of it (no dependable
held-out gain, docs/models.md session 17), so the rotation does not train it."""


def rotation(data: Path, cfg_kwargs: dict[str, Any], out_dir: Path | None = None,
             only: list[str] | None = None, fine: bool = False) -> dict[str, Any]:
    """Train on all anatomies but one, test on that one, for each anatomy; returns the report dict.

    ``fine``: also train the fine stage the reference weights have (:data:`ROTATION_FINE_TASKS`, at their
    default crop grids) per fold.
    """
    from models.training.crop_dataset import load_fine_folder
    from models.training.dataset import list_samples, load_work_sample
    from models.training.export import export_model
    from models.training.train import (
        FINE_DEFAULTS,
        FINE_TASKS,
        TrainConfig,
        manifest_extra,
        train,
        train_fine,
        weights_folder,
    )

    refs = list_samples(data)
    anatomies = sorted({str(r.meta.get("anatomy", "")) for r in refs})
    if len(anatomies) < 2:
        raise ValueError(f"held-out rotation needs at least two anatomies, found {anatomies}")
    work = {r.name: load_work_sample(r, cfg_kwargs.get("size", 192)) for r in refs}
    total = Scores()
    folds: dict[str, Any] = {}
    for held in anatomies:
        if only and held not in only:
            continue
        train_samples = [work[r.name] for r in refs if str(r.meta.get("anatomy", "")) != held]
        base = Path(out_dir) / f"fold_{held}" if out_dir else Path(tempfile.mkdtemp(prefix="hipnode-eval-"))
        summaries = {}
        for task in ("segment", "landmarks", *(ROTATION_FINE_TASKS if fine else ())):
            if task in FINE_TASKS:
                cfg = TrainConfig(task=task, **{**cfg_kwargs, "size": int(FINE_DEFAULTS[task]["size"])})
                crops_from = load_fine_folder(refs, task, float(cfg.mm_per_px or 0), {held})
                model, summary = train_fine(crops_from, cfg)
            else:
                cfg = TrainConfig(task=task, **cfg_kwargs)
                model, summary = train(train_samples, cfg)
            summaries[task] = summary
            export_model(model, task, base / weights_folder(task), cfg.size, f"fold-{held}",
                         {"anatomies": [a for a in anatomies if a != held], "run": summary}, manifest_extra(cfg))
        scores = evaluate_weights(base, data, {held})
        folds[held] = {"summary": summarise(scores), "train": {k: v["train_seconds"] for k, v in summaries.items()}}
        log.info("fold done", extra={"held_out": held})
        print(format_report(folds[held]["summary"], f"held out {held}"), flush=True)
        total.add(scores)
    report = {"folds": folds, "all_folds": summarise(total), "targets": TARGETS}
    print(format_report(report["all_folds"], "all folds (held-out anatomy)"), flush=True)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "eval_analyze.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report
