"""The sender against a real PACS: Orthanc keeps one copy per SOP instance, even when
the at-least-once outbox sends an object twice (a crash between send and record)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread
from sqlalchemy import select, update

from node.config import Settings
from node.sender import OutboxSender, enqueue
from storage.db import Base, make_engine, make_session_factory
from storage.models import Delivery, DeliveryState
from tests.conftest import free_port, require_tool, wait_for
from tests.factories import write_dx


def http_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local test server
        return json.loads(response.read())


@pytest.fixture()
def orthanc(tmp_path: Path):
    dicom_port, http_port = free_port(), free_port()
    config = tmp_path / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "hipnode-sender-test",
                "StorageDirectory": str(tmp_path / "orthanc-db"),
                "IndexDirectory": str(tmp_path / "orthanc-db"),
                "DicomAet": "ORTHANC",
                "DicomPort": dicom_port,
                "HttpPort": http_port,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "OverwriteInstances": False,
                "Plugins": [],
            }
        )
    )
    proc = subprocess.Popen(
        [require_tool("Orthanc"), str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{http_port}"

    def up() -> bool:
        try:
            http_json(f"{base}/system")
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, msg="Orthanc to answer")
        yield dicom_port, base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_delivery_to_orthanc_keeps_one_copy_after_a_resend(orthanc, tmp_path) -> None:
    dicom_port, base = orthanc
    store = tmp_path / "store"
    store.mkdir()
    engine = make_engine(f"sqlite:///{store / 'hipnode.sqlite3'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    uid = str(
        dcmread(
            write_dx(store / "r.dcm", rows=32, columns=32), stop_before_pixels=True
        ).SOPInstanceUID
    )
    with sessions() as s:
        enqueue(s, uid, "r.dcm", "orthanc")
        s.commit()
    settings = Settings(
        storage_dir=store,
        destinations=[
            {"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": dicom_port}
        ],
        outbox={"poll_seconds": 0.1, "initial_backoff_seconds": 0.2, "max_backoff_seconds": 0.5},
    )

    def state() -> DeliveryState:
        with sessions() as s:
            return s.scalars(select(Delivery)).one().state

    for _ in range(2):  # the second round re-sends the same object, as after a crash mid-record
        sender = OutboxSender(settings, sessions)
        sender.start()
        try:
            wait_for(lambda: state() == DeliveryState.DONE, timeout=60, msg="delivered to Orthanc")
        finally:
            sender.stop(timeout=30)
        with sessions() as s:
            s.execute(update(Delivery).values(state=DeliveryState.SENDING))
            s.commit()
    with sessions() as s:
        assert s.scalars(select(Delivery)).one().attempts == 2  # really sent twice
    engine.dispose()
    found = http_json(f"{base}/instances?expand")
    assert [i["MainDicomTags"]["SOPInstanceUID"] for i in found] == [uid]
