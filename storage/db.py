"""Engine and session factory: one engine per process.

SQLite runs in WAL mode with ``synchronous=FULL`` so a committed row survives a
power cut, and with a busy timeout so several processes (SCP, workers) can share
the file. Any other SQLAlchemy URL (PostgreSQL) works unchanged.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

_WRITE_LOCKS: weakref.WeakKeyDictionary[object, threading.Lock] = weakref.WeakKeyDictionary()
_WRITE_LOCKS_GUARD = threading.Lock()


class Base(DeclarativeBase):
    """Declarative base of every catalogue table."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


SQLITE_MINIMUM = (3, 35, 0)
"""Completion uses ``UPDATE ... RETURNING``, which SQLite has since 3.35."""


def make_engine(url: str) -> Engine:
    """Create the process's engine; SQLite gets WAL, FULL sync and a busy timeout.

    An SQLite library too old for the catalogue's statements is refused here, at
    start, rather than failing every study completion later.
    """
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < SQLITE_MINIMUM:
            wanted = ".".join(map(str, SQLITE_MINIMUM))
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old for the catalogue (needs >= {wanted}"
                " for UPDATE ... RETURNING); use a newer Python/SQLite or a PostgreSQL database_url"
            )
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker:
    """Sessions are passed in to the code that uses them; the caller commits."""
    return sessionmaker(engine, expire_on_commit=False)


def write_lock(session_factory: Callable[[], Session]) -> threading.Lock:
    """The process-wide lock that serializes this engine's hot write transactions.

    SQLite admits one writer; two threads colliding make the loser sleep in
    SQLite's busy handler (1, 2, 5, 10... ms), which under concurrent C-STOREs
    cost more than the writes themselves. Threads that take this lock around
    a write transaction queue in Python instead and wake the moment it is free.
    Other processes (receivers, workers) still meet the busy handler, rarely.
    """
    kw = getattr(session_factory, "kw", None)
    key = kw.get("bind") if isinstance(kw, dict) and kw.get("bind") is not None else session_factory
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.get(key)
        if lock is None:
            lock = _WRITE_LOCKS[key] = threading.Lock()
        return lock


def open_existing_catalogue(url: str, required_table: str) -> Engine:
    """Engine on a catalogue the node has already created; never creates one (that is the node's job).

    Raises :class:`LookupError` saying what is missing, for commands that only read or repair.
    """
    from pathlib import Path

    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
        raise LookupError(f"no catalogue at {parsed.database}; has the node run with this storage directory?")
    engine = make_engine(url)
    if not inspect(engine).has_table(required_table):
        engine.dispose()
        raise LookupError(
            f"the catalogue at {parsed.render_as_string(hide_password=True)} has no {required_table} table")
    return engine
