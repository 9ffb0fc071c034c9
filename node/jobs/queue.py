"""The job table as a durable queue.

Every state change is a conditional UPDATE (so two workers can never claim the
same job) plus an appended ``job_event`` row (so a job's history survives). A
job's ``key`` makes enqueueing idempotent: re-sending a study or re-running
completion never creates a second job for the same work.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Job, JobEvent, JobState, utcnow

log = logging.getLogger(__name__)
_JOB: Table = Job.__table__  # type: ignore[assignment]
_JOB_BY_KEY = select(_JOB.c.id).where(_JOB.c.key == bindparam("key"))
_INSERT_JOB = insert(_JOB)
_INSERT_JOB_EVENT = insert(JobEvent.__table__)

RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0


class PermanentJobError(Exception):
    """The input can never be processed (retrying would not help); ``stage`` names where."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


def enqueue(
    session: Session,
    kind: str,
    key: str,
    *,
    study_pk: int | None = None,
    payload: dict[str, Any] | None = None,
    max_attempts: int = 3,
) -> int:
    """Add a job unless one with ``key`` exists; return its id either way. Caller commits.

    Core statements: completion enqueues one job per study on the ingest path.
    """
    existing = session.execute(_JOB_BY_KEY, {"key": key}).scalar()
    if existing is not None:
        return int(existing)
    inserted = session.execute(
        _INSERT_JOB,
        {
            "kind": kind,
            "key": key,
            "study_pk": study_pk,
            "payload": payload or {},
            "max_attempts": max_attempts,
        },
    )
    job_id = int(inserted.inserted_primary_key[0])
    session.execute(
        _INSERT_JOB_EVENT,
        {"job_pk": job_id, "state": JobState.QUEUED.value, "detail": f"enqueued {kind}"},
    )
    log.info("job queued", extra={"job_id": job_id, "kind": kind, "key": key})
    return job_id


def claim_next(session_factory: sessionmaker, worker: str, kinds: tuple[str, ...] | None = None) -> Job | None:
    """Atomically move the oldest due queued job to running and return it."""
    now = utcnow()
    with session_factory() as session:
        query = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, or_(Job.not_before.is_(None), Job.not_before <= now))
            .order_by(Job.id)
            .limit(8)
        )
        if kinds:
            query = query.where(Job.kind.in_(kinds))
        for job_id in session.scalars(query).all():
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.QUEUED)
                .values(state=JobState.RUNNING, attempts=Job.attempts + 1, worker=worker, updated_at=now)
            )
            if claimed.rowcount == 1:
                session.add(JobEvent(job_pk=job_id, state=JobState.RUNNING.value, detail=f"claimed by {worker}"))
                session.commit()
                return session.get(Job, job_id)
            session.rollback()
    return None


def mark_done(session_factory: sessionmaker, job_id: int, detail: str = "") -> None:
    """Finish a running job."""
    with session_factory() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(state=JobState.DONE, fail_stage=None, fail_reason=None)
        )
        session.add(JobEvent(job_pk=job_id, state=JobState.DONE.value, detail=detail or None))
        session.commit()


def mark_failed(
    session_factory: sessionmaker, job_id: int, stage: str, reason: str, *, permanent: bool
) -> JobState:
    """Record a failure; requeue with backoff while attempts remain and the error is transient."""
    with session_factory() as session:
        job = session.get(Job, job_id)
        if job is None:
            return JobState.FAILED
        retry = not permanent and job.attempts < job.max_attempts
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, job.attempts - 1))
        delay *= 1 + random.uniform(-0.2, 0.2)
        job.state = JobState.QUEUED if retry else JobState.FAILED
        job.not_before = utcnow() + dt.timedelta(seconds=delay) if retry else None
        job.fail_stage = stage
        job.fail_reason = reason
        session.add(JobEvent(job_pk=job_id, state=job.state.value, detail=f"{stage}: {reason}"))
        session.commit()
        level = logging.WARNING if retry else logging.ERROR
        log.log(level, "job failed", extra={"job_id": job_id, "stage": stage, "reason": reason, "retry": retry})
        return job.state


def recover_interrupted(session_factory: sessionmaker) -> int:
    """On node start, jobs left running by a dead process go back to the queue."""
    with session_factory() as session:
        stale = session.scalars(select(Job.id).where(Job.state == JobState.RUNNING)).all()
        for job_id in stale:
            session.execute(update(Job).where(Job.id == job_id).values(state=JobState.QUEUED, worker=None))
            session.add(JobEvent(job_pk=job_id, state=JobState.QUEUED.value, detail="recovered after restart"))
        session.commit()
    if stale:
        log.warning("requeued interrupted jobs", extra={"count": len(stale)})
    return len(stale)
