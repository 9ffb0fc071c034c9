"""``hipnode train segment|landmarks --data DIR --out DIR``: train, export ONNX + manifest.

DIR is a folder in the training-data format (``docs/training-data.md``):
the synthetic dataset builder writes it, and so can a user for their own
labelled radiographs. The output folder receives ``model.onnx`` and
``manifest.json``; copy it to ``models/weights/<task>/`` (or pass
``--weights`` to ``hipnode analyze``) to use it. Exit status 2 on a bad
dataset or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=("segment", "landmarks"), help="which model to train")
    parser.add_argument("--data", type=Path, required=True, help="training folder (docs/training-data.md)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for model.onnx + manifest.json")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=192, help="working grid edge in pixels")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--reg-channels", type=int, default=16, help="landmarks: regression CNN width")
    parser.add_argument("--exclude-anatomy", action="append", default=[], help="leave this anatomy out (repeatable)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--max-minutes", type=float, help="time budget: the LR schedule anneals within it and training stops at it")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--version", default="0.1.0", help="model version written to the manifest")


def run(args: argparse.Namespace) -> int:
    import torch

    from models.training.dataset import DatasetError, list_samples, load_folder
    from models.training.export import export_model
    from models.training.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        cfg = TrainConfig(task=args.task, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                          size=args.size, base_channels=args.base_channels, reg_channels=args.reg_channels, augment=not args.no_augment,
                          max_minutes=args.max_minutes, device=device)
        refs = list_samples(args.data)
        samples = load_folder(args.data, cfg.size, exclude_anatomy=set(args.exclude_anatomy) or None)
    except (DatasetError, ValueError) as exc:
        log.error("cannot train", extra={"reason": str(exc)})
        return 2
    if not samples:
        log.error("no samples left after --exclude-anatomy")
        return 2
    header = json.loads((args.data / "dataset.json").read_text())
    anatomies = sorted({str(s.meta.get("anatomy", "")) for s in samples})
    model, summary = train(samples, cfg)
    training = {"dataset": str(args.data), "dataset_header": header, "samples": len(samples),
                "samples_in_folder": len(refs), "anatomies": anatomies, "run": summary}
    manifest = export_model(model, args.task, args.out, cfg.size, args.version, training)
    print(json.dumps({"manifest": str(manifest), "epochs": summary["epochs_done"],
                      "final_loss": summary["final_loss"], "train_seconds": summary["train_seconds"]}))
    return 0
