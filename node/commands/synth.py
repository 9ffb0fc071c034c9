"""``hipnode synth``: synthetic AP pelvis pairs (or a training dataset) with exact ground truth.

Pairs: ``DIR/pair_NNN/{pre.dcm, post.dcm, pre.json, post.json, pre_masks.npz,
post_masks.npz, pair.json}`` (spec "Command contracts"). Dataset:
``--dataset DIR --samples N`` writes docs/training-data.md's format instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

def default_labels() -> list[str]:
    """The bundled pelvic-ref label maps (``models/synth/pelvic_ref``)."""
    from models.synth.reference_data import label_maps

    return [str(p) for p in label_maps() if p.is_file()]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", action="append", metavar="PATH", help="MetaImage label map (.mhd or its folder); repeatable; default: the three bundled pelvic-ref maps (models/synth/pelvic_ref)")
    parser.add_argument("--ct", metavar="PATH", help="CT volume (NIfTI, HU) rendered as one rigid body instead of label maps")
    parser.add_argument("--out", metavar="DIR", help="output folder for pairs")
    parser.add_argument("--pairs", type=int, default=1, help="number of pre/post pairs (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output")
    parser.add_argument("--size", type=int, default=None, metavar="PX", help="image width in pixels (default 2500: full size, 0.15 mm pixels)")
    parser.add_argument("--modality", choices=("DX", "CR"), default="DX", help="DX For Presentation (default) or CR")
    parser.add_argument("--dataset", metavar="DIR", help="build a training dataset (docs/training-data.md) instead of pairs")
    parser.add_argument("--samples", type=int, default=100, help="dataset samples (with --dataset)")
    parser.add_argument("--views", action="store_true",
                        help="with --dataset: films labelled ap, lateral or frog_leg for `hipnode train view` "
                             "(no masks or landmarks)")
    parser.add_argument("--shape-variation", type=float, default=0.0, metavar="MM",
                        help="with --dataset: also reshape each patient's bones locally, 40-80 mm waves of up to "
                        "MM each (default 0: the smooth whole-bone variation only)")


def _check(args: argparse.Namespace) -> str | None:
    if args.dataset is None and args.out is None:
        return "give --out DIR (pairs) or --dataset DIR (training data)"
    if args.pairs < 1:
        return "--pairs must be at least 1"
    if args.size is not None and not 64 <= args.size <= 4096:
        return "--size must be between 64 and 4096 pixels"
    if not 0.0 <= args.shape_variation <= 2.0:
        return "--shape-variation must be between 0 and 2 mm (larger waves crush bone locally)"
    if args.shape_variation and args.dataset is None:
        return "--shape-variation applies to training datasets (--dataset) only"
    if args.views and args.dataset is None:
        return "--views builds a training dataset: give --dataset DIR"
    if args.views and args.shape_variation:
        return "--shape-variation does not apply to --views films"
    if args.ct is not None and args.dataset is not None:
        return "--ct renders pairs only; it cannot build a training dataset"
    if args.ct is not None and not Path(args.ct).is_file():
        return f"--ct {args.ct}: no such file"
    for path in args.labels or []:
        p = Path(path)
        if not (p.is_file() or (p / "label.mhd").is_file()):
            return f"--labels {path}: no MetaImage header (.mhd) there"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        log.error(problem)
        return 2
    labels = [str(p) for p in (args.labels or default_labels())]
    if not labels and args.ct is None:
        log.error("no label maps: pass --labels PATH (bundled models/synth/pelvic_ref not found)")
        return 2
    try:
        import torch  # noqa: F401  (the generator's projector and detector use it)
    except ImportError:
        log.error("hipnode synth needs torch: install the training extra (pip install -e '.[train]')")
        return 2
    from models.synth.volume_io import VolumeFormatError

    try:
        if args.dataset is not None:
            from models.synth.dataset import build_dataset
            from models.synth.views import build_view_dataset

            start = time.perf_counter()
            if args.views:
                n = build_view_dataset(labels, args.dataset, args.samples, args.size or 512, args.seed)
            else:
                n = build_dataset(labels, args.dataset, args.samples, args.size or 512, args.seed, args.shape_variation)
            log.info("wrote %d samples to %s in %.1f s", n, args.dataset, time.perf_counter() - start)
            return 0
        return _write_pairs(args, labels)
    except VolumeFormatError as exc:
        log.error("cannot read the input volume: %s", exc)
        return 2


def _write_pairs(args: argparse.Namespace, labels: list[str]) -> int:
    from models.synth.generator import render_pair

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(args.pairs):
        rng = np.random.default_rng([int(args.seed), index])
        start = time.perf_counter()
        if args.ct is not None:
            from models.synth.ct import load_ct_body, render_ct_pair

            pair = render_ct_pair(load_ct_body(args.ct), rng, args.size)
        else:
            from models.synth.anatomy import load_anatomy

            anatomy = load_anatomy(labels[int(rng.integers(len(labels)))])
            pair = render_pair(anatomy, rng, args.size)
        write_pair(pair, out / f"pair_{index:03d}", args.seed, index, args.modality, rng)
        log.info("pair %d written in %.2f s", index, time.perf_counter() - start)
    return 0


def _pose_change(pair) -> dict[str, float] | None:
    """Post-op minus pre-op pelvic tilt, obliquity and rotation: how far apart the two films' views are."""
    poses = [exam.info.get("pose") for exam in (pair.pre, pair.post)]
    key = "pelvis_tilt_obliquity_rotation_deg"
    if not all(isinstance(p, dict) and key in p for p in poses):
        return None  # CT pairs: one rigid body, posed by their own angles
    change = np.subtract(poses[1][key], poses[0][key])
    return dict(zip(("tilt", "obliquity", "rotation"), (float(v) for v in change)))


