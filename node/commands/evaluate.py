"""``hipnode eval <what>``: evaluation commands that print numbers.

Sub-commands (each one's logic lives in ``models/``; this file only parses):

* ``analyze``: segmentation, landmarks and measurements on held-out anatomy
  (``models/training/evaluate.py``).
* ``align``: pre/post alignment (added by the alignment module).
* ``view``: the view model (AP / lateral / frog-leg) on labelled films
  (``models/training/view_eval.py``).
* ``hip-threshold``: where the fine hip model's head and roof masks start,
  calibrated on the minimum joint-space width (``models/training/calibrate_hip.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def _seed(text: str) -> int:
    """A generator seed: numpy refuses negative ones, so say so before any film is read."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _configure_analyze(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset folder (docs/training-data.md) with 'anatomy' per sample")
    p.add_argument("--weights", type=Path, help="score these weights (segment/, landmarks/) instead of the rotation")
    p.add_argument("--anatomy", action="append", help="with --weights: only these anatomies; "
                   "without: only these held-out folds")
    p.add_argument("--processing-look", type=_seed, metavar="SEED",
                   help="with --weights: give each image a random detector-processing look first (robustness)")
    p.add_argument("--out", type=Path, help="write fold models and eval_analyze.json here")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-channels", type=int, default=8)
    p.add_argument("--max-minutes", type=float, help="per model and fold")
    p.add_argument("--threads", type=int)
    p.add_argument("--fine", action="store_true", help="rotation: also train the fine stage per fold")


def _run_analyze(args: argparse.Namespace) -> int:
    import torch

    from models.training.dataset import DatasetError
    from models.training.evaluate import evaluate_weights, format_report, rotation, summarise

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.weights is not None:
            summary = summarise(evaluate_weights(args.weights, args.data, set(args.anatomy) if args.anatomy else None,
                                                 look_seed=args.processing_look))
            print(format_report(summary, f"weights {args.weights} on {args.data}"))
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / "eval_analyze.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
            return 0
        device = "cuda" if torch.cuda.is_available() else "cpu"
        rotation(args.data, {"epochs": args.epochs, "batch_size": args.batch_size, "size": args.size,
                             "seed": args.seed, "base_channels": args.base_channels,
                             "max_minutes": args.max_minutes, "device": device}, args.out, args.anatomy, args.fine)
    except (DatasetError, ValueError) as exc:
        log.error("cannot evaluate", extra={"reason": str(exc)})
        return 2
    return 0


def _configure_align(p: argparse.ArgumentParser) -> None:
    from node.commands.align_eval import configure

    configure(p)


def _run_align(args: argparse.Namespace) -> int:
    from node.commands.align_eval import run

    return run(args)


def _configure_view(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="folder of films labelled with a 'view' (hipnode synth --dataset DIR --views); repeatable")
    p.add_argument("--weights", type=Path, action="append",
                   help="a view model folder; repeatable (default: the committed view_image and view_maps)")
    p.add_argument("--anatomy", action="append", help="only films of these anatomies")
    p.add_argument("--threshold", type=float, help="refuse below this AP probability (default: the analysis's)")
    p.add_argument("--segmentation", type=Path, metavar="WEIGHTS_DIR",
                   help="the segmentation model a maps view model reads (default: the committed one)")


def _run_view(args: argparse.Namespace) -> int:
    from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable
    from models.inference.view import MIN_AP_PROBABILITY, VIEW_FOLDERS
    from models.training.dataset import DatasetError
    from models.training.view_eval import format_view_report, score_folder

    try:
        weights = args.weights or [WEIGHTS_ROOT / folder for folder in VIEW_FOLDERS]
        scored = score_folder(weights, args.data, set(args.anatomy or ()), args.segmentation)
    except (DatasetError, ModelUnavailable) as exc:
        log.error("cannot evaluate", extra={"reason": str(exc)})
        return 2
    print(format_view_report(scored, MIN_AP_PROBABILITY if args.threshold is None else args.threshold))
    return 0 if scored else 2


def _configure_hip_threshold(p: argparse.ArgumentParser) -> None:
    from models.training.calibrate_hip import DEFAULT_CANDIDATES

    p.add_argument("--data", type=Path, required=True,
                   help="films of the anatomies the weights were trained on, not used in training (new seeds)")
    p.add_argument("--weights", type=Path, help="weights folder with hip_fine/ (default: the committed ones)")
    p.add_argument("--anatomy", action="append", help="only films of these anatomies")
    p.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_CANDIDATES),
                   help="candidate head and roof thresholds (default: %(default)s)")
    p.add_argument("--write", action="store_true",
                   help="write the chosen threshold into WEIGHTS/hip_fine/manifest.json (mask_thresholds)")


def _run_hip_threshold(args: argparse.Namespace) -> int:
    from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable
    from models.training.calibrate_hip import calibrate, format_threshold_report, write_thresholds
    from models.training.dataset import DatasetError

    weights = args.weights or WEIGHTS_ROOT
    if any(not 0.0 < t < 1.0 for t in args.thresholds):
        log.error("cannot calibrate", extra={"reason": f"thresholds must lie in (0, 1): {args.thresholds}"})
        return 2
    try:
        scores, chosen = calibrate(weights, args.data, args.thresholds, set(args.anatomy) if args.anatomy else None)
    except (DatasetError, ModelUnavailable, ValueError) as exc:
        log.error("cannot calibrate", extra={"reason": str(exc)})
        return 2
    print(format_threshold_report(scores, chosen))
    if args.write:
        print(f"wrote mask_thresholds {chosen.threshold:g} to {write_thresholds(weights, chosen, args.data)}")
    return 0


SUBCOMMANDS = {
    "analyze": ("segmentation, landmarks and measurements on held-out anatomy", _configure_analyze, _run_analyze),
    "align": ("pre/post alignment (matchers x methods) on synthetic pairs", _configure_align, _run_align),
    "view": ("the view model (AP / lateral / frog-leg) on labelled films", _configure_view, _run_view),
    "hip-threshold": ("calibrate the fine hip model's head and roof mask threshold on the minimum joint-space width",
                      _configure_hip_threshold, _run_hip_threshold),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (help_text, conf, runner) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        conf(p)
        p.set_defaults(_eval_run=runner)


def run(args: argparse.Namespace) -> int:
    return int(args._eval_run(args) or 0)
