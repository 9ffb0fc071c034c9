"""How close the node's pre/post deltas come to the truth, by how far apart the two films' views are.

The node maps the post-op hip centres into the pre-op film through the pelvis
alignment and measures leg length and offset in each film on its own
(``models/algorithms/deltas.py``). Two truths are compared, from ``hipnode
synth`` pair folders:

* **physical** (``pair.json`` ``delta_measurements``): the post-op state
  rendered with the pre-op exam's pelvis pose, measured against the pre-op
  film. What the surgeon wants to know. Once the pelvis turned out of plane
  between the exams no 2D mapping reproduces it, so it bounds every method.
* **ring fit**: the node's rule on the true landmarks of both films, with the
  homography fitted to the true pelvic-ring points: what the 2D method gives
  with perfect landmarks and the best homography over the whole ring.

Hip-centre deltas follow material points (head or cup centre); the leg-length
and offset deltas also carry how their landmarks are read off each film (the
lesser trochanter's flat medial face, the shaft levels where the film ends), so
they differ between films even where nothing moved. Each pair runs the node's
own steps (``node.pipeline.compute``: analyse, align, ``pair_deltas``)::

    .venv/bin/python -m tests.bench.delta_accuracy PAIRS_DIR [PAIRS_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "hip centre": ("delta_hip_centre_height", "delta_hip_centre_lateral"),
    "femoral offset": ("delta_femoral_offset",),
    "leg length": ("delta_leg_length_discrepancy",),
}
MODEST_TILT_DEG = 6.0
MODEST_ROTATION_DEG = 5.0
"""A pair whose pelvic tilt and rotation changed by at most these is a "modest pose change"."""


def _errors(measured: dict[str, float | None], truth: dict[str, float | None]) -> dict[str, float]:
    return {name: abs(value - truth[name]) for name, value in measured.items()
            if value is not None and truth.get(name) is not None}


def _summary(rows: list[dict[str, float]], prefixes: tuple[str, ...]) -> str:
    errors = np.array([e for row in rows for name, e in row.items() if name.startswith(prefixes)])
    if errors.size == 0:
        return f"{'-':>22}"
    return f"{errors.mean():6.2f} mm ({np.mean(errors > 2.0):4.0%} > 2){errors.size:>4}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", type=Path, help="folders of hipnode synth pair folders")
    args = parser.parse_args(argv)

    from models.algorithms.deltas import pre_post_deltas
    from models.align.homography import weighted_normalized_dlt
    from node.imaging import load_radiograph
    from node.pipeline.compute import align, analyse, pair_deltas

    folders = sorted(f for d in args.data for f in d.iterdir() if (f / "pair.json").is_file())
    physical, ring, modest = [], [], []
    print(f"{'pair':<24}{'dtilt':>7}{'drot':>7}  hip centre error vs physical / ring fit (mm, mean)")
    for folder in folders:
        pair = json.loads((folder / "pair.json").read_text())
        truth = {role: json.loads((folder / f"{role}.json").read_text()) for role in ("pre", "post")}
        change = pair.get("pelvis_pose_change_deg")
        if not pair.get("delta_measurements") or change is None:
            print(f"{folder}: no physical delta truth (written before it existed); run hipnode synth again")
            return 2
        pre, post = (analyse(load_radiograph(folder / f"{role}.dcm")) for role in ("pre", "post"))
        alignment = align(pre, post)
        name = f"{folder.parent.name}/{folder.name}"
        if alignment.homography is None:
            print(f"{name:<24} not aligned: {alignment.failure}")
            continue
        measured = pair_deltas(pre, post, alignment)
        ring_h = weighted_normalized_dlt(np.asarray(pair["pelvis_points_pre"]), np.asarray(pair["pelvis_points_post"]))
        ring_truth = pre_post_deltas(truth["pre"]["landmarks"], truth["post"]["landmarks"], ring_h,
                                     truth["pre"]["pixel_spacing_mm"], truth["post"]["pixel_spacing_mm"])
        physical.append(_errors(measured, pair["delta_measurements"]))
        ring.append(_errors(measured, ring_truth))
        modest.append(abs(change["tilt"]) <= MODEST_TILT_DEG and abs(change["rotation"]) <= MODEST_ROTATION_DEG)
        hip = [_summary([row], GROUPS["hip centre"]).split(" mm")[0].strip() for row in (physical[-1], ring[-1])]
        print(f"{name:<24}{change['tilt']:>7.1f}{change['rotation']:>7.1f}  {hip[0]:>6} / {hip[1]:>6}", flush=True)

    strata = {
        "all aligned pairs": [True] * len(modest),
        f"modest pose change (|dtilt| <= {MODEST_TILT_DEG:g}, |drot| <= {MODEST_ROTATION_DEG:g} deg)": modest,
        "larger pose change": [not m for m in modest],
    }
    print(f"\nmean absolute error of the node's deltas (share over 2 mm, count) of {len(folders)} pairs")
    for label, keep in strata.items():
        n = int(np.sum(keep))
        print(f"{label}: {n} pairs")
        for group, prefixes in GROUPS.items():
            kept_physical = [row for row, k in zip(physical, keep) if k]
            kept_ring = [row for row, k in zip(ring, keep) if k]
            print(f"  {group:<16} vs physical {_summary(kept_physical, prefixes)}   vs ring fit {_summary(kept_ring, prefixes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
