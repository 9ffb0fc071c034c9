"""``hipnode config show|check``: the effective configuration, or why it is wrong."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from node.config import Settings, load_settings


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML settings file (default: $HIPNODE_CONFIG)")


def describe_error(exc: Exception) -> str:
    """One line per problem, each naming the field (``tls.cert_file: ...``)."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(settings)"
            lines.append(f"{field}: {error['msg']} (got {error.get('input')!r})")
        return "\n".join(lines)
    return str(exc)


def load_or_explain(config_file: Path | None, **flags: Any) -> Settings | None:
    """Load settings, or print a message naming the bad field and return None."""
    try:
        return load_settings(config_file, **flags)
    except (ValidationError, ValueError) as exc:
        print(f"hipnode: invalid configuration:\n{describe_error(exc)}", file=sys.stderr)
        return None


def catalogue_or_explain(args: argparse.Namespace, required_table: str, command: str) -> Engine | None:
    """For commands that read the node's catalogue (``--config``, ``--storage``): an engine on it,
    or None after printing why there is none (bad settings, no catalogue yet); never creates one."""
    from storage.db import open_existing_catalogue

    settings = load_or_explain(args.config, storage_dir=args.storage)
    if settings is None:
        return None
    try:
        return open_existing_catalogue(settings.effective_database_url, required_table)
    except LookupError as exc:
        print(f"hipnode {command}: {exc}", file=sys.stderr)
        return None


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for the settings' shapes (scalars, lists, tables, arrays of tables)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]"] + [
            f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None
        ]
    for name, items in arrays:
        for item in items:
            lines += ["", f"[[{name}]]"] + [
                f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None
            ]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["show", "check"],
        help="show: print the effective settings; check: validate and exit 0 or 2",
    )
    add_config_argument(parser)
    parser.add_argument("--format", choices=["toml", "json"], default="toml")


def run(args: argparse.Namespace) -> int:
    settings = load_or_explain(args.config)
    if settings is None:
        return 2
    if args.action == "check":
        print(f"configuration ok (database {settings.effective_database_url})")
        return 0
    data = settings.model_dump(mode="json")
    if args.format == "json":
        data["effective_database_url"] = settings.effective_database_url
        print(json.dumps(data, indent=2))
    else:
        print(f"# effective database URL: {settings.effective_database_url}")
        print(to_toml(data), end="")
    return 0
