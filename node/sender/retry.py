"""Retry policy of the outbox: bounded exponential backoff with jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

from node.sender.status import Outcome


def backoff_seconds(
    attempt: int,
    initial_seconds: float,
    max_seconds: float,
    jitter_fraction: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before the next try after ``attempt`` (1-based) failed.

    ``initial * 2**(attempt-1)``, capped at ``max_seconds``, then spread by
    ``±jitter_fraction`` so many rows failing together do not retry in lockstep;
    the result never exceeds ``max_seconds`` and is never negative.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    exponent = min(attempt - 1, 62)  # 2**62 * anything positive is past any cap
    base = min(max_seconds, initial_seconds * 2.0**exponent)
    jitter = base * jitter_fraction * (2.0 * rand() - 1.0)
    return min(max_seconds, max(0.0, base + jitter))


def next_outcome(outcome: Outcome, attempts: int, max_attempts: int) -> Outcome:
    """A retry with no attempts left becomes dead."""
    if outcome == Outcome.RETRY and attempts >= max_attempts:
        return Outcome.DEAD
    return outcome
