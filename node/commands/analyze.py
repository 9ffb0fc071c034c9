"""``hipnode analyze IMAGE.dcm --json OUT.json [--masks OUT.npz]``.

Exit status: 0 analysed; 3 not analysable (the JSON holds
``"not_analysable": "<reason>"`` and no landmarks); 4 the model weights are
missing or corrupt; 1 the input file does not exist or the output cannot be written.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from node.commands.exit_status import ERROR, NO_MODEL, NOT_DONE, OK

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_NOT_ANALYSABLE, EXIT_NO_MODEL = OK, ERROR, NOT_DONE, NO_MODEL


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="DICOM radiograph (AP pelvis / hip)")
    parser.add_argument("--json", dest="json_out", type=Path, required=True, help="result JSON path")
    parser.add_argument("--masks", type=Path, help="write the segment masks (NPZ, one bool array per segment)")
    parser.add_argument("--weights", type=Path, help="weights root holding segment/ and landmarks/ "
                        "(default: the committed models/weights)")


def _write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from models.inference.analyzer import HipAnalyzer, analyze_radiograph
    from models.inference.runtime import ModelUnavailable
    from node.imaging import UnreadableImage, load_radiograph

    if not args.image.is_file():
        log.error("input not found", extra={"path": str(args.image)})
        return EXIT_ERROR
    t0 = time.perf_counter()
    try:
        radiograph = load_radiograph(args.image)
    except UnreadableImage as exc:
        _write_json(args.json_out, {"not_analysable": str(exc), "landmarks": {}, "measurements": {},
                                    "calibration": None, "timings_ms": {}})
        log.warning("not analysable", extra={"reason": str(exc)})
        return EXIT_NOT_ANALYSABLE
    read_ms = round(1000 * (time.perf_counter() - t0), 2)
    try:
        if args.weights is not None:
            analyzer = HipAnalyzer.from_weights(args.weights)
            result = analyzer(radiograph)
        else:
            result = analyze_radiograph(radiograph)
    except ModelUnavailable as exc:
        log.error("model unavailable", extra={"reason": str(exc)})
        return EXIT_NO_MODEL
    payload = result.to_json()
    payload["timings_ms"] = {"read": read_ms, **result.timings_ms}
    _write_json(args.json_out, payload)
    if result.not_analysable is not None:
        log.warning("not analysable", extra={"reason": result.not_analysable})
        return EXIT_NOT_ANALYSABLE
    if args.masks is not None:
        args.masks.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.masks, **{k: np.asarray(v, bool) for k, v in result.masks.items()})
    log.info("analysed", extra={"image": str(args.image), "total_ms": payload["timings_ms"].get("total")})
    return EXIT_OK
