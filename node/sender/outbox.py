"""The outbox table: enqueue, claim, record an attempt, recover, list, retry.

Every state change is a conditional UPDATE on the row's current state, so a row
is claimed by one sender at a time and a result is recorded at most once.
Sessions are passed in where the caller owns the transaction (``enqueue``,
``list_deliveries``, ``retry``); the sender's own steps open their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Delivery, DeliveryState, utcnow


def _insert_ignoring_duplicate(session: Session, values: dict[str, object]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING where the dialect has it, else a savepoint."""
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(Delivery).values(**values)
        session.execute(
            statement.on_conflict_do_nothing(index_elements=["sop_instance_uid", "destination"])
        )
        return
    try:
        with session.begin_nested():
            session.add(Delivery(**values))
    except IntegrityError:
        pass  # inserted by someone else meanwhile: theirs is the row


def enqueue(session: Session, sop_instance_uid: str, path: str, destination_name: str) -> Delivery:
    """Queue one object for one destination; an existing (UID, destination) row is returned as is.

    ``path`` is relative to the storage directory or absolute. The caller commits.
    Safe against another process queueing the same pair at the same moment.
    """

    def find() -> Delivery | None:
        return session.scalar(
            select(Delivery).where(
                Delivery.sop_instance_uid == sop_instance_uid,
                Delivery.destination == destination_name,
            )
        )

    existing = find()
    if existing is not None:
        return existing
    _insert_ignoring_duplicate(
        session,
        {
            "sop_instance_uid": sop_instance_uid,
            "path": str(path),
            "destination": destination_name,
            "state": DeliveryState.PENDING,
            "next_attempt_at": utcnow(),
        },
    )
    found = find()
    assert found is not None  # inserted now, or by a concurrent transaction that committed
    return found


@dataclass(frozen=True)
class Claimed:
    """A row taken for sending (a detached snapshot)."""

    id: int
    sop_instance_uid: str
    path: str
    destination: str
    attempts: int  # including the attempt now starting


def claim_due(
    session_factory: sessionmaker,
    now: dt.datetime,
    *,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    limit: int = 64,
) -> list[Claimed]:
    """Move due pending rows to 'sending' (one conditional UPDATE each) and return them.

    ``only`` restricts to those destination names, ``skip`` leaves those out.
    """
    claimed: list[Claimed] = []
    with session_factory() as session:
        query = (
            select(Delivery)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(Delivery.destination.in_(list(only)))
        if skip:
            query = query.where(Delivery.destination.not_in(list(skip)))
        for row in session.scalars(query).all():
            taken = session.execute(
                update(Delivery)
                .where(Delivery.id == row.id, Delivery.state == DeliveryState.PENDING)
                .values(state=DeliveryState.SENDING, attempts=Delivery.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount == 1:
                claimed.append(
                    Claimed(
                        row.id, row.sop_instance_uid, row.path, row.destination, row.attempts + 1
                    )
                )
        session.commit()
    return claimed


def record_attempt(
    session_factory: sessionmaker,
    delivery_id: int,
    state: DeliveryState,
    *,
    status: int | None,
    error: str | None,
    duration_ms: float,
    next_attempt_at: dt.datetime | None = None,
) -> bool:
    """Store the end of an attempt on a 'sending' row; False if the row was not sending."""
    values: dict[str, object] = {
        "state": state,
        "last_status": status,
        "last_error": error,
        "duration_ms": duration_ms,
    }
    if state == DeliveryState.DONE:
        values["delivered_at"] = utcnow()
    if state == DeliveryState.PENDING:
        values["next_attempt_at"] = next_attempt_at or utcnow()
    with session_factory() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.SENDING)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount == 1


def recover_sending(session_factory: sessionmaker) -> int:
    """Rows left 'sending' by a dead process go back to pending (at-least-once delivery)."""
    with session_factory() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.state == DeliveryState.SENDING)
            .values(
                state=DeliveryState.PENDING,
                next_attempt_at=utcnow(),
                last_error="interrupted; recovered",
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount


def release_claims(session_factory: sessionmaker, ids: Collection[int]) -> int:
    """Put rows this process claimed but could not finish back to pending (after an error)."""
    with session_factory() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id.in_(list(ids)), Delivery.state == DeliveryState.SENDING)
            .values(state=DeliveryState.PENDING, next_attempt_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return result.rowcount


def list_deliveries(
    session: Session, states: Sequence[DeliveryState] = (), destination: str | None = None
) -> list[Delivery]:
    """Rows, optionally only those in ``states`` and for ``destination``, oldest first."""
    query = select(Delivery).order_by(Delivery.id)
    if states:
        query = query.where(Delivery.state.in_(list(states)))
    if destination is not None:
        query = query.where(Delivery.destination == destination)
    return list(session.scalars(query))


class RetryError(ValueError):
    """A row asked for by ID cannot be retried (missing, or done / being sent)."""


def retry(session: Session, ids: Sequence[int] = (), all_dead: bool = False) -> list[int]:
    """Make dead (or waiting) rows due now with a fresh attempt budget. The caller commits.

    Rows named by ID must exist and be dead or pending; ``all_dead`` takes every dead row.
    """
    targets: list[int] = []
    for delivery_id in ids:
        row = session.get(Delivery, delivery_id)
        if row is None:
            raise RetryError(f"no delivery with id {delivery_id}")
        if row.state not in (DeliveryState.DEAD, DeliveryState.PENDING):
            raise RetryError(
                f"delivery {delivery_id} is {row.state.value}; "
                "only dead or pending rows can be retried"
            )
        targets.append(delivery_id)
    if all_dead:
        targets += [
            i
            for i in session.scalars(
                select(Delivery.id).where(Delivery.state == DeliveryState.DEAD)
            )
            if i not in targets
        ]
    moved: list[int] = []
    for delivery_id in targets:
        result = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.state.in_([DeliveryState.DEAD, DeliveryState.PENDING]),
            )
            .values(state=DeliveryState.PENDING, attempts=0, next_attempt_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            moved.append(delivery_id)
    return moved
