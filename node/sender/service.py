"""The result sender: a thread that drains the durable outbox by C-STORE.

Each pass claims the due pending rows, sends them one association per
destination and batch, and records every attempt: done, pending again after a
jittered exponential backoff, or dead (the dead-letter list, shown by
``hipnode outbox list --state dead`` and re-queued by ``hipnode outbox retry``).
A row is claimed before it is sent, so after a crash rows stuck in 'sending' go
back to pending on start: delivery is at least once, and a PACS that keeps the
first copy of a SOP Instance UID ends up with exactly one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from functools import partial
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from node.config import Destination, Settings
from node.sender.outbox import Claimed, claim_due, record_attempt, recover_sending
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
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Recover rows a dead process left 'sending', then start the sending thread."""
        if self._thread is not None:
            return
        recovered = recover_sending(self._session_factory)
        if recovered:
            log.warning(
                "deliveries interrupted mid-send put back to pending", extra={"count": recovered}
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the association in progress and stop; unsent rows stay queued."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        """Look for due rows now (call after enqueueing) instead of at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # the database may be locked or gone for a moment; keep going
                log.exception("outbox pass failed")
                sent = 0
            if not sent:
                self._wake.wait(self._settings.outbox.poll_seconds)
                self._wake.clear()

    def run_once(self) -> int:
        """One pass: claim due rows, send them, record results; returns rows attempted."""
        disabled = [d.name for d in self._settings.destinations if not d.enabled]
        claimed = claim_due(self._session_factory, utcnow(), skip_destinations=disabled)
        by_destination: dict[str, list[Claimed]] = {}
        for row in claimed:
            by_destination.setdefault(row.destination, []).append(row)
        for name, rows in by_destination.items():
            destination = self._destinations.get(name)
            if destination is None:
                error = f"destination {name!r} is not configured (settings.destinations)"
                for row in rows:
                    self._record(
                        row,
                        SendResult(row.id, failure=Failure.UNKNOWN_DESTINATION, error=error),
                        name,
                    )
                continue
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
                    on_result=partial(self._record_from, by_id, name),
                )
        return len(claimed)

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
