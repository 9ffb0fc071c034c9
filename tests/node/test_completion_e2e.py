"""Study completion end to end: DCMTK storescu -> ``python -m node serve`` -> durable job rows.

Covers the quiet timer, early completion on the expected view, a late instance
re-opening the study, and ``kill -9`` during a pending completion.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import select

from storage.models import Job, Study, StudyEvent, StudyState
from tests.conftest import NodeProcess, require_tool, wait_for
from tests.factories import write_dx


def send(node: NodeProcess, *files: Path) -> None:
    done = subprocess.run(
        [
            require_tool("storescu"),
            "-aet",
            "STORESCU",
            "-aec",
            node.ae_title,
            "127.0.0.1",
            str(node.port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout


def study(node: NodeProcess, uid: str) -> Study | None:
    with node.session() as s:
        return s.scalar(select(Study).where(Study.study_instance_uid == uid))


def completion_count(node: NodeProcess, uid: str) -> int:
    row = study(node, uid)
    return row.completion_count if row is not None and row.state == StudyState.COMPLETE else 0


def jobs_of(node: NodeProcess, uid: str) -> list[Job]:
    with node.session() as s:
        row = s.scalar(select(Study).where(Study.study_instance_uid == uid))
        return list(s.scalars(select(Job).where(Job.study_pk == row.id).order_by(Job.id)))


def reasons(node: NodeProcess, uid: str) -> list[str]:
    with node.session() as s:
        row = s.scalar(select(Study).where(Study.study_instance_uid == uid))
        events = s.scalars(
            select(StudyEvent).where(StudyEvent.study_pk == row.id, StudyEvent.kind == "completed")
        )
        return [e.detail["reason"] for e in events]


def test_quiet_early_and_late_over_real_associations(
    start_node: Callable[..., NodeProcess], tmp_path
) -> None:
    node = start_node(config={"completion": {"quiet_seconds": 1.5, "early_delay_seconds": 0.2}})
    lateral, ap = generate_uid(), generate_uid()
    # a lateral hip view is not the expected view: the quiet timer decides
    send(
        node,
        write_dx(tmp_path / "lat1.dcm", rows=32, columns=32, study_uid=lateral, view_position="LL"),
    )
    send(
        node,
        write_dx(
            tmp_path / "lat2.dcm",
            rows=32,
            columns=32,
            study_uid=lateral,
            view_position="LL",
            seed=1,
        ),
    )
    # an AP pelvis completes early
    send(node, write_dx(tmp_path / "ap.dcm", rows=32, columns=32, study_uid=ap, view_position="AP"))
    wait_for(
        lambda: completion_count(node, ap) == 1, timeout=30, msg="early completion of the AP study"
    )
    wait_for(
        lambda: completion_count(node, lateral) == 1,
        timeout=30,
        msg="quiet completion of the lateral study",
    )
    assert reasons(node, ap) == ["expected_view"] and reasons(node, lateral) == ["quiet"]
    [job] = jobs_of(node, lateral)
    assert job.kind == "analyze_study" and job.key == f"analyze_study:{lateral}:1"

    # a late instance re-opens the completed study and queues a second job
    send(
        node,
        write_dx(
            tmp_path / "lat3.dcm",
            rows=32,
            columns=32,
            study_uid=lateral,
            view_position="LL",
            seed=2,
        ),
    )
    wait_for(
        lambda: completion_count(node, lateral) == 2,
        timeout=30,
        msg="re-completion after a late instance",
    )
    assert [j.key for j in jobs_of(node, lateral)] == [
        f"analyze_study:{lateral}:{n}" for n in (1, 2)
    ]
    assert "study completed" in node.log() and f"study_instance_uid={lateral}" in node.log()


def test_kill_during_pending_completion_still_completes(
    start_node: Callable[..., NodeProcess], tmp_path
) -> None:
    node = start_node(config={"completion": {"quiet_seconds": 4.0}})
    uid = generate_uid()
    send(node, write_dx(tmp_path / "a.dcm", rows=32, columns=32, study_uid=uid, view_position="LL"))
    node.kill()  # SIGKILL well before the 4 s deadline
    row = study(node, uid)
    assert row is not None and row.state != StudyState.COMPLETE and row.completion_count == 0
    node.start()
    wait_for(lambda: completion_count(node, uid) == 1, timeout=30, msg="completion after restart")
    assert reasons(node, uid) == ["recovered"]
    assert len(jobs_of(node, uid)) == 1
