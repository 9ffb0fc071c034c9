"""Pairing rules from tables: order, late arrivals, candidates, bilateral surgery."""

from __future__ import annotations

import datetime as dt

from node.pairing.rules import Exam, PairingRules, decide_pairs


def exam(key: int, day: int, right: str | None, left: str | None) -> Exam:
    return Exam(key, f"1.2.{key}", dt.datetime(2026, 1, day), {"right": right, "left": left})


def as_table(decisions):
    return {(d.side, d.post_key): d.pre_key for d in decisions}


def test_post_pairs_with_most_recent_earlier_pre() -> None:
    exams = [exam(1, 1, "native", "native"), exam(2, 5, "native", "native"), exam(3, 9, "implant", "native")]
    assert as_table(decide_pairs(exams)) == {("right", 3): 2}


def test_pre_arriving_after_post_gives_the_same_pair() -> None:
    arrival_order = [exam(3, 9, "implant", "native"), exam(2, 5, "native", "native")]
    assert as_table(decide_pairs(arrival_order[:1])) == {("right", 3): None}
    assert as_table(decide_pairs(arrival_order)) == {("right", 3): 2}


def test_no_partner_has_a_reason() -> None:
    (decision,) = decide_pairs([exam(7, 3, "native", "implant")])
    assert decision.side == "left" and decision.pre_key is None
    assert "no earlier exam" in decision.reason


def test_later_pre_op_is_never_a_partner() -> None:
    exams = [exam(3, 9, "implant", "native"), exam(4, 12, "native", "native")]
    assert as_table(decide_pairs(exams)) == {("right", 3): None}


def test_bilateral_surgery_at_different_times() -> None:
    exams = [
        exam(1, 1, "native", "native"),  # before both
        exam(2, 10, "implant", "native"),  # right operated
        exam(3, 20, "implant", "implant"),  # left operated later
    ]
    table = as_table(decide_pairs(exams))
    assert table[("right", 2)] == 1
    assert table[("left", 3)] == 2  # the left hip was still native on day 10
    assert table[("right", 3)] == 1  # right follow-up compares with the original pre-op


def test_resent_study_is_deterministic() -> None:
    exams = [exam(1, 1, "native", "native"), exam(2, 2, "implant", "implant")]
    assert decide_pairs(exams) == decide_pairs(list(reversed(exams)))


def test_interval_rule() -> None:
    exams = [exam(1, 1, "native", "native"), exam(2, 28, "implant", "native")]
    (decision,) = decide_pairs(exams, PairingRules(max_interval_days=10))
    assert decision.pre_key is None and "outside 10" in decision.reason


def test_unknown_side_state_never_pairs() -> None:
    exams = [exam(1, 1, None, None), exam(2, 5, "implant", None)]
    assert as_table(decide_pairs(exams)) == {("right", 2): None}
