"""The outbox sender against real peers: DCMTK storescp and small pynetdicom SCPs.

Real associations on free ports, a real SQLite catalogue, real DICOM files.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, evt
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from node.config import Settings
from node.sender import OutboxSender, enqueue
from storage.db import Base, make_engine, make_session_factory
from storage.models import Delivery, DeliveryState
from tests.conftest import free_port, require_tool, wait_for
from tests.factories import DX_PRESENTATION_STORAGE, make_dx

DEST_AET = "DESTSCP"


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture()
def sessions(store: Path) -> Iterator[sessionmaker]:
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def node_settings(store: Path, port: int, **outbox: object) -> Settings:
    policy = {
        "initial_backoff_seconds": 0.2,
        "max_backoff_seconds": 0.5,
        "max_attempts": 100,
        "poll_seconds": 0.1,
        **outbox,
    }
    return Settings(
        storage_dir=store,
        destinations=[{"name": "pacs", "ae_title": DEST_AET, "host": "127.0.0.1", "port": port}],
        outbox=policy,
        timeouts={
            "connection_seconds": 3,
            "acse_seconds": 5,
            "dimse_seconds": 10,
            "network_seconds": 10,
        },
    )


def write_results(store: Path, n: int, rle: int = 0) -> list[tuple[str, str]]:
    """``n`` small DX files in ``store/results``, the last ``rle`` RLE: (uid, relative path)."""
    out = []
    (store / "results").mkdir(exist_ok=True)
    for i in range(n):
        ds = make_dx(48, 40, seed=i)
        if i >= n - rle:
            ds.compress(RLELossless)
        rel = f"results/{i}.dcm"
        ds.save_as(store / rel, enforce_file_format=True)
        out.append((str(ds.SOPInstanceUID), rel))
    return out


def queue_all(
    sessions: sessionmaker, files: list[tuple[str, str]], destination: str = "pacs"
) -> None:
    with sessions() as s:
        for uid, rel in files:
            enqueue(s, uid, rel, destination)
        s.commit()


def rows(sessions: sessionmaker) -> list[Delivery]:
    with sessions() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture()
def senders() -> Iterator[list[OutboxSender]]:
    running: list[OutboxSender] = []
    yield running
    for sender in running:
        sender.stop(timeout=30)


def start_sender(
    senders: list[OutboxSender], settings: Settings, sessions: sessionmaker
) -> OutboxSender:
    sender = OutboxSender(settings, sessions)
    sender.start()
    senders.append(sender)
    return sender


class FakeScp:
    """A pynetdicom Storage SCP answering with scripted statuses; records what it got."""

    def __init__(
        self,
        statuses: Callable[[int], int] = lambda n: 0x0000,
        syntaxes: list[str] | None = None,
        sop_classes: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.received: list[str] = []
        self.datasets: list = []
        self._statuses = statuses
        ae = AE(ae_title=DEST_AET)
        for sop_class in sop_classes or [DX_PRESENTATION_STORAGE]:
            ae.add_supported_context(
                sop_class, syntaxes or [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless]
            )
        self._server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def _on_store(self, event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(str(ds.SOPInstanceUID))
        self.datasets.append(ds)
        return self._statuses(len(self.received))

    def shutdown(self) -> None:
        self._server.shutdown()


@pytest.fixture()
def scps() -> Iterator[list[FakeScp]]:
    running: list[FakeScp] = []
    yield running
    for scp in running:
        scp.shutdown()


# -- destination down, then up: DCMTK storescp ----------------------------------------------------


def test_destination_down_then_up_delivers_each_exactly_once(
    store, sessions, senders, tmp_path
) -> None:
    port = free_port()
    files = write_results(store, 6, rle=2)
    queue_all(sessions, files[:3])
    with sessions() as s:  # absolute paths work too
        for uid, rel in files[3:]:
            enqueue(s, uid, str(store / rel), "pacs")
        s.commit()
    start_sender(senders, node_settings(store, port), sessions)
    wait_for(lambda: all(r.attempts >= 2 for r in rows(sessions)), msg="two failed attempts each")
    for r in rows(sessions):
        assert r.state in (DeliveryState.PENDING, DeliveryState.SENDING)
    assert any(r.last_error and "could not be reached" in r.last_error for r in rows(sessions))

    received = tmp_path / "received"
    received.mkdir()
    # +uf: a unique file name per received object, so a duplicate delivery would show as a 2nd file
    storescp = subprocess.Popen(
        [require_tool("storescp"), "+xa", "+uf", "-aet", DEST_AET, "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: all(r.state == DeliveryState.DONE for r in rows(sessions)),
            timeout=60,
            msg="all delivered after the destination came up",
        )
        time.sleep(1.0)  # anything duplicated would arrive now
    finally:
        storescp.terminate()
        storescp.wait(timeout=10)
    got = Counter(str(dcmread(p).SOPInstanceUID) for p in received.iterdir() if p.is_file())
    assert got == Counter(uid for uid, _ in files), (
        "each SOP instance exactly once at the destination"
    )
    for r in rows(sessions):
        assert r.last_status == 0x0000 and r.delivered_at is not None and r.last_error is None
    originals = {uid: dcmread(store / rel) for uid, rel in files}
    for p in received.iterdir():
        ds = dcmread(p)
        assert (
            ds.file_meta.TransferSyntaxUID
            == originals[ds.SOPInstanceUID].file_meta.TransferSyntaxUID
        )
        assert ds.PixelData == originals[ds.SOPInstanceUID].PixelData


# -- permanent refusals ---------------------------------------------------------------------------


def run_cli(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", "outbox", "--storage", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("status", [0xA900, 0xC000])
def test_permanent_refusal_dead_letters_and_cli_requeues(
    status, store, sessions, senders, scps
) -> None:
    scp = FakeScp(statuses=lambda n: status)
    scps.append(scp)
    [(uid, rel)] = write_results(store, 1)
    queue_all(sessions, [(uid, rel)])
    sender = start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(lambda: rows(sessions)[0].state == DeliveryState.DEAD, msg="dead-lettered")
    [row] = rows(sessions)
    assert row.attempts == 1 and row.last_status == status
    assert f"0x{status:04X}" in row.last_error
    sender.stop(timeout=30)
    if status != 0xA900:
        return  # the command line is exercised once; see also tests/node/test_outbox_cli.py

    listing = run_cli(store, "list", "--state", "dead", "--json")
    assert listing.returncode == 0, listing.stderr
    [shown] = json.loads(listing.stdout)
    assert (
        shown["sop_instance_uid"] == uid
        and shown["state"] == "dead"
        and shown["last_status"] == status
    )
    again = run_cli(store, "retry", str(row.id))
    assert again.returncode == 0, again.stderr
    assert "re-queued 1" in again.stdout
    [row] = rows(sessions)
    assert row.state == DeliveryState.PENDING and row.attempts == 0


def test_no_accepted_context_is_dead(store, sessions, senders, scps) -> None:
    ct_only = FakeScp(sop_classes=["1.2.840.10008.5.1.4.1.1.2"])  # CT Image Storage only
    scps.append(ct_only)
    queue_all(sessions, write_results(store, 1))
    start_sender(senders, node_settings(store, ct_only.port), sessions)
    wait_for(lambda: rows(sessions)[0].state == DeliveryState.DEAD, msg="dead-lettered")
    assert "no_context" in rows(sessions)[0].last_error
    assert ct_only.received == []


def test_out_of_resources_is_retried_until_accepted(store, sessions, senders, scps) -> None:
    scp = FakeScp(statuses=lambda n: 0xA700 if n <= 2 else 0x0000)
    scps.append(scp)
    [(uid, rel)] = write_results(store, 1)
    queue_all(sessions, [(uid, rel)])
    start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(lambda: rows(sessions)[0].state == DeliveryState.DONE, msg="delivered after A700s")
    [row] = rows(sessions)
    assert row.attempts == 3 and row.last_status == 0
    assert scp.received == [uid, uid, uid]


def test_warning_statuses_count_as_delivered(store, sessions, senders, scps) -> None:
    warnings = [0xB000, 0xB006, 0xB007]
    scp = FakeScp(statuses=lambda n: warnings[(n - 1) % 3])
    scps.append(scp)
    queue_all(sessions, write_results(store, 3))
    start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(
        lambda: all(r.state == DeliveryState.DONE for r in rows(sessions)), msg="done with warnings"
    )
    assert sorted(r.last_status for r in rows(sessions)) == warnings
    assert len(scp.received) == 3


def test_attempts_exhausted_is_dead(store, sessions, senders) -> None:
    queue_all(sessions, write_results(store, 1))
    start_sender(senders, node_settings(store, free_port(), max_attempts=2), sessions)
    wait_for(lambda: rows(sessions)[0].state == DeliveryState.DEAD, msg="dead after 2 attempts")
    [row] = rows(sessions)
    assert row.attempts == 2 and "attempts exhausted" in row.last_error


def test_bad_rows_are_dead_with_a_clear_error(store, sessions, senders, scps) -> None:
    scp = FakeScp()
    scps.append(scp)
    [(uid, rel)] = write_results(store, 1)
    with sessions() as s:
        enqueue(s, "1.2.3.4.5", "results/missing.dcm", "pacs")
        enqueue(s, "1.2.3.4.6", rel, "pacs")  # file holds another SOP instance
        enqueue(s, uid, rel, "nowhere")
        enqueue(s, uid, rel, "pacs")
        s.commit()
    start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(
        lambda: all(r.state in (DeliveryState.DEAD, DeliveryState.DONE) for r in rows(sessions)),
        msg="every row settled",
    )
    missing, wrong, nowhere, good = rows(sessions)
    assert missing.state == DeliveryState.DEAD and "missing.dcm" in missing.last_error
    assert wrong.state == DeliveryState.DEAD and "holds SOP instance" in wrong.last_error
    assert nowhere.state == DeliveryState.DEAD and "not configured" in nowhere.last_error
    assert good.state == DeliveryState.DONE
    assert scp.received == [uid]


def test_implicit_only_peer_gets_a_converted_object(store, sessions, senders, scps) -> None:
    scp = FakeScp(syntaxes=[ImplicitVRLittleEndian])
    scps.append(scp)
    [(uid, rel)] = write_results(store, 1)
    queue_all(sessions, [(uid, rel)])
    start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(lambda: rows(sessions)[0].state == DeliveryState.DONE, msg="delivered")
    [ds] = scp.datasets
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.PixelData == dcmread(store / rel).PixelData


def test_enqueue_is_idempotent(store, sessions) -> None:
    [(uid, rel)] = write_results(store, 1)
    with sessions() as s:
        first = enqueue(s, uid, rel, "pacs")
        s.commit()
        second = enqueue(s, uid, "elsewhere.dcm", "pacs")
        other = enqueue(s, uid, rel, "archive")
        s.commit()
        assert first.id == second.id != other.id
    assert len(rows(sessions)) == 2


def test_disabled_destination_is_left_waiting(store, sessions, senders, scps) -> None:
    scp = FakeScp()
    scps.append(scp)
    queue_all(sessions, write_results(store, 1))
    settings = node_settings(store, scp.port)
    settings.destinations[0].enabled = False
    start_sender(senders, settings, sessions)
    time.sleep(0.8)
    [row] = rows(sessions)
    assert row.state == DeliveryState.PENDING and row.attempts == 0 and scp.received == []


# -- restart --------------------------------------------------------------------------------------


def test_pending_and_interrupted_rows_are_delivered_after_restart(store, sessions, scps) -> None:
    files = write_results(store, 4)
    queue_all(sessions, files)
    down_port = free_port()
    first = OutboxSender(
        node_settings(store, down_port, initial_backoff_seconds=60, max_backoff_seconds=60),
        sessions,
    )
    first.start()
    wait_for(
        lambda: all(r.attempts == 1 and r.state == DeliveryState.PENDING for r in rows(sessions)),
        msg="one failed attempt each",
    )
    first.stop(timeout=30)
    with sessions() as s:  # as if the process died in the middle of sending two of them
        ids = [r.id for r in rows(sessions)[:2]]
        s.execute(update(Delivery).where(Delivery.id.in_(ids)).values(state=DeliveryState.SENDING))
        s.commit()

    scp = FakeScp()
    scps.append(scp)
    second = OutboxSender(node_settings(store, scp.port), sessions)
    with sessions() as s:  # skip the 60 s backoff of the waiting rows (as `outbox retry` would)
        s.execute(
            update(Delivery)
            .where(Delivery.state == DeliveryState.PENDING)
            .values(next_attempt_at=rows(sessions)[0].created_at)
        )
        s.commit()
    second.start()
    try:
        wait_for(
            lambda: all(r.state == DeliveryState.DONE for r in rows(sessions)),
            msg="delivered after restart",
        )
    finally:
        second.stop(timeout=30)
    assert Counter(scp.received) == Counter(uid for uid, _ in files)
    assert all(r.attempts == 2 for r in rows(sessions))


def test_concurrent_enqueue_of_one_pair_makes_one_row(store, sessions) -> None:
    [(uid, rel)] = write_results(store, 1)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        try:
            barrier.wait()
            with sessions() as s:
                enqueue(s, uid, rel, "pacs")
                s.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    [row] = rows(sessions)
    assert row.state == DeliveryState.PENDING and row.attempts == 0 and row.created_at is not None


def test_enqueue_does_not_commit_for_the_caller(store, sessions) -> None:
    [(uid, rel)] = write_results(store, 1)
    with sessions() as s:
        enqueue(s, uid, rel, "pacs")
        s.rollback()
    assert rows(sessions) == []


def test_hanging_destination_does_not_delay_the_others(store, sessions, senders, scps) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers the A-ASSOCIATE
    accepted: list[socket.socket] = []
    acceptor = threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True)
    acceptor.start()
    good = FakeScp()
    scps.append(good)
    [(uid, rel)] = write_results(store, 1)
    with sessions() as s:
        enqueue(s, uid, rel, "hanging")
        enqueue(s, uid, rel, "pacs")
        s.commit()
    settings = node_settings(store, good.port)
    settings.destinations.append(
        settings.destinations[0].model_copy(
            update={"name": "hanging", "port": silent.getsockname()[1]}
        )
    )
    settings.timeouts.acse_seconds = 6
    try:
        sender = start_sender(senders, settings, sessions)
        wait_for(
            lambda: rows(sessions)[1].state == DeliveryState.DONE, timeout=20, msg="good delivered"
        )
        hanging = rows(sessions)[0]
        assert hanging.state == DeliveryState.SENDING  # still waiting for the silent peer
        wait_for(lambda: rows(sessions)[0].last_error is not None, timeout=30, msg="ACSE timeout")
        sender.stop(timeout=30)
        assert rows(sessions)[0].state == DeliveryState.PENDING and good.received == [uid]
    finally:
        for conn in accepted:
            conn.close()
        silent.close()


def test_rows_are_released_when_recording_fails(
    store, sessions, senders, scps, monkeypatch
) -> None:
    import node.sender.service as service_module

    real = service_module.record_attempt
    calls = {"n": 0}

    def flaky_record(*args, **kwargs):  # the catalogue is locked once while recording a result
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("UPDATE delivery", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(service_module, "record_attempt", flaky_record)
    scp = FakeScp()
    scps.append(scp)
    files = write_results(store, 2)
    queue_all(sessions, files)
    start_sender(senders, node_settings(store, scp.port), sessions)
    wait_for(lambda: all(r.state == DeliveryState.DONE for r in rows(sessions)), msg="delivered")
    # the object whose result could not be recorded was sent again (at least once)
    assert sorted(Counter(scp.received).values()) == [1, 2]
