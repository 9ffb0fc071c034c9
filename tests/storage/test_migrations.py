"""Alembic: the shipped migrations build exactly the schema of storage/models.py."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import Base, make_engine
from storage.migrate import MIGRATIONS_DIR, current_revision, head_revision, upgrade_to_head


def test_upgrade_head_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    assert upgrade_to_head(engine) == head_revision() == current_revision(engine)
    with engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == [], f"storage/models.py changed without a migration: {diffs}"
    assert {"patient", "study", "series", "instance", "job", "delivery"} <= set(
        inspect(engine).get_table_names()
    )
    engine.dispose()


def test_upgrade_is_idempotent_and_wal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade_to_head(engine)
    upgrade_to_head(engine)  # a restart runs it again
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "__init__.py").is_file() and (
        MIGRATIONS_DIR / "versions" / "__init__.py"
    ).is_file()
