"""``hipnode eval align``: alignment accuracy table on synthetic pairs (logic in models/align/evaluate.py).

Either ``--data DIR`` (pair folders written by ``hipnode synth``) or
``--labels``/``--ct`` with ``--pairs`` and ``--seed`` to generate them first.
Prints one table (LinAlign Tables 1 and 3 style) and optionally writes every
per-pair outcome as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WEIGHTINGS = ("oracle", "classical_stand_in", "segmentation_model")


def configure(p: argparse.ArgumentParser) -> None:
    from models.align.evaluate import ABLATIONS
    from models.align.matching import MATCHERS
    from models.align.pipeline import ALIGN_METHODS

    p.add_argument("--data", type=Path, help="folder of pair_NNN folders from 'hipnode synth'")
    p.add_argument("--labels", type=Path, action="append", help="generate pairs from this label map (repeatable)")
    p.add_argument("--ct", type=Path, action="append", help="generate pairs from this CT volume (repeatable)")
    p.add_argument("--pairs", type=int, default=12, help="pairs to generate (with --labels/--ct)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (with --labels/--ct)")
    p.add_argument("--out", type=Path, help="keep generated pairs here (default: a temporary folder)")
    p.add_argument("--matcher", action="append", choices=MATCHERS, help="default: all")
    p.add_argument("--method", action="append", choices=ALIGN_METHODS + tuple(ABLATIONS),
                   help="default: plain, filtered, weighted, ours")
    p.add_argument("--weighting", action="append", choices=WEIGHTINGS,
                   help="pelvis probability source; default: oracle and classical_stand_in")
    p.add_argument("--ablation", action="store_true", help="also run 'ours' with parts switched off")
    p.add_argument("--limit", type=int, help="evaluate at most this many pairs")
    p.add_argument("--json", dest="json_out", type=Path, help="write rows and per-pair outcomes here")


def _read_pixels(path: Path) -> tuple[np.ndarray, tuple[float, float] | None]:
    from node.imaging import load_radiograph

    radiograph = load_radiograph(path)
    return radiograph.pixels, radiograph.pixel_spacing_mm


def _generate(args: argparse.Namespace, out: Path) -> int:
    from node.cli import main as cli_main

    argv = ["synth", "--out", str(out), "--pairs", str(args.pairs), "--seed", str(args.seed)]
    for label in args.labels or []:
        argv += ["--labels", str(label)]
    for ct in args.ct or []:
        argv += ["--ct", str(ct)]
    return cli_main(argv)


def run(args: argparse.Namespace) -> int:
    from models.align.evaluate import (
        ABLATIONS,
        evaluate,
        format_paired,
        format_table,
        load_pair_folder,
        paired_comparisons,
        summarise,
    )
    from models.align.matching import MATCHERS, get_matcher
    from models.align.pipeline import ALIGN_METHODS

    if args.data is None and not (args.labels or args.ct):
        log.error("give --data DIR or --labels/--ct to generate pairs")
        return 2
    with tempfile.TemporaryDirectory(prefix="hipnode-align-eval-") as scratch:
        data = args.data
        if data is None:
            data = args.out or Path(scratch)
            status = _generate(args, data)
            if status != 0:
                log.error("synthetic pair generation failed", extra={"status": status})
                return status
        folders = sorted(p for p in data.iterdir() if (p / "pair.json").is_file())
        if args.limit:
            folders = folders[: args.limit]
        if not folders:
            log.error("no pair folders (with pair.json) found", extra={"path": str(data)})
            return 2
        weightings = tuple(args.weighting or ("oracle", "classical_stand_in"))
        model_probability = None
        if "segmentation_model" in weightings:
            from node.commands.align import pelvis_map

            def model_probability(pixels: np.ndarray, spacing: tuple[float, float] | None
                                  ) -> tuple[np.ndarray, str | None]:
                found = pelvis_map(pixels, spacing)
                if found.source != "segmentation_model":
                    raise ValueError("no segmentation model weights are installed")
                return found.probability, found.problem

        try:
            pairs = (load_pair_folder(f, _read_pixels, weightings, model_probability) for f in folders)
            matchers = [get_matcher(name) for name in (args.matcher or MATCHERS)]
            methods = tuple(args.method or ALIGN_METHODS) + (tuple(ABLATIONS) if args.ablation else ())
            report = evaluate(pairs, matchers, methods)
        except (OSError, KeyError, ValueError) as exc:
            log.error("cannot evaluate alignment", extra={"reason": str(exc)})
            return 2
    rows = summarise(report)
    paired = paired_comparisons(report)
    print(format_table(rows, f"hipnode eval align: {len(folders)} pairs from {data}"))
    if paired:
        print(format_paired(paired))
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"rows": rows, "paired": paired, "best": report.best,
                                             "outcomes": [asdict(o) for o in report.outcomes]},
                                            indent=2, default=str) + "\n")
    return 0
