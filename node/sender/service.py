"""The result sender: threads that drain the durable outbox by C-STORE.

One lane (thread) per enabled destination, so a destination that hangs until
its timeouts never delays the others. Each pass of a lane claims that
destination's due pending rows, sends them over one association per batch, and
records every attempt as soon as it ends: done, pending again after a jittered
exponential backoff, or dead (the dead-letter list, shown by
``hipnode outbox list --state dead`` and re-queued by ``hipnode outbox retry``).
Rows naming no configured destination go dead at once; rows of a disabled
destination wait. A row is claimed before it is sent, so after a crash rows
stuck in 'sending' go back to pending on start: delivery is at least once, and
a PACS that keeps the first copy of a SOP Instance UID ends up with exactly one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from node.config import Destination, Settings
from node.sender.outbox import (
    Claimed,
    claim_due,
    record_attempt,
    recover_sending,
    release_claims,
)
from node.sender.retry import backoff_seconds, next_outcome
from node.sender.scu import MAX_BATCH, OutgoingFile, SendResult, send_batch
from node.sender.status import Failure, Outcome
from storage.models import DeliveryState, utcnow

log = logging.getLogger(__name__)

_STATE_OF = {
    Outcome.DONE: DeliveryState.DONE,
    Outcome.RETRY: DeliveryState.PENDING,
    Outcome.DEAD: DeliveryState.DEAD,
}


class OutboxSender:
    """Delivers queued objects to the configured destinations; ``start()``/``stop()``."""

    def __init__(self, settings: Settings, session_factory: sessionmaker) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._destinations: dict[str, Destination] = {d.name: d for d in settings.destinations}
        self._stop = threading.Event()
        self._wakes: list[threading.Event] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Recover rows a dead process left 'sending', then start one lane per destination."""
        if self._threads:
            return
        recovered = recover_sending(self._session_factory)
        if recovered:
            log.warning(
                "deliveries interrupted mid-send put back to pending", extra={"count": recovered}
            )
        self._stop.clear()
        lanes: list[tuple[str, Callable[[], int]]] = [("outbox-unknown", self.run_unknown)]
        for destination in self._settings.destinations:
            if destination.enabled:
                lanes.append(
                    (f"outbox-{destination.name}", partial(self.run_destination, destination))
                )
        for name, step in lanes:
            wake = threading.Event()
            thread = threading.Thread(target=self._lane, args=(step, wake), name=name, daemon=True)
            self._wakes.append(wake)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the associations in progress and stop; unsent rows stay queued."""
        self._stop.set()
        for wake in self._wakes:
            wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads, self._wakes = [], []

    def wake(self) -> None:
        """Look for due rows now (call after enqueueing) instead of at the next poll."""
        for wake in self._wakes:
            wake.set()

    def _lane(self, step: Callable[[], int], wake: threading.Event) -> None:
        while not self._stop.is_set():
            try:
                sent = step()
            except Exception:  # the database may be locked or gone for a moment; keep going
                log.exception("outbox pass failed")
                sent = 0
            if not sent:
                wake.wait(self._settings.outbox.poll_seconds)
                wake.clear()

    def run_once(self) -> int:
        """One pass over every lane in this thread (tools and tests); returns rows attempted."""
        enabled = [d for d in self._settings.destinations if d.enabled]
        return self.run_unknown() + sum(self.run_destination(d) for d in enabled)

    def run_unknown(self) -> int:
        """Dead-letter due rows that name no configured destination."""
        rows = claim_due(self._session_factory, utcnow(), skip=list(self._destinations))
        for row in rows:
            error = f"destination {row.destination!r} is not configured (settings.destinations)"
            result = SendResult(row.id, failure=Failure.UNKNOWN_DESTINATION, error=error)
            self._record(row, result, row.destination)
        return len(rows)

    def run_destination(self, destination: Destination) -> int:
        """Send the due rows of one destination, one association per batch."""
        rows = claim_due(self._session_factory, utcnow(), only=[destination.name])
        try:
            for start in range(0, len(rows), MAX_BATCH):
                chunk = rows[start : start + MAX_BATCH]
                items = [
                    OutgoingFile(r.id, r.sop_instance_uid, self._resolve(r.path)) for r in chunk
                ]
                by_id = {r.id: r for r in chunk}
                send_batch(
                    self._settings,
                    destination,
                    items,
                    on_result=partial(self._record_from, by_id, destination.name),
                )
        except Exception:
            # e.g. the catalogue was locked while recording: unrecorded rows must not stay
            # 'sending' until the next restart (at-least-once: they are sent again)
            try:
                release_claims(self._session_factory, [r.id for r in rows])
            except Exception:
                log.exception("could not release claimed deliveries; restart recovers them")
            raise
        return len(rows)

    def _resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self._settings.storage_dir / p

    def _record_from(self, rows: dict[int, Claimed], destination: str, result: SendResult) -> None:
        self._record(rows[result.delivery_id], result, destination)

    def _record(self, row: Claimed, result: SendResult, destination: str) -> None:
        outbox = self._settings.outbox
        outcome = next_outcome(result.outcome, row.attempts, outbox.max_attempts)
        state = _STATE_OF[outcome]
        next_at: dt.datetime | None = None
        delay = 0.0
        error = None if outcome == Outcome.DONE else result.describe
        if outcome == Outcome.RETRY:
            delay = backoff_seconds(
                row.attempts,
                outbox.initial_backoff_seconds,
                outbox.max_backoff_seconds,
                outbox.jitter_fraction,
            )
            next_at = utcnow() + dt.timedelta(seconds=delay)
        elif outcome == Outcome.DEAD and result.outcome == Outcome.RETRY:
            error = f"attempts exhausted ({row.attempts}); last: {result.describe}"
        record_attempt(
            self._session_factory,
            row.id,
            state,
            status=result.status,
            error=error,
            duration_ms=result.duration_ms,
            next_attempt_at=next_at,
        )
        fields = {
            "delivery_id": row.id,
            "sop_instance_uid": row.sop_instance_uid,
            "destination": destination,
            "status": f"0x{result.status:04X}" if result.status is not None else result.failure,
            "attempt": row.attempts,
            "ms": round(result.duration_ms, 1),
            "outcome": outcome.value,
        }
        if outcome == Outcome.RETRY:
            fields["retry_in_s"] = round(delay, 2)
        if outcome == Outcome.DEAD:
            log.warning("delivery dead-lettered", extra={**fields, "error": error})
        else:
            log.info("delivery attempt", extra=fields)
