"""kill -9 during a burst from 4 parallel storescu senders: every acknowledged
instance survives, hash-identical, with its row; nothing half-written remains."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
from sqlalchemy import func, select

from node.network.validate import check_object
from storage.models import Instance
from tests.conftest import NO_WORKERS, NodeProcess, start_storescu_senders, storescu_responses, wait_for
from tests.factories import dataset_bytes, write_dx

SENDERS = 4
PER_SENDER = 60


def _rows(node: NodeProcess) -> int:
    with node.session() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def test_kill_9_during_burst_loses_no_acknowledged_instance(start_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node: NodeProcess = start_node(env=NO_WORKERS, config={"completion": {"quiet_seconds": 60.0}})
    batches = [
        [
            write_dx(
                tmp_path / f"s{s}" / f"{i:03d}.dcm",
                rows=64,
                columns=64,
                seed=s * 1000 + i,
                patient_id=f"P{s}",
            )
            for i in range(PER_SENDER)
        ]
        for s in range(SENDERS)
    ]
    senders = start_storescu_senders(node, batches)
    wait_for(
        lambda: _rows(node) >= 60, timeout=120, interval=0.01, msg="a third of the burst to arrive"
    )
    node.kill()
    outputs = [sender.communicate(timeout=60)[0] for sender in senders]
    acked: list[Path] = []
    for output in outputs:
        acked += [
            Path(f)
            for f, response in storescu_responses(output).items()
            if response.startswith("Success")
        ]
    total = SENDERS * PER_SENDER
    assert 30 <= len(acked) < total, (
        f"the kill did not land inside the burst ({len(acked)} of {total} acked)"
    )

    node.start()
    assert list((node.storage / "tmp").iterdir()) == []
    with node.session() as session:
        rows = {row.sop_instance_uid: row for row in session.scalars(select(Instance))}
    for sent in acked:
        uid = pydicom.dcmread(sent, stop_before_pixels=True).SOPInstanceUID
        row = rows.get(uid)
        assert row is not None, f"acknowledged {sent.name} has no row after restart"
        stored = node.storage / row.path
        assert dataset_bytes(stored) == dataset_bytes(sent), (
            f"{sent.name} differs from what was sent"
        )
        assert hashlib.sha256(dataset_bytes(stored)).hexdigest() == row.sha256
    # Nothing half-written: every file is complete and catalogued, every row has its file.
    files = {
        p.relative_to(node.storage).as_posix() for p in (node.storage / "dicom").rglob("*.dcm")
    }
    assert files == {row.path for row in rows.values()}
    for relative in files:
        check_object(node.storage / relative)
    assert len(rows) >= len(acked)
