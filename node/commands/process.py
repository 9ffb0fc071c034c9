"""``hipnode process PRE.dcm [POST.dcm] --out DIR``: the node's whole pipeline, offline.

Writes exactly the DICOM objects the node would send (same encoders, same
deterministic UIDs): per analysable image a SEG and a TID 1500 SR; for a pair
the pair SR with the pre/post deltas, the colour difference map Secondary
Capture and the burned-in overlay Secondary Capture. ``summary.json`` lists
what was written, each image's analysis and the alignment.

Exit status: 0 everything written; 3 an image is not analysable or the pair
could not be aligned (the reason is in summary.json and the log; whatever
could be produced is still written); 4 model weights missing; 1 bad input path.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from node.commands.exit_status import ERROR, NO_MODEL, NOT_DONE, OK

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_INCOMPLETE, EXIT_NO_MODEL = OK, ERROR, NOT_DONE, NO_MODEL


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pre", type=Path, help="pre-operative (or single) DICOM radiograph")
    parser.add_argument("post", type=Path, nargs="?", help="post-operative DICOM radiograph of the same patient")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the DICOM results")
    parser.add_argument("--method", default="ours", help="alignment method (plain, filtered, weighted, ours)")
    parser.add_argument("--matcher", default="disk_lightglue", help="feature matcher (disk_lightglue, sift)")


def run(args: argparse.Namespace) -> int:
    from models.inference.runtime import ModelUnavailable
    from node.commands.align import pair_problem
    from node.imaging import UnreadableImage, load_radiograph
    from node.pipeline import compute

    inputs = [("pre", args.pre)] + ([("post", args.post)] if args.post is not None else [])
    for _, path in inputs:
        if not path.is_file():
            log.error("input not found", extra={"path": str(path)})
            return EXIT_ERROR
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"written": []}
    written: list[dict[str, str]] = summary["written"]  # type: ignore[assignment]
    status = EXIT_OK
    images: dict[str, compute.AnalysedImage] = {}

    def write(role: str, kind: str, ds) -> None:  # type: ignore[no-untyped-def]
        path = args.out / f"{role}_{kind}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append({"file": path.name, "kind": kind, "sop_instance_uid": str(ds.SOPInstanceUID)})

    for role, path in inputs:
        try:
            image = compute.analyse(load_radiograph(path))
        except UnreadableImage as exc:
            summary[role] = {"not_analysable": str(exc)}
            log.warning("not analysable", extra={"role": role, "reason": str(exc)})
            status = EXIT_INCOMPLETE
            continue
        except ModelUnavailable as exc:
            log.error("model unavailable", extra={"reason": str(exc)})
            return EXIT_NO_MODEL
        summary[role] = image.analysis.to_json()
        if image.analysis.not_analysable is not None:
            log.warning("not analysable", extra={"role": role, "reason": image.analysis.not_analysable})
            status = EXIT_INCOMPLETE
            continue
        images[role] = image
        for kind, ds in compute.image_result_datasets(image):
            write(role, kind, ds)

    if args.post is not None and len(images) == 2:
        pre, post = images["pre"], images["post"]
        problem = pair_problem(pre.dataset, post.dataset)
        if problem is not None:
            summary["alignment"] = {"failure": problem}
            log.warning("pair not aligned", extra={"reason": problem})
            status = EXIT_INCOMPLETE
        else:
            alignment = compute.align(pre, post, args.method, args.matcher)
            summary["alignment"] = alignment.to_json()
            if alignment.failure is not None:
                log.warning("pair not aligned", extra={"reason": alignment.failure})
                status = EXIT_INCOMPLETE
            sides = compute.paired_sides(pre, post)
            if not sides:  # the node would not pair these; compare every side, as asked
                log.warning("no side is native before and operated after; deltas for both sides")
                sides = ["right", "left"]
            datasets, deltas = compute.pair_result_datasets(pre, post, alignment, sides)
            summary["sides"] = sides
            summary["deltas"] = deltas
            for kind, ds in datasets:
                write("pair", kind, ds)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    log.info("process finished", extra={"out": str(args.out), "objects": len(written), "status": status})
    return status
