"""Training dataset builder: seeded synthetic exams in ``docs/training-data.md``'s format."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.algorithms.vocabulary import SEGMENTS
from models.synth.anatomy import load_anatomy
from models.synth.detector import exposed_field
from models.synth.generator import Exam, render_exam, sample_patient, sample_pose


def sample_seed(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: independent of how many samples are built."""
    return np.random.default_rng([int(seed), int(index)])


def render_sample(label_paths: Sequence[str], seed: int, index: int, size_px: int,
                  local_shape_mm: float = 0.0) -> tuple[Exam, str]:
    """One training exam: anatomy, phase and implant sides all drawn from ``(seed, index)``."""
    rng = sample_seed(seed, index)
    path = str(label_paths[int(rng.integers(len(label_paths)))])
    anatomy = load_anatomy(path)
    phase = "post" if rng.random() < 0.5 else "pre"
    roll = rng.random()
    sides = ("right", "left") if roll < 0.2 else (("right",) if roll < 0.6 else ("left",))
    patient = sample_patient(anatomy, rng, sides if phase == "post" else (), local_shape_mm)
    return render_exam(patient, sample_pose(rng), phase, size_px, rng), anatomy.name


def write_sample(exam: Exam, anatomy_name: str, out_dir: Path, name: str) -> None:
    """Write ``NAME.npz`` (image + one boolean mask per segment) and ``NAME.json``."""
    arrays = {"image": exam.presentation.astype(np.float32)}
    arrays.update({seg: exam.masks[seg].astype(bool) for seg in SEGMENTS})
    np.savez_compressed(out_dir / f"{name}.npz", **arrays)
    meta = {
        "landmarks": {k: (None if v is None else [float(v[0]), float(v[1])]) for k, v in exam.landmarks.items()},
        "pixel_spacing_mm": [float(exam.pixel_spacing_mm[0]), float(exam.pixel_spacing_mm[1])],
        "calibration": "magnification_corrected",
        "anatomy": anatomy_name,
        "phase": exam.phase,
        "measurements": {k: (None if v is None else float(v)) for k, v in exam.measurements.items()},
        "exposed_field_px": list(exposed_field(exam.presentation.shape, exam.processing)),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1))


def build_dataset(label_paths: Sequence[str], out_dir: str | Path, samples: int, size_px: int, seed: int,
                  local_shape_mm: float = 0.0) -> int:
    """Write ``samples`` exams to ``out_dir``; returns the number written. Reproducible by ``seed``.

    ``local_shape_mm`` > 0 reshapes each patient's bones locally too (``models.synth.deform``): more
    shapes from the same few anatomies, for networks that must not learn one anatomy's trochanter.
    """
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(samples):
        exam, anatomy_name = render_sample(label_paths, seed, index, size_px, local_shape_mm)
        write_sample(exam, anatomy_name, out, f"sample_{index:06d}")
    (out / "dataset.json").write_text(
        json.dumps({"format": "hipnode-train/1", "samples": samples, "source": "hipnode synth", "seed": seed,
                    "size_px": size_px, "labels": [str(p) for p in label_paths],
                    "local_shape_mm": local_shape_mm}, indent=1)
    )
    return samples
