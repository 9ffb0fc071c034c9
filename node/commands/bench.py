"""``hipnode bench ingest``: throughput of the node vs DCMTK storescp (prints figures).

The work lives in ``tests/bench/bench_ingest.py`` (it needs the test factories
and DCMTK), run from a source checkout.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _bench_module():  # type: ignore[no-untyped-def]
    if str(_REPO) not in sys.path:
        sys.path.insert(0, str(_REPO))
    try:
        return importlib.import_module("tests.bench.bench_ingest")
    except ModuleNotFoundError as exc:
        raise SystemExit(f"hipnode bench needs a source checkout with tests/bench ({exc})") from exc


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    ingest = sub.add_parser(
        "ingest", help="C-STORE ingest: node vs storescp, 1 and 4 senders, peak RSS"
    )
    _bench_module().add_arguments(ingest)


def run(args: argparse.Namespace) -> int:
    if args.bench == "ingest":
        return int(_bench_module().run(args))
    return 2
