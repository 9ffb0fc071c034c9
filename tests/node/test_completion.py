"""Study completion on a real SQLite file with short timers (no SCP involved)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

from node.completion import CompletedStudy, CompletionService
from node.config import Settings
from storage.db import Base, make_engine, make_session_factory
from storage.models import Instance, Job, Patient, Series, Study, StudyEvent, StudyState, utcnow
from tests.conftest import wait_for

STUDY = "1.2.826.0.1.3680043.8.498.1001"


@pytest.fixture()
def sessions(tmp_path: Path) -> Iterator[sessionmaker]:
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def settings(tmp_path: Path, **completion: object) -> Settings:
    values = {"quiet_seconds": 0.5, "early_delay_seconds": 0.1, "max_reopen": 2, **completion}
    return Settings(storage_dir=tmp_path, completion=values)


def add_instance(sessions: sessionmaker, study_uid: str = STUDY, n: int = 1) -> None:
    """Catalogue rows the way the SCP would commit them before calling the service."""
    with sessions() as s:
        study = s.scalar(select(Study).where(Study.study_instance_uid == study_uid))
        if study is None:
            patient = Patient(patient_id="P1", issuer_of_patient_id="")
            study = Study(study_instance_uid=study_uid, patient=patient)
            s.add(Series(series_instance_uid=study_uid + ".1", study=study, modality="DX"))
            s.flush()
        series = s.scalar(select(Series).where(Series.study_pk == study.id))
        count = len(s.scalars(select(Instance).where(Instance.series_pk == series.id)).all())
        for i in range(n):
            s.add(
                Instance(
                    sop_instance_uid=f"{study_uid}.1.{count + i + 1}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
                    series=series,
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"x/{count + i}.dcm",
                    sha256="0" * 64,
                    size_bytes=1,
                )
            )
        study.last_received_at = utcnow()
        s.commit()


def study_row(sessions: sessionmaker, uid: str = STUDY) -> Study:
    with sessions() as s:
        study = s.scalar(select(Study).where(Study.study_instance_uid == uid))
        assert study is not None
        return study


def jobs(sessions: sessionmaker) -> list[Job]:
    with sessions() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


def events(sessions: sessionmaker) -> list[StudyEvent]:
    with sessions() as s:
        return list(s.scalars(select(StudyEvent).order_by(StudyEvent.id)))


@pytest.fixture()
def services() -> Iterator[list[CompletionService]]:
    started: list[CompletionService] = []
    yield started
    for service in started:
        service.stop()


def started(
    services: list[CompletionService], s: Settings, sessions: sessionmaker
) -> CompletionService:
    service = CompletionService(s, sessions)
    service.start()
    services.append(service)
    return service


def test_quiet_timer_completes_study_and_writes_job(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=0.6), sessions)
    hooked: list[CompletedStudy] = []
    service.on_completed(hooked.append)
    add_instance(sessions, n=3)
    t0 = utcnow()
    service.on_instance_stored(STUDY, expected_view=False)
    assert service.wait_idle()
    pending = study_row(sessions)
    assert pending.state == StudyState.RECEIVING and pending.complete_due_at is not None
    wait_for(lambda: study_row(sessions).state == StudyState.COMPLETE, msg="quiet completion")
    study = study_row(sessions)
    completed_at = study.completed_at.replace(tzinfo=dt.UTC)
    assert completed_at - t0 >= dt.timedelta(seconds=0.55), (
        "completed before the quiet period ended"
    )
    assert study.completion_count == 1 and study.complete_due_at is None
    [job] = jobs(sessions)
    assert job.kind == "analyze_study" and job.study_pk == study.id
    assert job.key == f"analyze_study:{STUDY}:1"
    assert job.payload["study_instance_uid"] == STUDY
    [event] = events(sessions)
    assert event.kind == "completed" and event.detail["reason"] == "quiet"
    assert event.detail["instance_count"] == 3
    wait_for(lambda: len(hooked) == 1, msg="hook")
    assert hooked[0].job_id == job.id and hooked[0].reason == "quiet"


def test_new_instances_keep_pushing_the_quiet_deadline(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=1.5), sessions)
    add_instance(sessions)
    for _ in range(4):  # arrivals 0.3 s apart: never 1.5 s of quiet
        service.on_instance_stored(STUDY, expected_view=False)
        time.sleep(0.3)
        assert study_row(sessions).state == StudyState.RECEIVING
    wait_for(lambda: study_row(sessions).state == StudyState.COMPLETE, msg="completion after quiet")
    assert len(jobs(sessions)) == 1


def test_expected_view_completes_early(tmp_path, sessions, services) -> None:
    service = started(
        services, settings(tmp_path, quiet_seconds=60, early_delay_seconds=0.2), sessions
    )
    add_instance(sessions)
    service.on_instance_stored(STUDY, expected_view=True)
    wait_for(
        lambda: study_row(sessions).state == StudyState.COMPLETE, timeout=10, msg="early completion"
    )
    [event] = events(sessions)
    assert event.detail["reason"] == "expected_view"


def test_expected_view_ignored_when_early_completion_is_off(tmp_path, sessions, services) -> None:
    s = settings(tmp_path, quiet_seconds=60, early_delay_seconds=0.1, early_on_expected_views=False)
    service = started(services, s, sessions)
    add_instance(sessions)
    service.on_instance_stored(STUDY, expected_view=True)
    assert service.wait_idle()
    time.sleep(0.6)
    assert study_row(sessions).state == StudyState.RECEIVING


def test_late_instance_reopens_and_retriggers(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=0.3), sessions)
    add_instance(sessions)
    service.on_instance_stored(STUDY, expected_view=False)
    wait_for(lambda: study_row(sessions).completion_count == 1, msg="first completion")
    add_instance(sessions)  # late instance
    service.on_instance_stored(STUDY, expected_view=False)
    assert service.wait_idle()
    assert study_row(sessions).state == StudyState.REOPENED
    wait_for(lambda: study_row(sessions).completion_count == 2, msg="second completion")
    assert study_row(sessions).state == StudyState.COMPLETE
    assert [j.key for j in jobs(sessions)] == [
        f"analyze_study:{STUDY}:1",
        f"analyze_study:{STUDY}:2",
    ]
    assert [e.kind for e in events(sessions)] == ["completed", "reopened", "completed"]
    assert events(sessions)[-1].detail["instance_count"] == 2


def test_reopening_is_bounded(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=0.2, max_reopen=1), sessions)
    add_instance(sessions)
    service.on_instance_stored(STUDY, expected_view=False)
    wait_for(lambda: study_row(sessions).completion_count == 1, msg="completion")
    service.on_instance_stored(STUDY, expected_view=False)
    wait_for(lambda: study_row(sessions).completion_count == 2, msg="re-completion")
    service.on_instance_stored(STUDY, expected_view=False)  # over the limit
    assert service.wait_idle()
    time.sleep(0.5)
    study = study_row(sessions)
    assert study.state == StudyState.COMPLETE and study.completion_count == 2
    assert study.complete_due_at is None
    assert len(jobs(sessions)) == 2
    assert events(sessions)[-1].kind == "reopen_refused"


def test_restart_during_pending_completion_still_completes(tmp_path, sessions) -> None:
    s = settings(tmp_path, quiet_seconds=1.5)
    first = CompletionService(s, sessions)
    first.start()
    add_instance(sessions)
    first.on_instance_stored(STUDY, expected_view=False)
    first.stop()  # before the deadline: the timer dies with the process
    pending = study_row(sessions)
    assert pending.state == StudyState.RECEIVING and pending.complete_due_at is not None
    assert jobs(sessions) == []
    second = CompletionService(s, sessions)
    second.start()
    try:
        wait_for(
            lambda: study_row(sessions).state == StudyState.COMPLETE, msg="recovered completion"
        )
    finally:
        second.stop()
    [event] = events(sessions)
    assert event.detail["reason"] == "recovered"
    assert len(jobs(sessions)) == 1


def test_restart_completes_overdue_study_at_once(tmp_path, sessions, services) -> None:
    add_instance(sessions)
    with sessions() as s:  # a deadline that passed while the node was down
        study = s.scalar(select(Study))
        study.complete_due_at = utcnow() - dt.timedelta(hours=1)
        s.commit()
    started(services, settings(tmp_path, quiet_seconds=600), sessions)
    wait_for(
        lambda: study_row(sessions).state == StudyState.COMPLETE,
        timeout=10,
        msg="overdue completion",
    )


def test_arrival_lost_before_deadline_was_written_is_recovered(
    tmp_path, sessions, services
) -> None:
    add_instance(sessions)  # committed by the SCP, then the node died before the service saw it
    assert study_row(sessions).complete_due_at is None
    started(services, settings(tmp_path, quiet_seconds=0.3), sessions)
    wait_for(lambda: study_row(sessions).state == StudyState.COMPLETE, msg="orphan completion")


def test_two_services_on_one_catalogue_complete_once(tmp_path, sessions, services) -> None:
    s = settings(tmp_path, quiet_seconds=0.3)
    a, b = started(services, s, sessions), started(services, s, sessions)
    add_instance(sessions)
    a.on_instance_stored(STUDY, expected_view=False)
    b.on_instance_stored(STUDY, expected_view=False)
    wait_for(lambda: study_row(sessions).state == StudyState.COMPLETE, msg="completion")
    time.sleep(0.6)
    assert study_row(sessions).completion_count == 1
    assert len(jobs(sessions)) == 1


def test_unknown_study_is_ignored_without_killing_the_service(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=0.2), sessions)
    service.on_instance_stored("9.9.9", expected_view=True)
    add_instance(sessions)
    service.on_instance_stored(STUDY, expected_view=False)
    wait_for(
        lambda: study_row(sessions).state == StudyState.COMPLETE,
        msg="completion after a bad arrival",
    )


def test_on_instance_stored_does_not_block(tmp_path, sessions, services) -> None:
    service = started(services, settings(tmp_path, quiet_seconds=0.3), sessions)
    add_instance(sessions)
    with (
        sessions() as s
    ):  # hold SQLite's write lock: persisting arrivals must wait, callers must not
        s.execute(Study.__table__.update().values(study_description="locked"))
        calls = threading.Thread(
            target=lambda: [service.on_instance_stored(STUDY, False) for _ in range(500)]
        )
        t0 = time.monotonic()
        calls.start()
        calls.join(timeout=5)
        assert not calls.is_alive() and time.monotonic() - t0 < 5
        s.commit()
    wait_for(
        lambda: study_row(sessions).state == StudyState.COMPLETE, msg="completion after the lock"
    )
    assert len(jobs(sessions)) == 1


def test_late_arrival_lost_in_a_crash_reopens_after_restart(tmp_path, sessions, services) -> None:
    add_instance(sessions)
    with sessions() as s:  # completed once, then a late instance committed but never announced
        study = s.scalar(select(Study))
        study.state, study.completion_count = StudyState.COMPLETE, 1
        study.completed_at = utcnow() - dt.timedelta(minutes=5)
        s.commit()
    add_instance(sessions)
    started(services, settings(tmp_path, quiet_seconds=0.3), sessions)
    wait_for(lambda: study_row(sessions).completion_count == 2, msg="re-completion after restart")
    assert [e.kind for e in events(sessions)] == ["reopened", "completed"]


def test_database_hiccup_while_persisting_an_arrival_is_retried(
    tmp_path, sessions, services
) -> None:
    failures = {"left": 0}

    def flaky_sessions():  # the catalogue is briefly unavailable for the arrival thread
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return sessions()

    service = started(services, settings(tmp_path, quiet_seconds=0.3), flaky_sessions)
    add_instance(sessions)
    failures["left"] = 2
    service.on_instance_stored(STUDY, expected_view=False)
    wait_for(
        lambda: study_row(sessions).state == StudyState.COMPLETE, msg="completion after retries"
    )
    assert failures["left"] == 0
