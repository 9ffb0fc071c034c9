"""The pure completion rules: deadlines and bounded re-opening."""

from __future__ import annotations

import datetime as dt

import pytest

from node.completion.rules import (
    ArrivalAction,
    CompletionPolicy,
    CompletionReason,
    arrival_action,
    as_utc,
    due_time,
    job_key,
)
from storage.models import StudyState

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
POLICY = CompletionPolicy(
    quiet_seconds=10, early_on_expected_views=True, early_delay_seconds=1, max_reopen=2
)


def test_quiet_deadline_without_expected_view() -> None:
    assert due_time(NOW, False, POLICY) == (NOW + dt.timedelta(seconds=10), CompletionReason.QUIET)


def test_expected_view_uses_grace_period() -> None:
    assert due_time(NOW, True, POLICY) == (
        NOW + dt.timedelta(seconds=1),
        CompletionReason.EXPECTED_VIEW,
    )


def test_expected_view_disabled_falls_back_to_quiet() -> None:
    off = CompletionPolicy(10, False, 1, 2)
    assert due_time(NOW, True, off)[1] == CompletionReason.QUIET


def test_grace_period_never_exceeds_quiet_period() -> None:
    odd = CompletionPolicy(
        quiet_seconds=2, early_on_expected_views=True, early_delay_seconds=30, max_reopen=0
    )
    assert due_time(NOW, True, odd)[0] == NOW + dt.timedelta(seconds=2)


@pytest.mark.parametrize(
    ("state", "count", "expected"),
    [
        (StudyState.RECEIVING, 0, ArrivalAction.SCHEDULE),
        (StudyState.REOPENED, 3, ArrivalAction.SCHEDULE),
        (StudyState.COMPLETE, 1, ArrivalAction.REOPEN),
        (StudyState.COMPLETE, 2, ArrivalAction.REOPEN),
        (StudyState.COMPLETE, 3, ArrivalAction.IGNORE),  # re-opened twice already
    ],
)
def test_arrival_action_table(state: StudyState, count: int, expected: ArrivalAction) -> None:
    assert arrival_action(state, count, POLICY) == expected


def test_max_reopen_zero_never_reopens() -> None:
    assert (
        arrival_action(StudyState.COMPLETE, 1, CompletionPolicy(10, True, 1, 0))
        == ArrivalAction.IGNORE
    )


def test_job_key_is_unique_per_completion() -> None:
    assert job_key("1.2.3", 1) != job_key("1.2.3", 2)
    assert job_key("1.2.3", 1) == job_key("1.2.3", 1)


def test_as_utc_treats_naive_as_utc() -> None:
    assert as_utc(dt.datetime(2026, 1, 1, 12, 0)) == NOW
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert as_utc(dt.datetime(2026, 1, 1, 13, 0, tzinfo=plus_one)) == NOW
