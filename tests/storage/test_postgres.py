"""The catalogue on PostgreSQL: only the database URL changes.

A throwaway cluster (Debian's postgresql binaries) is started for this module;
as root it runs as ``nobody`` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from storage.db import Base, make_engine
from storage.migrate import head_revision, upgrade_to_head
from storage.models import Instance
from tests.conftest import NO_WORKERS, free_port, require_tool, storescu_responses
from tests.factories import write_dx


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise AssertionError(f"PostgreSQL {name} not found: install the postgresql package")
    return found[-1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    # Not under pytest's tmp dir: that is private to root, and the server runs as nobody.
    base = Path(tempfile.mkdtemp(prefix="hipnode-pg-"))
    data = base / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        as_user = [require_tool("runuser"), "-u", "nobody", "--"]
    port = free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=120, cwd=base)

    run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "hipnode", "--no-sync")
    run(
        _pg_bin("pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "pg.log"),
        "-w",
        "-t",
        "60",
        "start",
        "-o",
        f"-h 127.0.0.1 -p {port} -k {base} -F",
    )
    try:
        yield f"postgresql+psycopg://hipnode@127.0.0.1:{port}/postgres"
    finally:
        run(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_migrations_on_postgres_match_models(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    assert upgrade_to_head(engine) == head_revision()
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_node_stores_into_postgres(start_node, postgres_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = start_node(env=NO_WORKERS, config={"database_url": postgres_url})
    image = write_dx(tmp_path / "pg.dcm", rows=32, columns=32)
    result = subprocess.run(
        [
            require_tool("storescu"),
            "-v",
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.port),
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert storescu_responses(result.stdout + result.stderr) == {str(image): "Success"}
    uid = pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID
    engine = make_engine(postgres_url)
    with engine.connect() as connection:
        row = connection.execute(
            select(Instance.path).where(Instance.sop_instance_uid == uid)
        ).one()
        assert (node.storage / row.path).is_file()
        assert connection.execute(select(func.count(Instance.id))).scalar() >= 1
    engine.dispose()
    assert not (node.storage / "hipnode.sqlite3").exists()  # no SQLite file was made
