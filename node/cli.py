"""The ``hipnode`` command line.

Each sub-command lives in its own module under :mod:`node.commands` and is
imported only when it runs, so ``hipnode serve`` never pays for torch and
``hipnode synth`` never opens a socket. Logging is configured here and only here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). A module provides ``configure(parser)`` and
# ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("node.commands.serve", "run the DICOM Storage SCP node"),
    "config": ("node.commands.config", "show or check the effective configuration"),
    "outbox": ("node.commands.outbox", "list or retry result deliveries"),
    "status": ("node.commands.status", "what the node received and made of each study"),
    "bench": ("node.commands.bench", "benchmarks that print figures"),
    "synth": ("node.commands.synth", "generate synthetic AP pelvis radiograph pairs"),
    "analyze": ("node.commands.analyze", "segment one radiograph, find landmarks, measure"),
    "align": ("node.commands.align", "align a pre-op onto a post-op radiograph, colour difference map"),
    "process": ("node.commands.process", "run the whole pipeline offline and write DICOM results"),
    "train": ("node.commands.train", "train the segmentation or landmark model"),
    "eval": ("node.commands.evaluate", "evaluate models on held-out synthetic anatomy"),
    "demo": ("node.commands.demo", "start Orthanc + OHIF + node and send a synthetic pair"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with ``only`` set, import just that command's module."""
    parser = argparse.ArgumentParser(prog="hipnode", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-json", action="store_true", help="structured JSON log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == only:
            module = importlib.import_module(module_name)
            module.configure(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    for token in argv:
        if token in COMMANDS:
            return token
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hipnode`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_name(args_list))
    args = parser.parse_args(args_list)
    from node.logging_setup import configure_logging

    configure_logging(args.log_level, json_lines=args.log_json)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
