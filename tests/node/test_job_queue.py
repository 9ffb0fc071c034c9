"""The durable job queue on a real SQLite file: idempotent enqueue, exclusive claim, retry, recovery."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from node.jobs.queue import (
    PermanentJobError,
    claim_next,
    enqueue,
    mark_done,
    mark_failed,
    recover_interrupted,
)
from node.jobs.worker import IDLE_POLL_SECONDS, JobContext, notify_queued, run_lanes, run_one
from storage.db import Base, make_engine, make_session_factory
from storage.models import Job, JobEvent, JobState


@pytest.fixture()
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")
    Base.metadata.create_all(engine)
    yield make_session_factory(engine)
    engine.dispose()


def test_enqueue_is_idempotent_on_key(sessions) -> None:
    with sessions() as s:
        first = enqueue(s, "analyze_study", "study:1.2.3:1")
        second = enqueue(s, "analyze_study", "study:1.2.3:1")
        s.commit()
        assert first == second
        assert s.scalar(select(Job).where(Job.key == "study:1.2.3:1")) is not None
        assert len(s.scalars(select(Job)).all()) == 1


def test_concurrent_claims_never_share_a_job(sessions) -> None:
    with sessions() as s:
        for i in range(40):
            enqueue(s, "analyze_study", f"k{i}")
        s.commit()
    claimed: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (job := claim_next(sessions, name)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 40


def test_transient_failure_retries_then_fails(sessions) -> None:
    with sessions() as s:
        job_id = enqueue(s, "analyze_study", "k", max_attempts=2)
        s.commit()
    claim_next(sessions, "w")
    assert mark_failed(sessions, job_id, "analyze", "disk busy", permanent=False) == JobState.QUEUED
    with sessions() as s:
        s.execute(Job.__table__.update().values(not_before=None))
        s.commit()
    claim_next(sessions, "w")
    assert mark_failed(sessions, job_id, "analyze", "disk busy", permanent=False) == JobState.FAILED
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.attempts == 2 and job.fail_stage == "analyze" and job.fail_reason == "disk busy"
        states = [e.state for e in s.scalars(select(JobEvent).where(JobEvent.job_pk == job_id).order_by(JobEvent.id))]
        assert states == ["queued", "running", "queued", "running", "failed"]


def test_permanent_error_and_missing_handler_are_visible(sessions, tmp_path: Path) -> None:
    with sessions() as s:
        enqueue(s, "analyze_study", "a")
        enqueue(s, "mystery", "b")
        s.commit()
    ctx = JobContext(settings=None, session_factory=sessions, storage_dir=tmp_path, worker="w")

    def refuse(job, ctx):
        raise PermanentJobError("classify", "not an AP pelvis view")

    for _ in range(2):
        run_one(claim_next(sessions, "w"), ctx, {"analyze_study": refuse})
    with sessions() as s:
        reasons = {j.key: (j.state, j.fail_reason) for j in s.scalars(select(Job))}
    assert reasons["a"] == (JobState.FAILED, "not an AP pelvis view")
    assert reasons["b"][0] == JobState.FAILED and "no handler" in reasons["b"][1]


def test_interrupted_jobs_are_recovered(sessions) -> None:
    with sessions() as s:
        enqueue(s, "analyze_study", "k")
        s.commit()
    job = claim_next(sessions, "w")
    assert recover_interrupted(sessions) == 1
    again = claim_next(sessions, "w2")
    assert again is not None and again.id == job.id and again.attempts == 2
    mark_done(sessions, again.id)
    with sessions() as s:
        assert s.get(Job, job.id).state == JobState.DONE


def test_a_job_queued_by_a_running_job_starts_in_its_own_lane_at_once(sessions, tmp_path: Path) -> None:
    """The pair job a study job queues runs while the study job is still encoding (worker lanes)."""
    ctx = JobContext(settings=None, session_factory=sessions, storage_dir=tmp_path, worker="w")
    pair_started, study_may_end = threading.Event(), threading.Event()
    with sessions() as s:
        enqueue(s, "analyze_study", "study")
        s.commit()

    def study(job, ctx):
        with ctx.session_factory() as s:
            enqueue(s, "analyze_pair", "pair")
            s.commit()
        notify_queued()
        assert pair_started.wait(IDLE_POLL_SECONDS / 2), "the pair lane waited for its poll, or for this job"
        study_may_end.set()
        return "study"

    def pair(job, ctx):
        pair_started.set()
        assert study_may_end.wait(5)
        return "pair"

    def stop() -> bool:
        with sessions() as s:
            return all(j.state == JobState.DONE for j in s.scalars(select(Job))) and len(s.scalars(select(Job)).all()) == 2

    runner = threading.Thread(target=run_lanes, args=(ctx, {"analyze_study": study, "analyze_pair": pair}, stop))
    runner.start()
    runner.join(10)
    assert not runner.is_alive()
    with sessions() as s:
        assert {j.key: j.state for j in s.scalars(select(Job))} == {"study": JobState.DONE, "pair": JobState.DONE}


def test_a_bell_rung_in_another_process_is_relayed_at_once() -> None:
    """Node <-> worker bells: a ring is answered without waiting for a poll, and the relay stops on request."""
    import multiprocessing
    import time

    from node.jobs.worker import _relay

    context = multiprocessing.get_context("spawn")
    bell, rung, done = context.Event(), threading.Event(), threading.Event()
    relay = threading.Thread(target=_relay, args=(bell, rung.set, done.is_set))
    relay.start()
    started = time.perf_counter()
    bell.set()
    assert rung.wait(IDLE_POLL_SECONDS / 2)
    assert time.perf_counter() - started < IDLE_POLL_SECONDS / 2 and not bell.is_set()
    done.set()
    relay.join(2 * IDLE_POLL_SECONDS + 1)
    assert not relay.is_alive()
