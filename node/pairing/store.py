"""Run the pairing rules over one patient's catalogued exams and record the decisions.

Re-run for the whole patient whenever one of their studies has been classified:
a pre-op arriving after its post-op, a re-sent study or a second operation then
simply yields the current decisions. A decision that changed supersedes the old
row (kept for the record); unchanged decisions are left alone, so re-runs are
idempotent.
"""

from __future__ import annotations

import datetime as dt
import logging
from sqlalchemy import select
from sqlalchemy.orm import Session

from node.pairing.rules import DEFAULT_RULES, Exam, PairingRules, decide_pairs
from storage.models import ImageClassification, Instance, Pairing, Series, Study

log = logging.getLogger(__name__)


def _acquired(study: Study, instance: Instance) -> dt.datetime:
    """Study date/time when present (exam time), else when the node received the image."""
    if study.study_date and len(study.study_date) == 8 and study.study_date.isdigit():
        time_text = "".join(ch for ch in (study.study_time or "") if ch.isdigit())[:6].ljust(6, "0")
        try:
            return dt.datetime.strptime(study.study_date + time_text, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError:
            pass
    received = instance.received_at
    return received if received.tzinfo else received.replace(tzinfo=dt.UTC)


def patient_exams(session: Session, patient_pk: int) -> list[Exam]:
    """One exam per study: its first analysable image (lowest instance number, then pk)."""
    rows = session.execute(
        select(ImageClassification, Instance, Study)
        .join(Instance, ImageClassification.instance_pk == Instance.id)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Study.patient_pk == patient_pk, ImageClassification.analysable.is_(True))
        .order_by(Study.id, Instance.instance_number, Instance.id)
    ).all()
    exams: dict[str, Exam] = {}
    for classification, instance, study in rows:
        if study.study_instance_uid in exams:
            continue
        exams[study.study_instance_uid] = Exam(
            key=instance.id,
            study_uid=study.study_instance_uid,
            acquired=_acquired(study, instance),
            sides={"right": classification.right_state, "left": classification.left_state},
        )
    return list(exams.values())


def update_pairings(
    session: Session, patient_pk: int, rules: PairingRules = DEFAULT_RULES
) -> list[Pairing]:
    """Record the current decisions for a patient; return the rows that are new or changed.

    The caller commits. Returned rows with a ``pre_instance_pk`` need an
    ``analyze_pair`` job.
    """
    decisions = decide_pairs(patient_exams(session, patient_pk), rules)
    changed: list[Pairing] = []
    for decision in decisions:
        current = session.scalar(
            select(Pairing).where(
                Pairing.post_instance_pk == decision.post_key,
                Pairing.side == decision.side,
                Pairing.superseded.is_(False),
            )
        )
        if current is not None and current.pre_instance_pk == decision.pre_key:
            continue
        if current is not None:
            current.superseded = True
        row = Pairing(
            patient_pk=patient_pk,
            side=decision.side,
            pre_instance_pk=decision.pre_key,
            post_instance_pk=decision.post_key,
            reason=decision.reason,
        )
        session.add(row)
        changed.append(row)
        log.info(
            "pairing decided",
            extra={
                "side": decision.side,
                "post_instance": decision.post_key,
                "pre_instance": decision.pre_key,
                "replaces_pre": None if current is None else current.pre_instance_pk,
                "reason": decision.reason,
            },
        )
    session.flush()
    return changed


def patient_pk_of_study(session: Session, study_pk: int) -> int:
    """The catalogue key of a study's patient."""
    study = session.get(Study, study_pk)
    if study is None:
        raise LookupError(f"no study with key {study_pk}")
    return study.patient_pk

