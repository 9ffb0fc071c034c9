"""Which pre-operative exam belongs to which post-operative exam, per side.

A pure function over exam summaries, so the rules can be tested from tables and
re-run whenever any exam of the patient arrives (a pre-op that arrives after its
post-op simply changes the answer of the next run). The rules are data
(:data:`DEFAULT_RULES`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from models.algorithms.vocabulary import SIDES

NATIVE = "native"
IMPLANT = "implant"


@dataclass(frozen=True)
class PairingRules:
    """Tunable pairing policy."""

    pre_state: str = NATIVE  # side state that makes an exam a pre-op candidate
    post_state: str = IMPLANT  # side state that makes an exam post-operative
    max_interval_days: float | None = None  # None: any earlier pre-op qualifies


DEFAULT_RULES = PairingRules()


@dataclass(frozen=True)
class Exam:
    """One analysable AP image standing for its study.

    ``key`` identifies the image (the catalogue's instance primary key);
    ``acquired`` orders exams in time (study date/time, falling back to receipt);
    ``sides`` maps ``right``/``left`` to ``native``, ``implant`` or ``None`` (unknown).
    """

    key: int
    study_uid: str
    acquired: dt.datetime
    sides: dict[str, str | None]


@dataclass(frozen=True)
class PairDecision:
    """The decision for one post-operative side, with the reason a person can read."""

    side: str
    post_key: int
    pre_key: int | None
    reason: str


def decide_pairs(exams: Sequence[Exam], rules: PairingRules = DEFAULT_RULES) -> list[PairDecision]:
    """Pair each post-operative side with the most recent earlier pre-operative exam.

    Exams of one patient only (PatientID + issuer are matched by the caller).
    Deterministic: ties in time are broken by study UID, then key, so a re-run
    over the same exams gives the same decisions.
    """
    ordered = sorted(exams, key=lambda e: (e.acquired, e.study_uid, e.key))
    decisions: list[PairDecision] = []
    for side in SIDES:
        for index, post in enumerate(ordered):
            if post.sides.get(side) != rules.post_state:
                continue
            candidates = [
                pre
                for pre in ordered[:index]
                if pre.sides.get(side) == rules.pre_state
                and pre.study_uid != post.study_uid
                and pre.acquired < post.acquired
                and _within_interval(pre, post, rules)
            ]
            if not candidates:
                decisions.append(PairDecision(side, post.key, None, _no_partner_reason(ordered[:index], side, rules)))
                continue
            pre = candidates[-1]
            reason = (
                f"most recent earlier exam with a {rules.pre_state} {side} hip "
                f"(study {pre.study_uid}, {pre.acquired:%Y-%m-%d}); {len(candidates)} candidate(s)"
            )
            decisions.append(PairDecision(side, post.key, pre.key, reason))
    return decisions


def _within_interval(pre: Exam, post: Exam, rules: PairingRules) -> bool:
    if rules.max_interval_days is None:
        return True
    return (post.acquired - pre.acquired) <= dt.timedelta(days=rules.max_interval_days)


def _no_partner_reason(earlier: Sequence[Exam], side: str, rules: PairingRules) -> str:
    if not earlier:
        return "no earlier exam of this patient"
    if not any(e.sides.get(side) == rules.pre_state for e in earlier):
        return f"no earlier exam shows a {rules.pre_state} {side} hip"
    return f"earlier {rules.pre_state} {side} exams fall outside {rules.max_interval_days} days"
