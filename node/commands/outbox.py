"""``hipnode outbox list|retry``: look at the result deliveries and re-queue dead ones.

``list`` prints one row per delivery (``--json`` for scripts); ``--state dead``
is the dead-letter list. ``retry ID ...`` or ``retry --all-dead`` makes rows due
now with a fresh attempt budget; a running node picks them up at its next poll.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from node.commands.config import add_config_argument, catalogue_or_explain
from node.sender.outbox import RetryError, list_deliveries, retry
from storage.db import make_session_factory
from storage.models import Delivery, DeliveryState

STATES = [s.value for s in DeliveryState]


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--storage", type=Path, help="storage directory (holds the default SQLite catalogue)"
    )
    sub = parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="list deliveries")
    listing.add_argument(
        "--state", action="append", choices=STATES, help="only rows in this state (repeatable)"
    )
    listing.add_argument("--destination", help="only rows for this destination name")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    again = sub.add_parser("retry", help="re-queue dead (or waiting) deliveries now")
    again.add_argument(
        "ids", nargs="*", type=int, metavar="ID", help="delivery ids from 'outbox list'"
    )
    again.add_argument("--all-dead", action="store_true", help="every dead delivery")


def _as_dict(row: Delivery) -> dict[str, object]:
    def stamp(value: dt.datetime | None) -> str | None:
        if value is None:
            return None
        return (value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value).isoformat()

    return {
        "id": row.id,
        "state": row.state.value,
        "destination": row.destination,
        "sop_instance_uid": row.sop_instance_uid,
        "path": row.path,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "next_attempt_at": stamp(row.next_attempt_at),
        "created_at": stamp(row.created_at),
        "delivered_at": stamp(row.delivered_at),
    }


def _print_table(rows: list[Delivery]) -> None:
    print(
        f"{'ID':>6}  {'STATE':<8} {'TRIES':>5}  {'STATUS':<7} {'DESTINATION':<16} "
        f"{'SOP INSTANCE UID':<64}  LAST ERROR"
    )
    for r in rows:
        status = f"0x{r.last_status:04X}" if r.last_status is not None else "-"
        error = r.last_error.splitlines()[0] if r.last_error else ""
        print(
            f"{r.id:>6}  {r.state.value:<8} {r.attempts:>5}  {status:<7} {r.destination:<16} "
            f"{r.sop_instance_uid:<64}  {error}"
        )
    print(f"{len(rows)} deliveries")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    engine = catalogue_or_explain(args, Delivery.__tablename__, "outbox")
    if engine is None:
        return 2
    sessions = make_session_factory(engine)
    try:
        with sessions() as session:
            if args.outbox_command == "list":
                rows = list_deliveries(
                    session, [DeliveryState(s) for s in args.state or []], args.destination
                )
                if args.json:
                    print(json.dumps([_as_dict(r) for r in rows], indent=1))
                else:
                    _print_table(rows)
                return 0
            if not args.ids and not args.all_dead:
                print("hipnode outbox retry: give delivery IDs or --all-dead", file=sys.stderr)
                return 2
            try:
                moved = retry(session, args.ids, all_dead=args.all_dead)
            except RetryError as exc:
                session.rollback()
                print(f"hipnode outbox retry: {exc}", file=sys.stderr)
                return 1
            session.commit()
            print(f"re-queued {len(moved)} deliveries: {' '.join(map(str, moved)) or '-'}")
            return 0
    finally:
        engine.dispose()
