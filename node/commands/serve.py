"""``hipnode serve``: run the Storage SCP node until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from node.commands.config import add_config_argument, load_or_explain

log = logging.getLogger("node.serve")


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--aet", help="AE title of the node (overrides the file)")
    parser.add_argument("--port", type=int, help="TCP port to listen on")
    parser.add_argument("--bind", help="address to bind, e.g. 0.0.0.0 or 127.0.0.1")
    parser.add_argument("--storage", type=Path, help="storage directory (objects, catalogue)")
    parser.add_argument("--web-port", type=int, metavar="PORT",
                        help="serve the read-only status page on this port (bound as [web] bind_address says, "
                             "loopback by default)")


def run(args: argparse.Namespace) -> int:
    settings = load_or_explain(
        args.config,
        ae_title=args.aet,
        port=args.port,
        bind_address=args.bind,
        storage_dir=args.storage,
    )
    if settings is None:
        return 2
    if args.web_port is not None:
        settings = settings.model_copy(
            update={"web": settings.web.model_copy(update={"enabled": True, "port": args.web_port})})
    from node.app import Node

    node = Node(settings)
    node.handle_stop_signals()
    try:
        node.start()
    except OSError as exc:
        print(f"hipnode serve: cannot start: {exc}", file=sys.stderr)
        node.stop()
        return 1
    node.run()
    return 0
