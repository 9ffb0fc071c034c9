"""View-classification dataset: the generator's films as AP, lateral or frog-leg views.

The analysis is defined on AP pelvis and hip films only. A header can say AP
when the film is not (session 22: at 512 px 10 of 24 of the generator's own
laterals with an AP header passed the segmentation's content check, and no
frog-leg view was refused), so the node needs to tell the view from the
pixels. The generator renders any pose, so it can label its own films:

* ``ap``: the training films' poses, a third of them turned up to 30 degrees
  about the long axis (a rotated AP is still analysed, its measurements as
  rotated as the film);
* ``lateral``: the pelvis turned 55-90 degrees either way (lateral and
  cross-table-like projections), the femurs flexed up to 60 degrees;
* ``frog_leg``: the pelvis AP, one or both femurs flexed, abducted and
  rotated far from neutral (a frog-leg lateral).

Poses between 30 and 55 degrees (Judet-like obliques) are left out: they are
neither class. Samples are in ``docs/training-data.md``'s format with a
``"view"`` key (and the pose that made it); no masks or landmarks are written,
since a non-AP film has no spec truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.inference.view import VIEWS
from models.synth.anatomy import load_anatomy
from models.synth.dataset import sample_seed
from models.synth.generator import SIDES, Exam, ExamPose, render_exam, sample_patient, sample_pose

AP_TURN_DEG = 30.0
LATERAL_TURN_DEG = (55.0, 90.0)
FROG_FLEXION_DEG, FROG_ABDUCTION_DEG, FROG_ROTATION_DEG = (20.0, 70.0), (25.0, 60.0), (20.0, 60.0)


def view_pose(view: str, rng: np.random.Generator) -> ExamPose:
    """A pose of the given view class, drawn from ``rng``."""
    pose = sample_pose(rng)
    tilt, obliquity, rotation = pose.pelvis_deg
    if view == "ap":
        if rng.random() < 1 / 3:
            rotation = float(rng.choice([-1.0, 1.0]) * rng.uniform(8.0, AP_TURN_DEG))
        return replace(pose, pelvis_deg=(tilt, obliquity, rotation))
    if view == "lateral":
        turn = float(rng.choice([-1.0, 1.0]) * rng.uniform(*LATERAL_TURN_DEG))
        femurs = {s: (float(rng.uniform(0.0, 60.0)), abduction, axial) for s, (_, abduction, axial) in pose.femur_deg.items()}
        return replace(pose, pelvis_deg=(tilt, obliquity, turn), femur_deg=femurs)
    if view == "frog_leg":
        posed = list(SIDES) if rng.random() < 0.7 else [SIDES[int(rng.integers(2))]]
        femurs = dict(pose.femur_deg)
        for side in posed:
            femurs[side] = (float(rng.uniform(*FROG_FLEXION_DEG)), float(rng.uniform(*FROG_ABDUCTION_DEG)),
                            float(rng.choice([-1.0, 1.0]) * rng.uniform(*FROG_ROTATION_DEG)))
        return replace(pose, femur_deg=femurs)
    raise ValueError(f"unknown view {view!r}; one of {VIEWS}")


def render_view_sample(label_paths: Sequence[str], seed: int, index: int, size_px: int) -> tuple[Exam, str, str, ExamPose]:
    """One film of a view drawn from ``(seed, index)``: (exam, anatomy name, view, pose)."""
    rng = sample_seed(seed, index)
    anatomy = load_anatomy(str(label_paths[int(rng.integers(len(label_paths)))]))
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    phase = "post" if rng.random() < 0.5 else "pre"
    roll = rng.random()
    sides = ("right", "left") if roll < 0.2 else (("right",) if roll < 0.6 else ("left",))
    patient = sample_patient(anatomy, rng, sides if phase == "post" else ())
    pose = view_pose(view, rng)
    return render_exam(patient, pose, phase, size_px, rng, truth=False), anatomy.name, view, pose


def build_view_dataset(label_paths: Sequence[str], out_dir: str | Path, samples: int, size_px: int, seed: int) -> int:
    """Write ``samples`` labelled views to ``out_dir``; returns the number written. Reproducible by ``seed``."""
    if samples < 1:
        raise ValueError("--samples must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(samples):
        exam, anatomy_name, view, pose = render_view_sample(label_paths, seed, index, size_px)
        name = f"view_{index:06d}"
        np.savez_compressed(out / f"{name}.npz", image=exam.presentation.astype(np.float32))
        meta = {"view": view, "pixel_spacing_mm": [float(v) for v in exam.pixel_spacing_mm],
                "calibration": "magnification_corrected", "anatomy": anatomy_name, "phase": exam.phase,
                "pose": {"pelvis_deg": [round(v, 2) for v in pose.pelvis_deg],
                         "femur_deg": {s: [round(v, 2) for v in d] for s, d in pose.femur_deg.items()}}}
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1))
    (out / "dataset.json").write_text(json.dumps(
        {"format": "hipnode-train/1", "samples": samples, "source": "hipnode synth --views", "seed": seed,
         "size_px": size_px, "labels": [str(p) for p in label_paths], "views": list(VIEWS)}, indent=1))
    return samples
