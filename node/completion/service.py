"""Study completion: a persisted quiet timer per study, run by APScheduler.

The C-STORE handler calls :meth:`CompletionService.on_instance_stored` after it
committed the instance row. That call only queues the arrival; one thread turns
arrivals into a persisted deadline (``study.complete_due_at``) and a timer. When
the timer fires, one conditional UPDATE completes the study and, in the same
transaction, writes a ``study_event`` and a durable ``analyze_study`` job: the
job row is the contract with the pipeline, the in-process hooks only wake it.

Durability: the deadline lives in the database, so ``start()`` re-arms every
pending study (and studies whose arrival was never turned into a deadline). Two
processes sharing the catalogue cannot complete a study twice: the UPDATE only
matches a study that is still pending and due.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from node.completion.rules import (
    ArrivalAction,
    CompletionPolicy,
    CompletionReason,
    arrival_action,
    as_utc,
    due_time,
    job_key,
)
from node.config import Settings
from node.jobs.queue import enqueue as enqueue_job
from storage.db import write_lock
from storage.models import Instance, Series, Study, StudyEvent, StudyState, utcnow

log = logging.getLogger(__name__)

# Core statements built once for the per-instance paths: the ORM and building
# statements anew cost more CPU than SQLite itself here.
_STUDY: Table = Study.__table__  # type: ignore[assignment]
_SERIES: Table = Series.__table__  # type: ignore[assignment]
_INSTANCE: Table = Instance.__table__  # type: ignore[assignment]
_PUSH_DEADLINE = (
    update(_STUDY)
    .where(
        _STUDY.c.study_instance_uid == bindparam("uid"), _STUDY.c.state != StudyState.COMPLETE
    )
    .values(complete_due_at=bindparam("due"))
)
_COMPLETE_IF_DUE = (
    update(_STUDY)
    .where(
        _STUDY.c.study_instance_uid == bindparam("uid"),
        _STUDY.c.state != StudyState.COMPLETE,
        _STUDY.c.complete_due_at.is_not(None),
        _STUDY.c.complete_due_at <= bindparam("due_by"),
    )
    .values(
        state=StudyState.COMPLETE,
        completed_at=bindparam("now"),
        completion_count=_STUDY.c.completion_count + 1,
        complete_due_at=None,
    )
    .returning(_STUDY.c.id, _STUDY.c.completion_count)
)
_COUNT_INSTANCES = (
    select(func.count(_INSTANCE.c.id))
    .select_from(_INSTANCE.join(_SERIES))
    .where(_SERIES.c.study_pk == bindparam("study_pk"))
)
_INSERT_STUDY_EVENT = insert(StudyEvent.__table__)

ANALYZE_STUDY = "analyze_study"
# A timer may fire a hair before the stored deadline (clock granularity).
_DUE_TOLERANCE = dt.timedelta(milliseconds=20)
_MAX_TRIES = 5
_RETRY_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class CompletedStudy:
    """What the hooks receive after a completion was committed."""

    study_instance_uid: str
    study_pk: int
    completion_count: int
    reason: CompletionReason
    instance_count: int
    job_id: int


@dataclass(frozen=True)
class _Arrival:
    study_instance_uid: str
    expected_view: bool
    received_at: dt.datetime
    tries: int = 0  # failed attempts to persist it


CompletionHook = Callable[[CompletedStudy], None]


def policy_from_settings(settings: Settings) -> CompletionPolicy:
    """The pure rules' view of ``settings.completion``."""
    c = settings.completion
    return CompletionPolicy(
        c.quiet_seconds, c.early_on_expected_views, c.early_delay_seconds, c.max_reopen
    )