def write_pair(pair, folder: Path, seed: int, index: int, modality: str, rng: np.random.Generator) -> None:
    """Write one pair's DICOM, ground-truth JSON, mask NPZ and ``pair.json``."""
    from models.algorithms.deltas import aligned_deltas
    from models.synth.dicom_writer import exam_dataset, identity_for

    folder.mkdir(parents=True, exist_ok=True)
    pid = f"SYN{seed % 10**6:06d}{index:04d}"
    name = f"Synthetic^Hip{index:04d}"
    sex = "F" if rng.random() < 0.55 else "M"
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 40)))
    pre_when = dt.datetime(2021, 1, 4, 8, 0) + dt.timedelta(days=int(rng.integers(0, 900)), minutes=int(rng.integers(0, 600)))
    post_when = pre_when + dt.timedelta(days=int(rng.integers(30, 400)), minutes=int(rng.integers(0, 300)))
    for exam, when, label in ((pair.pre, pre_when, "pre"), (pair.post, post_when, "post")):
        who = identity_for([str(seed), str(index), label], pid, name, birth.strftime("%Y%m%d"), sex, when,
                           "AP pelvis pre-op (synthetic)" if label == "pre" else "AP pelvis post-op (synthetic)")
        ds = exam_dataset(exam, who, modality)
        ds.save_as(folder / f"{label}.dcm", enforce_file_format=True)
        (folder / f"{label}.json").write_text(json.dumps(exam.ground_truth_json(), indent=1))
        np.savez_compressed(folder / f"{label}_masks.npz", **{k: v.astype(bool) for k, v in exam.masks.items()})
    pair_json = {
        "pelvis_points_pre": [[float(x), float(y)] for x, y in pair.points_pre],
        "pelvis_points_post": [[float(x), float(y)] for x, y in pair.points_post],
        # Physical truth: the post-op state seen with the pre-op pelvis pose, in the pre-op frame.
        "delta_measurements": (None if pair.post_in_pre_pose is None else aligned_deltas(
            pair.pre.landmarks, pair.post_in_pre_pose, np.eye(3), pair.pre.pixel_spacing_mm)),
        "pelvis_pose_change_deg": _pose_change(pair),
        "anatomy": pair.pre.info.get("anatomy"),
    }
    (folder / "pair.json").write_text(json.dumps(pair_json, indent=1))
