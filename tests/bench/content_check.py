"""How the analysis's content check answers images that are not what the header says.

The check (``models.inference.analyzer.content_problem``) decides, from the
reference segmentation, whether an image holds a pelvis with a hip joint; then
the view models (``models/inference/view.py``, when their weights are installed)
whether it is an AP view rather than a lateral or frog-leg one.
It matters when a header lies (a chest film sent as PELVIS), and it must not
turn real hip films away. This prints its answer for three groups:

* real non-hip images from pydicom's test data (``pydicom-data``, MIT: CR chest,
  CR distal tibia, ultrasound, MR, CT), their header made to say CR PELVIS AP;
* crude parallel-beam projections of the three pelvic-ref label maps (cortex,
  marrow and body outline only, another renderer than ``hipnode synth``): AP
  views, which should pass, and lateral and 45-degree oblique views, which
  should not. They are far from the films the network was trained on, so they
  show how it behaves off its domain more than what a real lateral would get;
* the generator's own films of the three anatomies turned about the body's long
  axis (``--views``: 0 to 90 degrees, pre- and post-op, ``render_exam(...,
  truth=False)`` with its automatic exposure beyond 15 degrees): AP should pass,
  true laterals should not; in between (a rotated AP, a Judet oblique) it is
  printed what happens; and the same patients in a frog-leg pose (pelvis AP,
  both femurs flexed 35, abducted 40 and rotated 40 degrees), which should not;
* any ``hipnode synth --dataset`` folders given with ``--data``: every film
  should pass (the count refused is printed).

    python -m tests.bench.content_check [--data DIR ...] [--views --size 1000 --seeds 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REAL_IMAGES = {
    "RG1_UNCR.dcm": "CR chest PA",
    "RG1_J2KR.dcm": "CR chest PA, JPEG 2000",
    "RG3_UNCR.dcm": "CR distal tibia",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "ultrasound frame",
    "examples_overlay.dcm": "MR abdomen",
    "MR-SIEMENS-DICOM-WithOverlays.dcm": "MR",
    "MR2_J2KI.dcm": "MR",
    "693_J2KR.dcm": "CT slice",
    "JPEG-LL.dcm": "secondary capture",
}
ANATOMIES = ("Pelvic-Ref-001", "Pelvic-Ref-002", "Pelvic-Ref-004")
LABEL_ROOT = Path(__file__).resolve().parents[2] / "models" / "synth" / "pelvic_ref"
MU_SOFT_PER_MM, MU_MARROW_PER_MM, MU_CORTEX_PER_MM = 0.02, 0.02, 0.06


def crude_projections(anatomy_dir: Path) -> dict[str, np.ndarray]:
    """AP, lateral and 45-degree oblique line integrals of a label map at 1 mm pixels (bright = dense).

    Bone is a 2 mm cortex over marrow (uniform bone reads as metal to the network);
    nothing else of the generator's physics: no joint-space carving, no detector.
    """
    from scipy import ndimage

    from models.synth.anatomy import LABEL_FEMUR, LABEL_PELVIS, LABEL_SACRUM, LABEL_SPINE
    from models.synth.volume_io import read_metaimage

    label = read_metaimage(anatomy_dir / "label.mhd")
    zoom = tuple(float(v) for v in label.spacing_mm)  # [x, y, z] onto 1 mm voxels
    body = ndimage.zoom(np.asarray(read_metaimage(anatomy_dir / "mask.mhd").data, dtype=np.float32), zoom, order=1)
    bone = np.isin(np.asarray(label.data), (LABEL_PELVIS, LABEL_FEMUR, LABEL_SACRUM, LABEL_SPINE))
    bone = ndimage.zoom(bone.astype(np.float32), zoom, order=1) > 0.5
    cortex = bone & ~ndimage.binary_erosion(bone, iterations=2)
    mu = MU_SOFT_PER_MM * body + MU_MARROW_PER_MM * bone + (MU_CORTEX_PER_MM - MU_MARROW_PER_MM) * cortex
    oblique = ndimage.rotate(mu, 45, axes=(0, 1), reshape=False, order=1)
    views = {"AP": mu.sum(axis=1), "lateral": mu.sum(axis=0), "oblique 45": oblique.sum(axis=1)}
    rng = np.random.default_rng(0)
    out = {}
    for name, line in views.items():
        image = line.T[::-1].astype(np.float32)  # rows: cranial at the top
        out[name] = image + rng.normal(0.0, 0.01 * float(image.max()), image.shape).astype(np.float32)
    return out


VIEW_ROTATIONS_DEG = (0, 20, 35, 50, 60, 75, 90)
FROG_LEG_FEMUR_DEG = (35.0, 40.0, 40.0)  # flexion, abduction, rotation of both femurs


def generator_views(size: int, seeds: int):
    """(anatomy, rotation or "frog", phase, seed, pixels, spacing) of generator films turned about the long axis,
    then in a frog-leg pose."""
    from dataclasses import replace

    from models.synth.anatomy import load_anatomy
    from models.synth.generator import render_exam, sample_patient, sample_pose
    from models.synth.reference_data import label_map

    for anatomy_name in ANATOMIES:
        anatomy = load_anatomy(str(label_map(anatomy_name)))
        for seed in range(seeds):
            for phase in ("pre", "post"):
                rng = np.random.default_rng([seed, 7])
                patient = sample_patient(anatomy, rng, ("right",) if phase == "post" else ())
                pose = sample_pose(rng)
                for rotation in VIEW_ROTATIONS_DEG:
                    tilt, obliquity, own = pose.pelvis_deg
                    turned = replace(pose, pelvis_deg=(tilt, obliquity, rotation + 0.3 * own))
                    exam = render_exam(patient, turned, phase, size, np.random.default_rng(seed), truth=False)
                    yield anatomy_name, rotation, phase, seed, exam.presentation, exam.pixel_spacing_mm
                frog = replace(pose, femur_deg={side: FROG_LEG_FEMUR_DEG for side in pose.femur_deg})
                exam = render_exam(patient, frog, phase, size, np.random.default_rng(seed), truth=False)
                yield anatomy_name, "frog", phase, seed, exam.presentation, exam.pixel_spacing_mm


def lying_header_pixels(name: str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """One pydicom test image as the node would read it after its header claimed CR PELVIS AP."""
    from node.imaging import radiograph_from_dataset
    from tests.real_images import with_hip_film_header

    radiograph = radiograph_from_dataset(with_hip_film_header(name))
    return radiograph.pixels, radiograph.pixel_spacing_mm


def main(argv: list[str] | None = None) -> int:
    from models.inference.analyzer import (
        HipAnalyzer,
        content_problem,
        hip_joints,
        operated_sides,
        pixel_problem,
    )
    from models.inference.view import view_problem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="hipnode synth --dataset folder")
    parser.add_argument("--views", action="store_true", help="also the generator's films turned 0-90 degrees")
    parser.add_argument("--size", type=int, default=1000, help="columns of the --views films")
    parser.add_argument("--seeds", type=int, default=2, help="patients per anatomy for --views")
    args = parser.parse_args(argv)
    analyzer = HipAnalyzer.from_weights()
    segment = analyzer.segmentation
    print("view models: " + (", ".join(f"{v.manifest.name} {v.manifest.version} ({v.source})" for v in analyzer.views)
                             or "none installed"))

    def answer(pixels: np.ndarray, spacing: tuple[float, float] | None) -> str:
        problem = pixel_problem(pixels, spacing)
        if problem is None:
            seg = segment(pixels, spacing)
            problem = content_problem(seg)
            if problem is None:
                problem = view_problem([view(pixels, spacing, seg) for view in analyzer.views])
            if problem is None:
                operated = operated_sides(seg)
                joints = [f"{side} {'implant' if operated[side] else 'head + roof'}"
                          for side, found in hip_joints(seg).items() if found]
                return f"accepted ({', '.join(joints)})"
        return f"refused: {problem}"

    print("real non-hip images, header made to say CR PELVIS AP (should all be refused):")
    for name, what in REAL_IMAGES.items():
        print(f"  {name:36s} {what:24s} {answer(*lying_header_pixels(name))}")
    print("crude projections of the label maps (AP should be accepted, lateral and oblique refused):")
    for anatomy in ANATOMIES:
        for view, image in crude_projections(LABEL_ROOT / anatomy).items():
            print(f"  {anatomy:16s} {view:11s} {answer(image, (1.0, 1.0))}")
    if args.views:
        print(f"generator films turned about the long axis, {args.size} px (0 should be accepted, 90 and frog-leg "
              "refused):")
        tally: dict[int | str, list[int]] = {}
        for anatomy, rotation, phase, seed, pixels, spacing in generator_views(args.size, args.seeds):
            verdict = answer(pixels, spacing)
            tally.setdefault(rotation, [0, 0])[0 if verdict.startswith("accepted") else 1] += 1
            print(f"  {anatomy:16s} {rotation!s:>4s} {phase:4s} patient {seed}: {verdict}")
        for rotation, (accepted, refused_count) in tally.items():
            print(f"  {rotation!s:>4s}: {accepted} accepted, {refused_count} refused")
    for folder in args.data:
        refused = []
        samples = sorted(folder.glob("*.npz"))
        for npz in samples:
            spacing = json.loads(npz.with_suffix(".json").read_text()).get("pixel_spacing_mm")
            with np.load(npz) as data:
                verdict = answer(data["image"], tuple(spacing) if spacing else None)
            if not verdict.startswith("accepted"):
                refused.append(f"{npz.name}: {verdict}")
        print(f"{folder}: {len(refused)} of {len(samples)} synthetic hip films refused (should be 0)")
        for line in refused:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
