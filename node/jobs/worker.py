"""Worker processes that run analysis jobs apart from the SCP.

Workers are separate processes (``spawn``), so a slow model never holds the
GIL the C-STORE handlers need, and a crashing model never takes the SCP down.
Each worker builds its own engine and loads its models once (the pipeline's
model objects are cached per process), then polls the durable queue.

Inside a worker each job kind has its own lane (a thread claiming only that
kind), so a pair job queued by a study job starts at once and its alignment
(onnxruntime, outside the GIL) overlaps the study job's SEG/SR encoding on the
other core; two jobs of the same kind never run at once in one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker

from node.jobs.queue import PermanentJobError, claim_next, mark_done, mark_failed
from storage.models import Job

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.25
_wake = threading.Condition()


_results_bell: Any = None  # this worker's line to the node (a multiprocessing Event), set by _worker_main


def notify_results() -> None:
    """Tell the node that result rows were just committed to the outbox, so its sender sends now.

    Without it the sender finds them at its next poll (``outbox.poll_seconds``, 1 s by default).
    """
    if _results_bell is not None:
        _results_bell.set()


def _relay(bell: Any, then: Callable[[], None], stop: Callable[[], bool]) -> None:
    """Call ``then`` each time another process rings ``bell`` (a multiprocessing Event), until ``stop()``."""
    while not stop():
        if bell.wait(IDLE_POLL_SECONDS):
            bell.clear()  # before ``then``: what is committed before a later ring is seen by a later call
            then()


def notify_queued() -> None:
    """Wake this process's idle lanes now: a job was just committed to the queue from inside it.

    (A notice that comes between a lane's empty claim and its wait is missed; that lane
    then polls again after ``IDLE_POLL_SECONDS``, as without a notice.)
    """
    with _wake:
        _wake.notify_all()


@dataclass
class JobContext:
    """What a job handler may use: settings, catalogue sessions and the storage root."""

    settings: Any  # node.config.Settings
    session_factory: sessionmaker
    storage_dir: Path
    worker: str


JobHandler = Callable[[Job, JobContext], str]


def run_one(job: Job, ctx: JobContext, handlers: dict[str, JobHandler]) -> None:
    """Run a claimed job and record its outcome; never raises."""
    started = time.perf_counter()
    handler = handlers.get(job.kind)
    try:
        if handler is None:
            raise PermanentJobError("dispatch", f"no handler for job kind {job.kind!r}")
        detail = handler(job, ctx)
    except PermanentJobError as exc:
        mark_failed(ctx.session_factory, job.id, exc.stage, exc.reason, permanent=True)
    except Exception as exc:  # a bug or a transient fault: retried while attempts remain
        log.exception("job raised", extra={"job_id": job.id, "kind": job.kind})
        mark_failed(ctx.session_factory, job.id, "unexpected", f"{type(exc).__name__}: {exc}", permanent=False)
    else:
        mark_done(ctx.session_factory, job.id, detail)
        log.info(
            "job done",
            extra={"job_id": job.id, "kind": job.kind, "ms": round((time.perf_counter() - started) * 1000)},
        )


def wait_for_work() -> None:
    """Sleep until :func:`notify_queued` or for ``IDLE_POLL_SECONDS``, whichever comes first."""
    with _wake:
        _wake.wait(IDLE_POLL_SECONDS)


def work_loop(ctx: JobContext, handlers: dict[str, JobHandler], stop: Callable[[], bool]) -> None:
    """Claim and run jobs until ``stop()`` is true."""
    while not stop():
        job = claim_next(ctx.session_factory, ctx.worker, tuple(handlers))
        if job is None:
            wait_for_work()
            continue
        run_one(job, ctx, handlers)


def _die_with_parent(parent_pid: int) -> Callable[[], bool]:
    """Tie the worker's life to the node's: a ``kill -9``'d node must not leave a worker behind.

    A multiprocessing daemon child is only stopped by its parent's clean exit; an orphan
    would keep running its job while the restarted node requeues the same job. On Linux
    the kernel kills the worker with its parent (PR_SET_PDEATHSIG); elsewhere the loop
    notices the re-parenting between jobs. Returns "has the parent gone?". (Linux sends the
    signal when the *thread* that started the worker ends: start the pool from the node's
    main thread, as :class:`node.app.Node` does.)
    """
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return lambda: os.getppid() != parent_pid


def _worker_main(
    settings_json: str, index: int, stop_event: Any, log_level: str, parent_pid: int,
    job_bell: Any = None, results_bell: Any = None,
) -> None:
    global _results_bell
    parent_gone = _die_with_parent(parent_pid)
    _results_bell = results_bell
    from node.config import Settings
    from node.logging_setup import configure_logging
    from node.pipeline import job_handlers
    from storage.db import make_engine, make_session_factory

    configure_logging(log_level)
    settings = Settings.model_validate_json(settings_json)
    if settings.worker_niceness:  # before any model thread exists: onnxruntime's threads inherit it
        os.nice(settings.worker_niceness)
    engine = make_engine(settings.effective_database_url)
    ctx = JobContext(
        settings=settings,
        session_factory=make_session_factory(engine),
        storage_dir=Path(settings.storage_dir).resolve(),
        worker=f"worker-{index}-pid{os.getpid()}",
    )
    log.info("worker started", extra={"worker": ctx.worker})
    try:
        from node.pipeline.compute import warm_up

        log.info("models warmed up", extra={"worker": ctx.worker, **warm_up()})
    except Exception as exc:  # noqa: BLE001  (any model problem; the jobs report it themselves)
        log.warning("model warm-up failed", extra={"worker": ctx.worker, "reason": str(exc)})
    stop = lambda: stop_event.is_set() or parent_gone()
    if job_bell is not None:  # the node queued a job (a study completed): claim it now, not at the next poll
        threading.Thread(target=_relay, args=(job_bell, notify_queued, stop), name="job-bell", daemon=True).start()
    extra: list[Callable[[JobContext, Callable[[], bool]], None]] = []
    if settings.prefetch and settings.workers == 1:  # see node.pipeline.prefetch: one process, no work twice
        from node.pipeline.prefetch import prefetch_loop

        extra.append(prefetch_loop)
    try:
        run_lanes(ctx, job_handlers(), stop, extra)
    finally:
        engine.dispose()


def run_lanes(
    ctx: JobContext, handlers: dict[str, JobHandler], stop: Callable[[], bool],
    extra: list[Callable[[JobContext, Callable[[], bool]], None]] | None = None,
) -> None:
    """One :func:`work_loop` thread per job kind, plus one per ``extra`` loop, until ``stop()``."""
    lanes = [
        threading.Thread(
            target=work_loop, args=(ctx, {kind: handler}, stop), name=f"lane-{kind}", daemon=True
        )
        for kind, handler in handlers.items()
    ]
    lanes += [
        threading.Thread(target=loop, args=(ctx, stop), name=f"lane-{loop.__name__}", daemon=True)
        for loop in extra or ()
    ]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()


class WorkerPool:
    """Start ``settings.workers`` worker processes; stop them on request.

    Two bells cross the process boundary so that neither side waits for a poll:
    :meth:`wake` tells the workers a job was queued, and :meth:`on_results` calls
    back in the node when a worker has committed results to the outbox.
    """

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._job_bells = [self._context.Event() for _ in range(settings.workers)]
        self._results_bell = self._context.Event()
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def wake(self, *_args: Any) -> None:
        """A job was committed to the queue: every worker looks now (usable as a completion hook)."""
        for bell in self._job_bells:
            bell.set()

    def on_results(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (the sender's ``wake``) in this process whenever a worker queued results."""
        threading.Thread(
            target=_relay, args=(self._results_bell, callback, self._stop.is_set), name="results-bell", daemon=True
        ).start()

    def start(self) -> None:
        level = logging.getLevelName(logging.getLogger().level)
        for index in range(self._settings.workers):
            process = self._context.Process(
                target=_worker_main,
                args=(self._settings.model_dump_json(), index, self._stop, level, os.getpid(),
                      self._job_bells[index], self._results_bell),
                name=f"hipnode-worker-{index}",
                daemon=True,
            )
            process.start()
            self._processes.append(process)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():
                process.terminate()
        self._processes.clear()
