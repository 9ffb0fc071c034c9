"""Preview PNGs for docs/synth.md: a pre/post pair and its ground-truth overlay.

    .venv/bin/python -m models.synth.preview --out docs/images [--seed 21] [--labels PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from models.synth.anatomy import load_anatomy
from models.synth.generator import Exam, render_pair
from models.synth.reference_data import label_map

COLOURS = {  # BGR
    "pelvis": (80, 200, 80),
    "femur_right": (220, 120, 40),
    "femur_left": (200, 60, 200),
    "femoral_head_right": (0, 220, 255),
    "femoral_head_left": (0, 220, 255),
    "acetabular_roof_right": (255, 255, 0),
    "acetabular_roof_left": (255, 255, 0),
    "joint_space_right": (0, 140, 255),
    "joint_space_left": (0, 140, 255),
    "implant_right": (60, 60, 255),
    "implant_left": (60, 60, 255),
}


def overlay(exam: Exam) -> np.ndarray:
    """Mask outlines and landmark dots over the presentation image (BGR uint8)."""
    image = cv2.cvtColor((exam.presentation * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    for name, colour in COLOURS.items():
        contours, _ = cv2.findContours(exam.masks[name].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, colour, 2)
    for point in exam.landmarks.values():
        if point is not None:
            cv2.circle(image, (int(round(point[0])), int(round(point[1]))), 5, (0, 0, 255), -1)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--labels", default=str(label_map("Pelvic-Ref-002")))
    parser.add_argument("--width", type=int, default=560)
    args = parser.parse_args(argv)
    pair = render_pair(load_anatomy(args.labels), np.random.default_rng(args.seed), 1280)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = (args.width, int(round(args.width * pair.pre.geometry.rows / pair.pre.geometry.cols)))
    for exam in (pair.pre, pair.post):
        grey = cv2.resize((exam.presentation * 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / f"synth_{exam.phase}.png"), grey, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        cv2.imwrite(str(out / f"synth_{exam.phase}_overlay.png"), cv2.resize(overlay(exam), size, interpolation=cv2.INTER_AREA), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
