"""Pure rules of study completion: when a study is due, and whether a late
instance may re-open it. No I/O, no clock: callers pass ``now``.

A study is complete after a quiet period with no new instance (as in mercure's
``series_complete_trigger``), or sooner, after a short grace period, once its
expected view (an AP pelvis/hip image) has arrived. Re-opening is bounded so a
modality that keeps re-sending cannot make the pipeline run forever.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from storage.models import StudyState


class CompletionReason(enum.StrEnum):
    """Why a study was completed (logged and written into the study event)."""

    QUIET = "quiet"  # no new instance for the quiet period
    EXPECTED_VIEW = "expected_view"  # the expected view arrived; grace period over
    RECOVERED = "recovered"  # pending at the last stop or crash, completed after restart


class ArrivalAction(enum.StrEnum):
    """What a new instance does to its study."""

    SCHEDULE = "schedule"  # study still receiving: (re)start its timer
    REOPEN = "reopen"  # study was complete: re-open it and start a timer
    IGNORE = "ignore"  # study complete and re-opened too often already


@dataclass(frozen=True)
class CompletionPolicy:
    """The settings the rules need, in seconds."""

    quiet_seconds: float
    early_on_expected_views: bool
    early_delay_seconds: float
    max_reopen: int


def due_time(
    now: dt.datetime, expected_view_seen: bool, policy: CompletionPolicy
) -> tuple[dt.datetime, CompletionReason]:
    """When the study completes if nothing else arrives, and the reason it will give.

    Every arrival restarts the timer from ``now``; once the expected view has been
    seen in the current round, the short grace period replaces the quiet period.
    """
    if expected_view_seen and policy.early_on_expected_views:
        delay = min(policy.early_delay_seconds, policy.quiet_seconds)
        return now + dt.timedelta(seconds=delay), CompletionReason.EXPECTED_VIEW
    return now + dt.timedelta(seconds=policy.quiet_seconds), CompletionReason.QUIET


def arrival_action(
    state: StudyState, completion_count: int, policy: CompletionPolicy
) -> ArrivalAction:
    """Decide what an instance arriving for a study in ``state`` does.

    ``completion_count`` is 1 + the times the study was re-opened, so a complete
    study may re-open while ``completion_count <= max_reopen``.
    """
    if state != StudyState.COMPLETE:
        return ArrivalAction.SCHEDULE
    if completion_count - 1 < policy.max_reopen:
        return ArrivalAction.REOPEN
    return ArrivalAction.IGNORE


def job_key(study_instance_uid: str, completion_count: int) -> str:
    """Idempotency key of the ``analyze_study`` job for one completion of a study."""
    return f"analyze_study:{study_instance_uid}:{completion_count}"


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; the catalogue stores UTC only."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
