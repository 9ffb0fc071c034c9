"""Hemiarthroplasty films: does the analysis invent a cup?

The reference models were trained on total hips only. This renders post-op
films with hemiarthroplasties (the generator's ``hemi_sides``: no cup, a head
of the native head's size) from the three bundled anatomies, runs the
analysis on each, and prints per replaced side whether cup rims were reported
(there is no cup, so any is invented) and how far the head centre is from the
truth, then the totals.

    python -m tests.bench.hemi_check [--size 1000|full] [--seeds 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SIDE_PLANS = (("right",), ("left",), ("right", "left"), ("right",))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1000", help="image columns, or 'full' (2500)")
    parser.add_argument("--seeds", type=int, default=4, help="films per anatomy")
    args = parser.parse_args(argv)

    from models.inference.analyzer import HipAnalyzer
    from models.synth.anatomy import load_anatomy
    from models.synth.generator import render_exam, sample_patient, sample_pose
    from models.synth.reference_data import ANATOMIES, label_map

    size = None if args.size == "full" else int(args.size)
    analyzer = HipAnalyzer.from_weights(Path(__file__).resolve().parents[2] / "models" / "weights")
    invented, errors, refused = 0, [], 0
    for index, name in enumerate(ANATOMIES):
        anatomy = load_anatomy(str(label_map(name)))
        for seed in range(args.seeds):
            rng = np.random.default_rng([77, seed, index])
            sides = SIDE_PLANS[seed % len(SIDE_PLANS)]
            patient = sample_patient(anatomy, rng, sides, hemi_sides=sides)
            exam = render_exam(patient, sample_pose(rng), "post", size, rng)
            film = SimpleNamespace(pixels=exam.presentation, pixel_spacing_mm=exam.pixel_spacing_mm,
                                   calibration="magnification_corrected", dataset=None)  # a RadiographLike
            result = analyzer(film)
            if result.not_analysable:
                refused += 1
                print(f"{name} film {seed}: not analysable: {result.not_analysable}")
                continue
            for side in sides:
                rims = [result.landmarks.get(f"cup_rim_{end}_{side}") for end in ("lateral", "medial")]
                invented += any(p is not None for p in rims)
                truth, found = exam.landmarks[f"femoral_head_centre_{side}"], result.landmarks.get(f"femoral_head_centre_{side}")
                error = None if truth is None or found is None else float(np.hypot(*np.subtract(found, truth)) * exam.pixel_spacing_mm[0])
                if error is not None:
                    errors.append(error)
                shown = "n/a" if error is None else f"{error:.2f} mm"
                print(f"{name} film {seed} {side}: cup rims {'INVENTED' if any(p is not None for p in rims) else 'none'}, head centre {shown}")
    print(f"replaced sides {len(errors)}; cup rims invented on {invented}; films refused {refused}; "
          f"head centre error mean {np.mean(errors):.2f} mm, max {np.max(errors):.2f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
