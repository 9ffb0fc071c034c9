"""Stage durations for the pipeline's log lines."""

from __future__ import annotations


def stage_ms(started: float, marks: dict[str, float]) -> dict[str, float]:
    """``{stage}_ms`` durations from consecutive ``perf_counter`` marks (for the log line)."""
    out, previous = {}, started
    for name, mark in marks.items():
        out[f"{name}_ms"] = round(1000 * (mark - previous), 1)
        previous = mark
    return out
