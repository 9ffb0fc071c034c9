"""Worker processes that run analysis jobs apart from the SCP.

Workers are separate processes (``spawn``), so a slow model never holds the
GIL the C-STORE handlers need, and a crashing model never takes the SCP down.
Each worker builds its own engine and loads its models once (the pipeline's
model objects are cached per process), then polls the durable queue.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
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


def work_loop(ctx: JobContext, handlers: dict[str, JobHandler], stop: Callable[[], bool]) -> None:
    """Claim and run jobs until ``stop()`` is true."""
    while not stop():
        job = claim_next(ctx.session_factory, ctx.worker, tuple(handlers))
        if job is None:
            time.sleep(IDLE_POLL_SECONDS)
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


def _worker_main(settings_json: str, index: int, stop_event: Any, log_level: str, parent_pid: int) -> None:
    parent_gone = _die_with_parent(parent_pid)
    from node.config import Settings
    from node.logging_setup import configure_logging
    from node.pipeline import job_handlers
    from storage.db import make_engine, make_session_factory

    configure_logging(log_level)
    settings = Settings.model_validate_json(settings_json)
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
    try:
        work_loop(ctx, job_handlers(), lambda: stop_event.is_set() or parent_gone())
    finally:
        engine.dispose()


class WorkerPool:
    """Start ``settings.workers`` worker processes; stop them on request."""

    def __init__(self, settings: Any) -> None:
        self._settings = settings
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def start(self) -> None:
        level = logging.getLevelName(logging.getLogger().level)
        for index in range(self._settings.workers):
            process = self._context.Process(
                target=_worker_main,
                args=(self._settings.model_dump_json(), index, self._stop, level, os.getpid()),
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
