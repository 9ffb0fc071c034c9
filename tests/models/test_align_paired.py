"""Paired method comparison of ``hipnode eval align``: per-pair differences, bootstrap interval."""

from __future__ import annotations

import math

from models.align.evaluate import Outcome, Report, format_paired, paired_comparisons


def _report(plain: list[float | None], weighted: list[float | None], best: float = 0.01) -> Report:
    report = Report()
    for index, (a, b) in enumerate(zip(plain, weighted, strict=True)):
        pair = f"pair_{index:03d}"
        report.best[pair] = (best, 4.0)
        for method, value in (("plain", a), ("weighted", b)):
            failure = None if value is not None else "too few inliers"
            report.outcomes.append(Outcome(pair, "disk_lightglue", "oracle", method, None, value, None, failure, 1.0))
    return report


def _row(report: Report) -> dict[str, object]:
    rows = paired_comparisons(report, comparisons=(("plain", "weighted"),))
    assert len(rows) == 1
    return rows[0]


def test_consistent_gain_is_measurable() -> None:
    plain = [0.013, 0.012, 0.015, 0.011, 0.014, 0.012]
    weighted = [v - 0.001 for v in plain]  # better by 0.1 x best on every pair
    row = _row(_report(plain, weighted))
    assert row["pairs"] == 6
    assert math.isclose(row["mean_diff"], -0.1, abs_tol=1e-9)
    assert row["b_better"] == 6 and row["b_worse"] == 0
    assert row["ci_high"] < 0 and row["measurably_better"]


def test_gain_on_one_pair_only_is_not_measurable() -> None:
    plain = [0.013, 0.012, 0.015, 0.011, 0.014, 0.012]
    weighted = [0.0130, 0.0121, 0.0149, 0.0111, 0.0139, 0.0090]  # one big gain, small losses elsewhere
    row = _row(_report(plain, weighted))
    assert row["mean_diff"] < 0
    assert row["ci_low"] < 0 < row["ci_high"]
    assert not row["measurably_better"]
    assert "no measurable gain" in format_paired([row])


def test_pairs_aligned_by_one_method_only_are_counted_apart() -> None:
    row = _row(_report([0.012, None, 0.013, 0.011], [0.011, 0.012, None, 0.010]))
    assert row["pairs"] == 2
    assert row["only_a_aligned"] == 1 and row["only_b_aligned"] == 1
