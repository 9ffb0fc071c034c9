"""Status classification table and retry backoff of the result sender."""

from __future__ import annotations

import random

import pytest

from node.sender.retry import backoff_seconds, next_outcome
from node.sender.status import STATUS_TABLE, Failure, Outcome, classify_failure, classify_status


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (0x0000, Outcome.DONE),
        (0xB000, Outcome.DONE),
        (0xB006, Outcome.DONE),
        (0xB007, Outcome.DONE),
        (0xA700, Outcome.RETRY),
        (0xA701, Outcome.RETRY),
        (0xA7FF, Outcome.RETRY),
        (0x0213, Outcome.RETRY),
        (0xA900, Outcome.DEAD),
        (0xA9FF, Outcome.DEAD),
        (0xC000, Outcome.DEAD),
        (0xC211, Outcome.DEAD),
        (0xCFFF, Outcome.DEAD),
        (0x0122, Outcome.DEAD),
        (0x0124, Outcome.DEAD),
        (0x0110, Outcome.DEAD),  # not in the table: unknown is never retried blindly
        (0xA800, Outcome.DEAD),
    ],
)
def test_status_table(status: int, outcome: Outcome) -> None:
    assert classify_status(status)[0] == outcome


def test_unknown_status_names_itself() -> None:
    assert classify_status(0x0110) == (Outcome.DEAD, "Unknown status 0x0110")


def test_specific_rows_come_before_ranges() -> None:
    # 0xB000/B006/B007 have their own meanings ahead of the generic warning range
    assert classify_status(0xB007)[1] == "Warning: data set does not match SOP class"
    assert classify_status(0xB123)[1] == "Warning (other)"


def test_table_ranges_are_well_formed() -> None:
    for rule in STATUS_TABLE:
        assert 0 <= rule.low <= rule.high <= 0xFFFF and rule.meaning


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (Failure.CONNECTION_FAILED, Outcome.RETRY),
        (Failure.ASSOCIATION_REJECTED, Outcome.RETRY),
        (Failure.ASSOCIATION_ABORTED, Outcome.RETRY),
        (Failure.NO_RESPONSE, Outcome.RETRY),
        (Failure.NO_CONTEXT, Outcome.DEAD),
        (Failure.FILE_UNREADABLE, Outcome.DEAD),
        (Failure.UNKNOWN_DESTINATION, Outcome.DEAD),
    ],
)
def test_failure_table(failure: Failure, outcome: Outcome) -> None:
    assert classify_failure(failure) == outcome


def test_every_failure_is_classified() -> None:
    for failure in Failure:
        classify_failure(failure)


def test_backoff_doubles_without_jitter() -> None:
    delays = [backoff_seconds(a, 2.0, 300.0, 0.0) for a in range(1, 6)]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0]


def test_backoff_is_capped() -> None:
    assert backoff_seconds(20, 2.0, 300.0, 0.0) == 300.0
    assert backoff_seconds(10_000, 2.0, 300.0, 0.5) <= 300.0  # no overflow on huge attempt counts


def test_backoff_jitter_stays_in_band_and_varies() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(3, 2.0, 300.0, 0.2, rng.random) for _ in range(500)]
    assert all(6.4 <= d <= 9.6 for d in delays)  # 8 s ± 20 %
    assert max(delays) - min(delays) > 2.0  # really spread, not a constant


def test_backoff_extremes_of_the_random_source() -> None:
    assert backoff_seconds(1, 10.0, 300.0, 0.5, lambda: 0.0) == 5.0
    assert backoff_seconds(1, 10.0, 300.0, 0.5, lambda: 1.0) == 15.0
    assert backoff_seconds(9, 10.0, 300.0, 1.0, lambda: 1.0) == 300.0  # jitter never passes the cap
    assert backoff_seconds(1, 10.0, 300.0, 1.0, lambda: 0.0) == 0.0  # and never goes negative


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_seconds(0, 2.0, 300.0, 0.2)


def test_retry_becomes_dead_when_attempts_are_spent() -> None:
    assert next_outcome(Outcome.RETRY, 3, 4) == Outcome.RETRY
    assert next_outcome(Outcome.RETRY, 4, 4) == Outcome.DEAD
    assert next_outcome(Outcome.DONE, 4, 4) == Outcome.DONE
    assert next_outcome(Outcome.DEAD, 1, 4) == Outcome.DEAD
