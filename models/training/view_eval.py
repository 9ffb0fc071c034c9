"""``hipnode eval view``: the view models scored on labelled films (confusion, refusals, by pose).

What matters to the node is two counts: AP films it would refuse (an analysis
lost, with a visible reason) and lateral or frog-leg films it would let through
(landmarks invented). Both are printed at the threshold the analysis uses, for
each model alone and for the analysis's rule (refused only when every model
says not AP), with the AP films' lowest AP probabilities to show the margin.
Films carrying the generator's ``pose`` are also tallied by how far the pelvis
is turned about the long axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from models.inference.runtime import WEIGHTS_ROOT
from models.inference.segmentation import SegmentationModel
from models.inference.view import MIN_AP_PROBABILITY, VIEWS, ViewModel, ViewVerdict
from models.training.dataset import list_samples, read_image

TURN_BINS_DEG = (0, 10, 20, 30, 45, 55, 70, 91)
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class ScoredFilm:
    name: str
    anatomy: str
    truth: str
    verdicts: tuple[ViewVerdict, ...]
    turn_deg: float | None

    def refused(self, threshold: float) -> bool:
        """The analysis's rule: every model gives AP less than ``threshold``."""
        return all(v.says_not_ap(threshold) for v in self.verdicts)


def score_folder(weights_dirs: list[Path], folders: list[Path], anatomies: set[str] | None = None,
                 segmentation_dir: Path | None = None) -> list[ScoredFilm]:
    """Every view model's verdict on every film labelled with a view in ``folders``, behind the
    segmentation the maps models were trained on (``segmentation_dir``, default the committed one; checked)."""
    models = [ViewModel(d) for d in weights_dirs]
    segmentation = SegmentationModel(segmentation_dir or WEIGHTS_ROOT / "segment")
    for model in models:
        model.check_segmentation(segmentation.manifest.name, segmentation.manifest.version)
    scored = []
    for folder in folders:
        for ref in list_samples(folder):
            truth, anatomy = ref.meta.get("view"), str(ref.meta.get("anatomy", ""))
            if truth not in VIEWS or (anatomies and anatomy not in anatomies):
                continue
            with np.load(ref.npz) as data:
                image, spacing = read_image(data, ref)
            seg = segmentation(image, spacing)
            pose = ref.meta.get("pose") or {}
            turn = abs(float(pose["pelvis_deg"][2])) if isinstance(pose, dict) and "pelvis_deg" in pose else None
            scored.append(ScoredFilm(f"{folder.name}/{ref.name}", anatomy, str(truth),
                                     tuple(m(image, spacing, seg) for m in models), turn))
    return scored


def _counts(films: list[ScoredFilm], refused: Callable[[ScoredFilm, float], bool], threshold: float) -> str:
    ap = [f for f in films if f.truth == "ap"]
    other = [f for f in films if f.truth != "ap"]
    frog = [f for f in other if f.truth == "frog_leg"]
    return (f"AP films refused {sum(refused(f, threshold) for f in ap)} of {len(ap)}; lateral / frog-leg films "
            f"analysed {sum(not refused(f, threshold) for f in other)} of {len(other)} "
            f"(frog-leg {sum(not refused(f, threshold) for f in frog)} of {len(frog)})")


def format_view_report(scored: list[ScoredFilm], threshold: float = MIN_AP_PROBABILITY) -> str:
    """Per model: confusion matrix and error counts; then the analysis's rule at several thresholds,
    the films it gets wrong at ``threshold``, and the by-turn table."""
    if not scored:
        return "no film labelled with a view"
    lines = [f"{len(scored)} films, anatomies {sorted({s.anatomy for s in scored})}"]
    for i, first in enumerate(scored[0].verdicts):
        lines += [f"model {i + 1} ({first.source}): confusion (rows: truth, columns: most likely view):",
                  "  " + " " * 10 + "".join(f"{v:>10s}" for v in VIEWS)]
        for truth in VIEWS:
            row = [s.verdicts[i].view for s in scored if s.truth == truth]
            lines.append(f"  {truth:10s}" + "".join(f"{row.count(v):10d}" for v in VIEWS))
        lines.append(f"  alone, at AP < {threshold}: "
                     + _counts(scored, lambda f, t, i=i: f.verdicts[i].says_not_ap(t), threshold))
    lines.append("the analysis's rule (refused when every model gives AP less than the threshold):")
    for t in sorted({*THRESHOLDS, threshold}):
        lines.append(f"  AP < {t}: " + _counts(scored, ScoredFilm.refused, t))
    ap = sorted((f for f in scored if f.truth == "ap"), key=lambda f: max(v.probabilities["ap"] for v in f.verdicts))
    lines.append("  AP films' lowest (over films) of the highest AP probability (over models): "
                 + ", ".join(f"{max(v.probabilities['ap'] for v in f.verdicts):.3f}" for f in ap[:5]))
    wrong = [f for f in scored if f.refused(threshold) != (f.truth != "ap")]
    for f in wrong[:20]:
        lines.append(f"    {f.name} ({f.truth}, turned {f.turn_deg} deg): " + "; ".join(v.describe() for v in f.verdicts))
    turned = [s for s in scored if s.turn_deg is not None and s.truth != "frog_leg"]
    if turned:
        lines.append("by turn of the pelvis about the long axis (AP and lateral films): refused / films")
        for lo, hi in pairwise(TURN_BINS_DEG):
            band = [s for s in turned if lo <= s.turn_deg < hi]  # type: ignore[operator]
            if band:
                lines.append(f"  {lo:2d}-{hi - 1:2d} deg: {sum(s.refused(threshold) for s in band)} / {len(band)}")
    return "\n".join(lines)
