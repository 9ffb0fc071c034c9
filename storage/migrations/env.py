"""Alembic environment: the catalogue's metadata, a connection passed in or the configured URL."""

from __future__ import annotations

from alembic import context

import storage.models  # noqa: F401  (registers every table on Base.metadata)
from storage.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str | None:
    """``alembic -x url=...`` wins over ``sqlalchemy.url`` in alembic.ini."""
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = _url()
    if not url:
        raise RuntimeError("set sqlalchemy.url (alembic -x) or pass a connection")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
