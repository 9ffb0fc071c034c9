"""``hipnode status``: what the node has received and what it made of each study.

One screen an operator reads instead of the logs: studies by state, each
image's verdict (analysed, or not analysable and why), the pairing decisions
with their reasons, the jobs (failed ones with stage and reason) and the
result deliveries (dead ones with the error). ``--json`` prints the same
dict the status page serves at ``/api/status``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from node.commands.config import add_config_argument, catalogue_or_explain
from storage.db import make_session_factory
from storage.models import Study
from storage.overview import overview, results_in_words


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--storage", type=Path, help="storage directory (holds the default SQLite catalogue)")
    parser.add_argument("--study", metavar="UID", help="only this Study Instance UID")
    parser.add_argument("--limit", type=int, default=20, help="most recent studies shown (default 20)")
    parser.add_argument("--json", action="store_true", help="the whole overview as JSON")


def _side_text(image: dict[str, Any]) -> str:
    sides = [f"{side} {image[side]}" for side in ("right", "left") if image.get(side)]
    return f" ({', '.join(sides)})" if sides else ""


def format_overview(view: dict[str, Any]) -> str:
    """The overview as plain text, one block per study."""
    totals = view["summary"]
    lines = [
        "studies: " + ", ".join(f"{n} {state}" for state, n in totals["studies"].items()),
        f"images: {totals['images_received']} received, {totals['images_not_analysable']} not analysable",
        "jobs: " + ", ".join(f"{n} {state}" for state, n in totals["jobs"].items()),
        "deliveries: " + ", ".join(f"{n} {state}" for state, n in totals["deliveries"].items()),
    ]
    for study in view["studies"]:
        issuer = f" ({study['issuer_of_patient_id']})" if study["issuer_of_patient_id"] else ""
        lines += ["", f"study {study['study_instance_uid']}  [{study['state']}]",
                  f"  patient {study['patient_id']}{issuer}  date {study['study_date'] or '-'}  "
                  f"from {study['calling_aet'] or '-'}  {study['description'] or ''}".rstrip()]
        for image in study["images"]:
            why = f": {image['reason']}" if image.get("reason") else ""
            lines.append(f"  image {image['sop_instance_uid']}  {image['verdict']}{_side_text(image)}{why}")
        for pair in study["pairings"]:
            partner = (f"pre-op {pair['pre_sop_instance_uid']} of {pair['pre_study_date'] or '-'}"
                       if pair["pre_sop_instance_uid"] else "no pre-op")
            lines.append(f"  pairing {pair['side']}: {partner} ({pair['reason']})")
        for job in study["jobs"]:
            failed = f" at {job['fail_stage']}: {job['fail_reason']}" if job["state"] == "failed" else ""
            lines.append(f"  job {job['id']} {job['kind']}  {job['state']}  "
                         f"attempt {job['attempts']}/{job['max_attempts']}{failed}")
        results = study["results"]
        if results["by_kind"]:
            made, sent = results_in_words(results)
            lines.append(f"  results: {made}; deliveries: {sent}")
        for dead in results["dead"]:
            lines.append(f"  dead delivery {dead['id']} to {dead['destination']} after {dead['attempts']} "
                         f"attempts: {dead['last_error'] or '-'} (hipnode outbox retry {dead['id']})")
    if not view["studies"]:
        lines += ["", "no studies received yet"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    engine = catalogue_or_explain(args, Study.__tablename__, "status")
    if engine is None:
        return 2
    try:
        with make_session_factory(engine)() as session:
            view = overview(session, limit=max(1, args.limit), study_uid=args.study)
    finally:
        engine.dispose()
    if args.study and not view["studies"]:
        print(f"hipnode status: no study {args.study} in the catalogue", file=sys.stderr)
        return 1
    try:
        print(json.dumps(view, indent=1) if args.json else format_overview(view))
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
