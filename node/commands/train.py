"""``hipnode train segment|landmarks|landmarks-fine|hip-fine|pelvis-fine|view --data DIR --out DIR``: train, export ONNX + manifest.

``segment`` and ``landmarks`` are the coarse whole-image models; ``landmarks-fine``,
``hip-fine`` and ``pelvis-fine`` the fine stage, trained on crops around each landmark /
hip / ischial tuberosity (``models/inference/crops.py``); ``view`` the classifier that
tells an AP film from a lateral or frog-leg one (films labelled with a ``"view"``).

DIR is a folder in the training-data format (``docs/training-data.md``):
the synthetic dataset builder writes it, and so can a user for their own
labelled radiographs. The output folder receives ``model.onnx`` and
``manifest.json``; copy it to ``models/weights/<task>/`` (or pass
``--weights`` to ``hipnode analyze``) to use it. ``--init WEIGHTS_DIR``
fine-tunes an exported model of the same task (the reference weights, or a
run of one's own) instead of starting from random weights; its grid, widths
and crop settings become the defaults. Exit status 2 on a bad dataset or bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

TASKS = ("segment", "landmarks", "landmarks-fine", "hip-fine", "pelvis-fine", "view")  # models.training.train.TASKS
DEFAULT_BASE_CHANNELS = 8
DEFAULT_REG_CHANNELS = 16
COARSE_DEFAULT_SIZE = 192
VIEW_DEFAULT_SIZE, VIEW_DEFAULT_DEPTH = 128, 5


def init_manifest(folder: Path, task: str) -> dict:
    """The manifest of the model ``--init`` starts from; ValueError unless it is one of ``task`` and its
    ``model.onnx`` is the file the manifest describes (the new manifest records where it started)."""
    from models.training.export import MANIFEST_FILE, MODEL_FILE, sha256_file

    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"--init {folder}: no {MANIFEST_FILE}")
    manifest = json.loads(path.read_text())
    if manifest.get("task") != task:
        raise ValueError(f"--init {folder} holds a {manifest.get('task')!r} model, not {task!r}")
    if not (folder / MODEL_FILE).is_file() or sha256_file(folder / MODEL_FILE) != manifest.get("sha256"):
        raise ValueError(f"--init {folder}: {MODEL_FILE} missing or not the file its manifest describes (sha256)")
    return manifest


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASKS, help="which model to train")
    parser.add_argument("--data", type=Path, required=True, help="training folder (docs/training-data.md)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for model.onnx + manifest.json")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, help="working grid / crop edge in pixels (default 192; fine: 96 or 144; view: 128)")
    parser.add_argument("--mm-per-px", type=float, help="fine tasks: crop grid (default 0.75 landmarks-fine, 0.55 hip-fine, 0.4 pelvis-fine)")
    parser.add_argument("--jitter-mm", type=float, help="fine tasks: sigma of the crop centre's offset from the truth")
    parser.add_argument("--base-channels", type=int, help=f"U-Net width (default {DEFAULT_BASE_CHANNELS})")
    parser.add_argument("--reg-channels", type=int,
                        help=f"landmarks: regression CNN width (default {DEFAULT_REG_CHANNELS})")
    parser.add_argument("--init", type=Path, metavar="WEIGHTS_DIR",
                        help="fine-tune from this exported model of the same task (model.onnx + manifest.json, "
                             "e.g. models/weights/landmarks_fine); its grid, widths and crop are the defaults")
    parser.add_argument("--exclude-anatomy", action="append", default=[], help="leave this anatomy out (repeatable)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--max-minutes", type=float, help="time budget: the LR schedule anneals within it and training stops at it")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes that load samples and cut/augment batches (a GPU run needs several); "
                             "the weights do not depend on it")
    parser.add_argument("--version", default="0.1.0", help="model version written to the manifest")
    parser.add_argument("--view-input", choices=("maps", "image"), default="maps",
                        help="view: read the segmentation's maps (models/weights/view_maps) or the film "
                             "(models/weights/view_image)")
    parser.add_argument("--architecture", choices=("unet", "resunet", "unetpp"),
                        help="segmentation tasks: U-Net (default), residual U-Net or U-Net++ (docs/models.md, "
                             "'Segmentation model': measured against each other)")
    parser.add_argument("--segmentation", type=Path, metavar="WEIGHTS_DIR",
                        help="view: the segmentation model whose maps the view model reads (default: the "
                             "committed models/weights/segment); the analysis runs it behind that model only")


def run(args: argparse.Namespace) -> int:
    import torch

    from models.inference.runtime import WEIGHTS_ROOT, ModelUnavailable
    from models.inference.segmentation import SegmentationModel
    from models.training.crop_dataset import load_fine_folder
    from models.training.dataset import DatasetError, list_samples, load_folder
    from models.training.export import export_model
    from models.training.train import (
        FINE_DEFAULTS,
        FINE_TASKS,
        TrainConfig,
        manifest_extra,
        train,
        train_fine,
        train_view,
    )
    from models.training.view_dataset import load_view_folders

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    fine, view = args.task in FINE_TASKS, args.task == "view"
    excluded = set(args.exclude_anatomy)
    try:
        start = init_manifest(args.init, args.task) if args.init else {}
        arch = start.get("training", {}).get("run", {}).get("config", {})  # the starting model's own settings
        size = args.size or arch.get("size") or (int(FINE_DEFAULTS[args.task]["size"]) if fine
                                                  else VIEW_DEFAULT_SIZE if view else COARSE_DEFAULT_SIZE)
        cfg = TrainConfig(task=args.task, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          size=size, base_channels=args.base_channels or arch.get("base_channels") or DEFAULT_BASE_CHANNELS,
                          reg_channels=args.reg_channels or arch.get("reg_channels") or DEFAULT_REG_CHANNELS,
                          depth=int(arch.get("depth") or (VIEW_DEFAULT_DEPTH if view else TrainConfig.depth)),
                          augment=not args.no_augment, max_minutes=args.max_minutes, device=device,
                          mm_per_px=args.mm_per_px or arch.get("mm_per_px"),
                          jitter_mm=args.jitter_mm if args.jitter_mm is not None else arch.get("jitter_mm"),
                          workers=args.workers, init=str(args.init) if args.init else None,
                          view_input=args.view_input,
                          architecture=args.architecture or arch.get("architecture") or "unet")
        refs = list_samples(args.data)
        if fine:
            samples: list = load_fine_folder(refs, cfg.task, float(cfg.mm_per_px or 0), excluded, args.workers)
        elif view:
            if args.init:
                raise ValueError("--init is not supported for the view model (train it from scratch: minutes)")
            segmentation = SegmentationModel(args.segmentation or WEIGHTS_ROOT / "segment")
            seg_manifest = segmentation.manifest
            samples = load_view_folders([args.data], args.view_input, cfg.size, segmentation.weights_dir, excluded,
                                        args.workers)
        else:
            samples = load_folder(args.data, cfg.size, exclude_anatomy=excluded or None, workers=args.workers)
    except (DatasetError, ValueError, ModelUnavailable) as exc:
        log.error("cannot train", extra={"reason": str(exc)})
        return 2
    if not samples:
        log.error("no samples left after --exclude-anatomy")
        return 2
    header = json.loads((args.data / "dataset.json").read_text())
    anatomies = (sorted({str(r.meta.get("anatomy", "")) for r in refs if "view" in r.meta} - excluded) if view
                 else sorted({str(s.anatomy if fine else s.meta.get("anatomy", "")) for s in samples}))
    try:
        model, summary = (train_fine if fine else train_view if view else train)(samples, cfg)
    except ValueError as exc:
        log.error("cannot train", extra={"reason": str(exc)})
        return 2
    training = {"dataset": str(args.data), "dataset_header": header, "samples": len(samples),
                "samples_in_folder": len(refs), "anatomies": anatomies, "run": summary}
    if start:
        training["initialised_from"] = {key: start.get(key) for key in ("name", "version", "sha256")}
    manifest = export_model(model, args.task, args.out, cfg.size, args.version, training, manifest_extra(cfg),
                            {"name": seg_manifest.name, "version": seg_manifest.version} if view else None,
                            args.view_input)
    print(json.dumps({"manifest": str(manifest), "epochs": summary["epochs_done"],
                      "final_loss": summary["final_loss"], "train_seconds": summary["train_seconds"]}))
    if args.task == "hip-fine":  # its head and roof masks start at 0.5 until calibrated (docs/training-data.md)
        weights = str(args.out.parent) if args.out.name == "hip_fine" else "WEIGHTS (with this model as WEIGHTS/hip_fine)"
        log.info("next: calibrate its mask thresholds on films it was not trained on",
                 extra={"command": f"hipnode eval hip-threshold --data FILMS --weights {weights} --write"})
    return 0
