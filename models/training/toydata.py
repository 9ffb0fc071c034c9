"""A toy dataset in the training-data format, for smoke tests of the training pipeline.

Simple geometric stand-ins (a pelvic ring, two femurs with round heads, roofs,
joint spaces, optional implants) with exact labels and landmarks, seeded.
It proves that reading, training, export and inference fit together; it says
nothing about accuracy on radiographs (the synthetic generator is for that).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from models.algorithms.vocabulary import LANDMARKS, SEGMENTS


def _disc(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def toy_sample(rng: np.random.Generator, shape: tuple[int, int] = (320, 384), post_op: bool = False
               ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, list[float] | None]]:
    """One image, its masks and landmarks (patient right on the image left)."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    cxm = cols / 2 + rng.uniform(-8, 8)
    head_y = rows * 0.5 + rng.uniform(-8, 8)
    half = cols * 0.22 + rng.uniform(-6, 6)
    r = 20 + rng.uniform(-3, 3)
    masks: dict[str, np.ndarray] = {}
    pelvis = (((xx - cxm) / (cols * 0.36)) ** 2 + ((yy - rows * 0.38) / (rows * 0.3)) ** 2 <= 1.0)
    pelvis &= ~((((xx - cxm) / (cols * 0.12)) ** 2 + ((yy - rows * 0.62) / (rows * 0.1)) ** 2) <= 1.0)
    marks: dict[str, list[float] | None] = {}
    for side, sx in (("right", cxm - half), ("left", cxm + half)):
        head = _disc(shape, sx, head_y, r)
        outward = -1 if side == "right" else 1
        shaft_x = sx + outward * 18
        femur = head | ((np.abs(xx - shaft_x) <= 12) & (yy >= head_y) & (yy <= rows - 1))
        femur |= (np.abs((xx - sx) - outward * (yy - head_y) * 0.6) <= 9) & (yy >= head_y) & (yy <= head_y + 30)
        dist = np.sqrt((xx - sx) ** 2 + (yy - head_y) ** 2)
        sector = (yy < head_y) & (np.abs(np.degrees(np.arctan2(xx - sx, head_y - yy))) <= 60)
        joint = sector & (dist > r) & (dist <= r + 4)
        roof = sector & (dist > r + 4) & (dist <= r + 12)
        pelvis &= ~(dist <= r + 4)
        masks[f"femur_{side}"] = femur
        masks[f"femoral_head_{side}"] = head
        masks[f"acetabular_roof_{side}"] = roof
        masks[f"joint_space_{side}"] = joint
        implant = np.zeros(shape, bool)
        if post_op and side == "right":
            implant = _disc(shape, sx, head_y, r * 0.8) | ((np.abs(xx - shaft_x) <= 6) & (yy >= head_y) & (yy <= head_y + 110))
            marks[f"cup_rim_lateral_{side}"] = [sx + outward * r * 0.9, head_y - r * 0.4]
            marks[f"cup_rim_medial_{side}"] = [sx - outward * r * 0.6, head_y + r * 0.6]
            marks[f"stem_tip_{side}"] = [shaft_x, head_y + 110]
        else:
            for n in ("cup_rim_lateral", "cup_rim_medial", "stem_tip"):
                marks[f"{n}_{side}"] = None
        masks[f"implant_{side}"] = implant
        marks[f"femoral_head_centre_{side}"] = [sx, head_y]
        marks[f"greater_trochanter_{side}"] = [sx + outward * 35, head_y - 5]
        marks[f"lesser_trochanter_{side}"] = [shaft_x - outward * 12, head_y + 45]
        marks[f"ischial_tuberosity_{side}"] = [cxm + outward * 40, rows * 0.68]
        marks[f"acetabular_lateral_edge_{side}"] = [sx + outward * (r + 8) * 0.87, head_y - (r + 8) * 0.5]
        marks[f"femoral_shaft_proximal_{side}"] = [shaft_x, head_y + 65]
        marks[f"femoral_shaft_distal_{side}"] = [shaft_x, min(rows - 2.0, head_y + 125)]
    masks["pelvis"] = pelvis
    marks["pubic_symphysis"] = [cxm, rows * 0.6]
    image = 0.2 + 0.5 * pelvis + 0.6 * (masks["femur_right"] | masks["femur_left"])
    image = image + 1.5 * (masks["implant_right"] | masks["implant_left"])
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.5) + rng.normal(0, 0.03, shape).astype(np.float32)
    return image.astype(np.float32), {k: masks[k] for k in SEGMENTS}, {k: marks[k] for k in LANDMARKS}


def write_toy_dataset(folder: str | Path, samples: int, seed: int = 0, shape: tuple[int, int] = (320, 384),
                      anatomies: tuple[str, ...] = ("Toy-A", "Toy-B", "Toy-C")) -> Path:
    """Write ``samples`` toy samples to ``folder`` in the training-data format."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(samples):
        post = bool(i % 2)
        image, masks, marks = toy_sample(rng, shape, post_op=post)
        name = f"toy_{i:04d}"
        np.savez_compressed(out / f"{name}.npz", image=image, **masks)
        (out / f"{name}.json").write_text(json.dumps({
            "landmarks": marks, "pixel_spacing_mm": [1.0, 1.0], "calibration": "detector_plane",
            "anatomy": anatomies[i % len(anatomies)], "phase": "post" if post else "pre"}))
    (out / "dataset.json").write_text(json.dumps({"format": "hipnode-train/1", "samples": samples,
                                                  "source": "models.training.toydata", "seed": seed}))
    return out