class CompletionService:
    """Decides when studies are complete and writes the durable trigger for the pipeline."""

    def __init__(self, settings: Settings, session_factory: sessionmaker) -> None:
        self._policy = policy_from_settings(settings)
        self._session_factory = session_factory
        self._write_lock = write_lock(session_factory)
        self._arrivals: queue.Queue[_Arrival | None] = queue.Queue()
        self._expected_seen: set[str] = set()  # studies whose expected view arrived this round
        self._lock = threading.Lock()
        self._hooks: list[CompletionHook] = []
        self._scheduler: BackgroundScheduler | None = None
        self._thread: threading.Thread | None = None

    # -- public API -------------------------------------------------------------

    def on_completed(self, callback: CompletionHook) -> None:
        """Register a callback run after each committed completion (e.g. wake a worker)."""
        self._hooks.append(callback)

    def on_instance_stored(self, study_instance_uid: str, expected_view: bool) -> None:
        """Note an instance committed for a study. Cheap: only queues the arrival."""
        self._arrivals.put(_Arrival(study_instance_uid, expected_view, utcnow()))

    def start(self) -> None:
        """Start the timer and arrival threads and re-arm completions left pending."""
        if self._scheduler is not None:
            return
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(2)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=dt.UTC,
        )
        self._scheduler.start()
        self._recover()
        self._thread = threading.Thread(
            target=self._arrival_loop, name="completion-arrivals", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Persist queued arrivals, then stop; pending deadlines stay in the database."""
        if self._thread is not None:
            self._arrivals.put(None)
            self._thread.join()
            self._thread = None
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every queued arrival has been persisted (tests, orderly shutdown)."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while self._arrivals.unfinished_tasks and not deadline.is_set():
                deadline.wait(0.01)
            return not self._arrivals.unfinished_tasks
        finally:
            timer.cancel()

    # -- arrivals -----------------------------------------------------------------

    def _arrival_loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._arrivals.get()]
            while True:
                try:
                    batch.append(self._arrivals.get_nowait())
                except queue.Empty:
                    break
            stopping = None in batch
            arrivals = [a for a in batch if a is not None]
            try:
                if arrivals:
                    self._register(arrivals)
            except Exception:  # a database hiccup must not kill the thread
                retry = [replace(a, tries=a.tries + 1) for a in arrivals if a.tries < _MAX_TRIES]
                log.exception(
                    "could not persist study arrivals",
                    extra={"count": len(arrivals), "retrying": len(retry)},
                )
                if retry and not stopping:  # dropped ones are found again by start()'s scan
                    time.sleep(_RETRY_PAUSE_SECONDS)
                    for arrival in retry:
                        self._arrivals.put(arrival)
            finally:
                for _ in batch:
                    self._arrivals.task_done()

    def _register(self, arrivals: list[_Arrival]) -> None:
        """Persist the new deadline of every study in ``arrivals``, then arm its timer."""
        latest: dict[str, _Arrival] = {}
        for arrival in arrivals:
            if arrival.expected_view:
                with self._lock:
                    self._expected_seen.add(arrival.study_instance_uid)
            previous = latest.get(arrival.study_instance_uid)
            if previous is None or arrival.received_at >= previous.received_at:
                latest[arrival.study_instance_uid] = arrival
        timers: list[tuple[str, dt.datetime, CompletionReason]] = []
        with self._write_lock, self._session_factory() as session:
            for uid, arrival in latest.items():
                armed = self._arm(session, uid, arrival.received_at)
                if armed is not None:
                    timers.append((uid, *armed))
            session.commit()
        for uid, due, reason in timers:
            self._schedule(uid, due, reason)

    def _arm(
        self, session: Session, uid: str, received_at: dt.datetime
    ) -> tuple[dt.datetime, CompletionReason] | None:
        """Set the study's deadline (re-opening it if complete); None when nothing to arm."""
        with self._lock:
            expected = uid in self._expected_seen
        due, reason = due_time(received_at, expected, self._policy)
        if self._push_deadline(session, uid, due):  # the common case: a study still receiving
            return due, reason
        for _ in range(3):  # a concurrent completion may change the state under us
            study = session.scalar(select(Study).where(Study.study_instance_uid == uid))
            if study is None:
                log.warning(
                    "instance stored for an unknown study", extra={"study_instance_uid": uid}
                )
                return None
            action = arrival_action(study.state, study.completion_count, self._policy)
            if action == ArrivalAction.IGNORE:
                detail = {
                    "completion_count": study.completion_count,
                    "max_reopen": self._policy.max_reopen,
                }
                session.add(StudyEvent(study_pk=study.id, kind="reopen_refused", detail=detail))
                log.warning(
                    "late instance ignored: re-open limit reached",
                    extra={"study_instance_uid": uid, "completion_count": study.completion_count},
                )
                return None
            if action == ArrivalAction.REOPEN:
                reopened = session.execute(
                    update(Study)
                    .where(
                        Study.id == study.id,
                        Study.state == StudyState.COMPLETE,
                        Study.completion_count == study.completion_count,
                    )
                    .values(state=StudyState.REOPENED, complete_due_at=due)
                    .execution_options(synchronize_session=False)
                )
                if reopened.rowcount == 1:
                    detail = {"completion_count": study.completion_count, "due": due.isoformat()}
                    session.add(StudyEvent(study_pk=study.id, kind="reopened", detail=detail))
                    log.info(
                        "study re-opened by a late instance",
                        extra={
                            "study_instance_uid": uid,
                            "completion_count": study.completion_count,
                        },
                    )
                    return due, reason
            elif self._push_deadline(session, uid, due):
                return due, reason
            session.expire_all()
        log.warning("could not arm completion after retries", extra={"study_instance_uid": uid})
        return None

    @staticmethod
    def _push_deadline(session: Session, uid: str, due: dt.datetime) -> bool:
        """Move the deadline of a study that is not complete; False if none matched."""
        pushed = session.execute(_PUSH_DEADLINE, {"uid": uid, "due": due})
        return pushed.rowcount == 1

    def _schedule(self, uid: str, due: dt.datetime, reason: CompletionReason) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        scheduler.add_job(
            self._complete,
            "date",
            run_date=max(due, utcnow()),
            args=[uid, reason],
            id=f"complete:{uid}",
            replace_existing=True,
        )

    # -- completion ---------------------------------------------------------------

    def _complete(self, uid: str, reason: CompletionReason) -> None:
        """Timer callback: complete the study if it is still pending and due."""
        try:
            done = self._complete_in_db(uid, reason)
        except Exception:
            log.exception("completion failed; retrying later", extra={"study_instance_uid": uid})
            self._schedule(uid, utcnow() + dt.timedelta(seconds=self._policy.quiet_seconds), reason)
            return
        if done is None:
            return
        with self._lock:
            self._expected_seen.discard(uid)
        log.info(
            "study completed",
            extra={
                "study_instance_uid": uid,
                "reason": done.reason.value,
                "instance_count": done.instance_count,
                "completion_count": done.completion_count,
                "job_id": done.job_id,
            },
        )
        for hook in list(self._hooks):
            try:
                hook(done)
            except Exception:
                log.exception("completion hook failed", extra={"study_instance_uid": uid})

    def _complete_in_db(self, uid: str, reason: CompletionReason) -> CompletedStudy | None:
        now = utcnow()
        with self._write_lock, self._session_factory() as session:
            completed = session.execute(
                _COMPLETE_IF_DUE, {"uid": uid, "due_by": now + _DUE_TOLERANCE, "now": now}
            ).first()
            if completed is None:
                session.rollback()
                self._rearm_if_pushed(session, uid, reason)
                return None
            study_pk, completion_count = completed
            instance_count = session.execute(_COUNT_INSTANCES, {"study_pk": study_pk}).scalar() or 0
            session.execute(
                _INSERT_STUDY_EVENT,
                {
                    "study_pk": study_pk,
                    "kind": "completed",
                    "detail": {
                        "reason": reason.value,
                        "instance_count": instance_count,
                        "completion_count": completion_count,
                    },
                },
            )
            job_id = enqueue_job(
                session,
                ANALYZE_STUDY,
                job_key(uid, completion_count),
                study_pk=study_pk,
                payload={
                    "study_instance_uid": uid,
                    "completion_count": completion_count,
                    "reason": reason.value,
                },
            )
            session.commit()
            return CompletedStudy(uid, study_pk, completion_count, reason, instance_count, job_id)

    def _rearm_if_pushed(self, session: Session, uid: str, reason: CompletionReason) -> None:
        """Another arrival (maybe in another process) moved the deadline: follow it."""
        study = session.scalar(select(Study).where(Study.study_instance_uid == uid))
        if study is None or study.state == StudyState.COMPLETE or study.complete_due_at is None:
            return
        self._schedule(uid, as_utc(study.complete_due_at), reason)

    # -- recovery -----------------------------------------------------------------

    def _recover(self) -> None:
        """Re-arm pending completions and pick up arrivals that never got a deadline."""
        quiet = dt.timedelta(seconds=self._policy.quiet_seconds)
        timers: list[tuple[str, dt.datetime]] = []
        late: list[_Arrival] = []
        with self._session_factory() as session:
            for study in session.scalars(select(Study).where(Study.complete_due_at.is_not(None))):
                timers.append((study.study_instance_uid, as_utc(study.complete_due_at)))
            orphans = session.scalars(
                select(Study).where(
                    Study.complete_due_at.is_(None), Study.state != StudyState.COMPLETE
                )
            ).all()
            for study in orphans:
                due = as_utc(study.last_received_at) + quiet
                session.execute(
                    update(Study)
                    .where(
                        Study.id == study.id,
                        Study.complete_due_at.is_(None),
                        Study.state != StudyState.COMPLETE,
                    )
                    .values(complete_due_at=due)
                    .execution_options(synchronize_session=False)
                )
                timers.append((study.study_instance_uid, due))
            for study in session.scalars(
                select(Study).where(
                    Study.state == StudyState.COMPLETE,
                    Study.completed_at.is_not(None),
                    Study.last_received_at > Study.completed_at,
                    Study.completion_count <= self._policy.max_reopen,  # may still re-open
                )
            ):
                late.append(
                    _Arrival(study.study_instance_uid, False, as_utc(study.last_received_at))
                )
            session.commit()
        for uid, due in timers:
            self._schedule(uid, due, CompletionReason.RECOVERED)
        for arrival in late:
            self._arrivals.put(arrival)
        if timers or late:
            log.info(
                "re-armed pending study completions",
                extra={"pending": len(timers), "late": len(late)},
            )
