"""The sender inside ``python -m node serve``: queued results survive ``kill -9`` and a
destination that was down, and arrive exactly once at DCMTK storescp."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable

from pydicom import dcmread
from sqlalchemy import select

from node.sender import enqueue
from storage.models import Delivery, DeliveryState
from tests.conftest import NodeProcess, free_port, require_tool, wait_for
from tests.factories import write_dx


def deliveries(node: NodeProcess) -> list[Delivery]:
    with node.session() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.id)))


def test_queued_results_survive_kill_and_outage(
    start_node: Callable[..., NodeProcess], tmp_path
) -> None:
    port = free_port()
    node = start_node(
        config={
            "destinations": [
                {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": port}
            ],
            "outbox": {
                "initial_backoff_seconds": 0.3,
                "max_backoff_seconds": 1.0,
                "poll_seconds": 0.2,
            },
            "timeouts": {"connection_seconds": 2},
        }
    )
    results = node.storage / "results"
    results.mkdir()
    uids = []
    with node.session() as s:
        for i in range(3):
            path = write_dx(results / f"r{i}.dcm", rows=32, columns=32, seed=i)
            uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            uids.append(uid)
            enqueue(s, uid, f"results/r{i}.dcm", "pacs")
        s.commit()
    wait_for(
        lambda: all(d.attempts >= 1 and d.last_error for d in deliveries(node)),
        msg="a recorded failed attempt each (destination down)",
    )
    assert all(d.state != DeliveryState.DONE for d in deliveries(node))
    node.kill()  # SIGKILL, possibly in the middle of a retry: rows may be left 'sending'

    received = tmp_path / "received"
    received.mkdir()
    storescp = subprocess.Popen(
        [require_tool("storescp"), "+uf", "-aet", "PACS", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        node.start()
        wait_for(
            lambda: all(d.state == DeliveryState.DONE for d in deliveries(node)),
            timeout=60,
            msg="delivery after restart",
        )
    finally:
        storescp.terminate()
        storescp.wait(timeout=10)
    got = Counter(str(dcmread(p).SOPInstanceUID) for p in received.iterdir())
    assert got == Counter(uids)
    assert "delivery attempt" in node.log() and "outcome=done" in node.log()
