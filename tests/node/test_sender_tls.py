"""The sender over TLS to DCMTK storescp: mutual authentication with a test CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select

from node.config import Settings
from node.sender import OutboxSender, enqueue
from storage.db import Base, make_engine, make_session_factory
from storage.models import Delivery, DeliveryState
from tests.conftest import free_port, require_tool, wait_for
from tests.factories import write_dx


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def issue(pki: Path, name: str, ca: str) -> None:
    """A key and a certificate for ``name`` signed by the CA ``ca``."""
    openssl(*f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr".split(),
            "-subj", f"/CN={name}", cwd=pki)  # fmt: skip
    openssl(*f"x509 -req -in {name}.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial".split(),
            *f"-out {name}.crt -days 2 -sha256".split(), cwd=pki)  # fmt: skip


def make_ca(pki: Path, name: str) -> None:
    """A self-signed CA certificate and key."""
    openssl(*f"req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.crt".split(),
            "-days", "2", "-subj", f"/CN={name}", cwd=pki)  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    make_ca(root, "ca")
    make_ca(root, "other-ca")
    issue(root, "pacs", "ca")
    issue(root, "node", "ca")
    return root


def deliver_once(store: Path, settings: Settings, timeout: float) -> Delivery:
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    path = write_dx(store / "result.dcm", rows=32, columns=32)
    with sessions() as s:
        enqueue(s, str(dcmread(path).SOPInstanceUID), "result.dcm", "pacs")
        s.commit()
    sender = OutboxSender(settings, sessions)
    sender.start()

    def row() -> Delivery:
        with sessions() as s:
            return s.scalars(select(Delivery)).one()

    try:
        wait_for(
            lambda: row().state in (DeliveryState.DONE, DeliveryState.DEAD),
            timeout=timeout,
            msg="settled",
        )
        return row()
    finally:
        sender.stop(timeout=30)
        engine.dispose()


def tls_settings(store: Path, port: int, pki: Path, ca: str, max_attempts: int) -> Settings:
    return Settings(
        storage_dir=store,
        tls={
            "cert_file": pki / "node.crt",
            "key_file": pki / "node.key",
            "ca_file": pki / f"{ca}.crt",
        },
        destinations=[
            {"name": "pacs", "ae_title": "TLSSCP", "host": "127.0.0.1", "port": port, "tls": True}
        ],
        outbox={
            "initial_backoff_seconds": 0.1,
            "max_backoff_seconds": 0.2,
            "max_attempts": max_attempts,
            "poll_seconds": 0.1,
        },
        timeouts={"connection_seconds": 3, "acse_seconds": 5},
    )


@pytest.fixture()
def tls_storescp(pki: Path, tmp_path: Path):
    port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    proc = subprocess.Popen(
        [
            require_tool("storescp"),
            "+tls",
            str(pki / "pacs.key"),
            str(pki / "pacs.crt"),
            "+cf",
            str(pki / "ca.crt"),
            "-rc",
            "-aet",
            "TLSSCP",
            "-od",
            str(received),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield port, received
    proc.terminate()
    proc.wait(timeout=10)


def test_delivery_over_mutual_tls(tls_storescp, pki, tmp_path) -> None:
    port, received = tls_storescp
    store = tmp_path / "store"
    store.mkdir()
    row = deliver_once(
        store, tls_settings(store, port, pki, "ca", max_attempts=50), timeout=60
    )  # storescp may still be starting
    assert row.state == DeliveryState.DONE, row.last_error
    [got] = list(received.iterdir())
    assert dcmread(got).SOPInstanceUID == row.sop_instance_uid


def test_untrusted_peer_certificate_is_never_sent_to(tls_storescp, pki, tmp_path) -> None:
    port, received = tls_storescp
    store = tmp_path / "store"
    store.mkdir()
    row = deliver_once(
        store, tls_settings(store, port, pki, "other-ca", max_attempts=3), timeout=60
    )
    assert row.state == DeliveryState.DEAD and "attempts exhausted" in row.last_error
    assert list(received.iterdir()) == []
