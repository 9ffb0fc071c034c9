"""Where LinAlign's weighting can matter: the share of RANSAC inliers that lie on a femur, per pair.

LinAlign weights each correspondence by P_pelvis(pre) * P_pelvis(post) so that
matches on the femurs, which move independently of the pelvis, do not pull the
homography. After RANSAC only the femur matches consistent with the pelvis's
motion are left, so whether the weighting changes anything depends on how many
of those there are. This script measures it on ``hipnode synth`` pair folders
(the true femur and pelvis masks say where each inlier lies), runs the node's
own ``plain`` and ``weighted`` fits on the same matches, and compares them
pair by pair within strata of the femur share (paired bootstrap, as
``hipnode eval align`` does)::

    .venv/bin/python -m tests.bench.align_femur_inliers PAIRS_DIR [PAIRS_DIR ...]

Pelvis probabilities come from the committed segmentation model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FEMUR_SHARE_STRATA = (0.0, 0.10, 0.20)
"""Lower bounds of the femur share of the inliers reported as strata."""


def _share_on(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    ij = np.clip(np.round(points).astype(int), 0, [mask.shape[1] - 1, mask.shape[0] - 1])
    return mask[ij[:, 1], ij[:, 0]]


def _bootstrap(diffs: np.ndarray, resamples: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    means = rng.choice(diffs, (resamples, len(diffs))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path, help="folders of pair folders (pair.json, *_masks.npz)")
    args = parser.parse_args(argv)

    from models.align.evaluate import load_pair_folder, mean_radial_error
    from models.align.homography import fit_geometric, ransac_inliers
    from models.align.matching import get_matcher
    from models.align.pipeline import AlignSettings, align_pair
    from node.commands.align import pelvis_probability
    from node.commands.align_eval import _read_pixels

    matcher, settings = get_matcher("disk_lightglue"), AlignSettings()
    rows = []
    print(f"{'pair':<24}{'inliers':>8}{'pelvis':>8}{'femur':>7}{'other':>7}{'plain':>8}{'weighted':>9}  (x best)")
    for folder in sorted(f for d in args.data for f in d.iterdir() if (f / "pair.json").is_file()):
        pair = load_pair_folder(folder, _read_pixels, ("segmentation_model",),
                                lambda px, sp: (pelvis_probability(px, sp)[0], None))
        p_pre, p_post = pair.probabilities["segmentation_model"]
        matches = matcher.match(pair.pre, pair.post)
        best = mean_radial_error(fit_geometric(pair.points_pre, pair.points_post), pair.points_pre, pair.points_post)
        ratio = {}
        for method in ("plain", "weighted"):
            result = align_pair(pair.pre, pair.post, p_pre, p_post, method, matcher, settings, matches=matches)
            ratio[method] = (None if result.homography is None else
                             mean_radial_error(result.homography, pair.points_pre, pair.points_post) / best)
        name = f"{folder.parent.name}/{folder.name}"
        if len(matches) < settings.min_matches:
            print(f"{name:<24} too few matches")
            continue
        # plain's consensus: the same RANSAC (threshold, seed) the pipeline runs for plain and weighted
        threshold = settings.ransac_threshold_fraction * float(np.hypot(*pair.post.shape))
        inliers = ransac_inliers(matches.points_pre, matches.points_post, threshold)
        with np.load(folder / "pre_masks.npz") as masks:
            pelvis = _share_on(masks["pelvis"], matches.points_pre)
            femur = _share_on(masks["femur_right"] | masks["femur_left"], matches.points_pre) & ~pelvis
        n = max(int(inliers.sum()), 1)
        shares = [(inliers & pelvis).sum() / n, (inliers & femur).sum() / n]
        shares.append(1.0 - sum(shares))
        fmt = ["   n/a" if ratio[m] is None else f"{ratio[m]:6.2f}x" for m in ("plain", "weighted")]
        print(f"{name:<24}{int(inliers.sum()):>8}{shares[0]:>8.2f}{shares[1]:>7.2f}{shares[2]:>7.2f}"
              f"{fmt[0]:>8}{fmt[1]:>9}", flush=True)
        rows.append((shares[1], ratio["plain"], ratio["weighted"]))
    print("\nweighted - plain (units of the best possible MRE; negative: weighted better), pairs both aligned:")
    for low in FEMUR_SHARE_STRATA:
        kept = [(p, w) for share, p, w in rows if share >= low and p is not None and w is not None]
        if not kept:
            continue
        diffs = np.array([w - p for p, w in kept])
        lo, hi = _bootstrap(diffs)
        verdict = "measurably better" if hi < 0 else ("measurably worse" if lo > 0 else "no measurable difference")
        print(f"  femur share >= {low:.2f}: {len(kept):>3} pairs  mean {diffs.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]"
              f"  better/worse {int((diffs < 0).sum())}/{int((diffs > 0).sum())}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
