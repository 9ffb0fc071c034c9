"""What the node knows, as plain dicts for people: ``hipnode status`` and the status page.

Read-only queries over the catalogue. The point is that every verdict the
pipeline stores with a reason (an image that cannot be analysed, a pairing
decision, a failed job, a dead delivery) can be seen without reading logs or
SQL. Patient names are left out on purpose: the status page is a service
view, and the Patient ID is what an operator needs to find a study.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import (
    Delivery,
    DeliveryState,
    ImageClassification,
    Instance,
    Job,
    JobState,
    Pairing,
    Patient,
    Result,
    Series,
    Study,
    StudyState,
)


def _stamp(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC; SQLite hands naive datetimes back, which the catalogue wrote as UTC."""
    if value is None:
        return None
    return (value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value).isoformat(timespec="seconds")


def _counts(session: Session, column: Any, states: list[str]) -> dict[str, int]:
    found = {str(getattr(k, "value", k)): n for k, n in session.execute(select(column, func.count()).group_by(column))}
    return {state: found.get(state, 0) for state in states}


def summary(session: Session) -> dict[str, Any]:
    """Totals: studies by state, received images, jobs and deliveries by state, problems to look at."""
    received = session.scalar(select(func.count()).select_from(Instance).where(Instance.derived_by_node.is_(False)))
    not_analysable = session.scalar(
        select(func.count()).select_from(ImageClassification).where(ImageClassification.analysable.is_(False)))
    return {
        "studies": _counts(session, Study.state, [s.value for s in StudyState]),
        "images_received": int(received or 0),
        "images_not_analysable": int(not_analysable or 0),
        "jobs": _counts(session, Job.state, [s.value for s in JobState]),
        "deliveries": _counts(session, Delivery.state, [s.value for s in DeliveryState]),
        "results": int(session.scalar(select(func.count()).select_from(Result)) or 0),
    }


def _images(session: Session, study_pk: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Instance, ImageClassification)
        .join(Series, Instance.series_pk == Series.id)
        .outerjoin(ImageClassification, ImageClassification.instance_pk == Instance.id)
        .where(Series.study_pk == study_pk, Instance.derived_by_node.is_(False))
        .order_by(Instance.received_at, Instance.id)
    ).all()
    images = []
    for instance, verdict in rows:
        image: dict[str, Any] = {
            "sop_instance_uid": instance.sop_instance_uid,
            "modality": instance.modality,
            "view_position": instance.view_position,
            "received_at": _stamp(instance.received_at),
            "verdict": "pending",
        }
        if verdict is not None:
            image["verdict"] = "analysed" if verdict.analysable else "not analysable"
            image["reason"] = verdict.reason
            image["right"], image["left"] = verdict.right_state, verdict.left_state
        images.append(image)
    return images


def _pairings(session: Session, study_pk: int) -> list[dict[str, Any]]:
    """Current pairing decisions whose post-op image is in this study (superseded ones are history)."""
    post = select(Instance.id).join(Series, Instance.series_pk == Series.id).where(Series.study_pk == study_pk)
    rows = session.scalars(
        select(Pairing).where(Pairing.post_instance_pk.in_(post), Pairing.superseded.is_(False))
        .order_by(Pairing.post_instance_pk, Pairing.side)
    ).all()
    out = []
    for row in rows:
        pre = session.get(Instance, row.pre_instance_pk) if row.pre_instance_pk is not None else None
        pre_study = session.get(Study, session.get(Series, pre.series_pk).study_pk) if pre is not None else None
        out.append({
            "side": row.side,
            "post_sop_instance_uid": session.get(Instance, row.post_instance_pk).sop_instance_uid,
            "pre_sop_instance_uid": pre.sop_instance_uid if pre is not None else None,
            "pre_study_instance_uid": pre_study.study_instance_uid if pre_study is not None else None,
            "pre_study_date": pre_study.study_date if pre_study is not None else None,
            "reason": row.reason,
            "decided_at": _stamp(row.created_at),
        })
    return out


def _jobs(session: Session, study_pk: int) -> list[dict[str, Any]]:
    return [{
        "id": job.id, "kind": job.kind, "state": job.state.value, "attempts": job.attempts,
        "max_attempts": job.max_attempts, "fail_stage": job.fail_stage, "fail_reason": job.fail_reason,
        "updated_at": _stamp(job.updated_at),
    } for job in session.scalars(select(Job).where(Job.study_pk == study_pk).order_by(Job.id))]


def _results(session: Session, study_uid: str) -> dict[str, Any]:
    """Result objects of the study by kind, and their deliveries by state (dead ones with the error)."""
    results = session.scalars(select(Result).where(Result.study_instance_uid == study_uid)).all()
    uids = [r.sop_instance_uid for r in results]
    deliveries = session.scalars(select(Delivery).where(Delivery.sop_instance_uid.in_(uids))).all() if uids else []
    return {
        "by_kind": dict(sorted(Counter(r.kind for r in results).items())),
        "deliveries": dict(sorted(Counter(d.state.value for d in deliveries).items())),
        "dead": [{"id": d.id, "destination": d.destination, "sop_instance_uid": d.sop_instance_uid,
                  "attempts": d.attempts, "last_error": d.last_error}
                 for d in deliveries if d.state == DeliveryState.DEAD],
    }


def results_in_words(results: dict[str, Any]) -> tuple[str, str]:
    """A study's results by kind and its deliveries by state, each as one phrase (the CLI and the page)."""
    made = ", ".join(f"{n} {kind}" for kind, n in results["by_kind"].items())
    sent = ", ".join(f"{n} {state}" for state, n in results["deliveries"].items()) or "none queued"
    return made, sent


def recent_studies(session: Session, limit: int = 50, study_uid: str | None = None) -> list[dict[str, Any]]:
    """The most recently received studies (or one), each with its images' verdicts, pairings, jobs, results."""
    query = select(Study, Patient).join(Patient, Study.patient_pk == Patient.id)
    if study_uid is not None:
        query = query.where(Study.study_instance_uid == study_uid)
    query = query.order_by(Study.last_received_at.desc(), Study.id.desc()).limit(limit)
    studies = []
    for study, patient in session.execute(query).all():
        studies.append({
            "study_instance_uid": study.study_instance_uid,
            "patient_id": patient.patient_id,
            "issuer_of_patient_id": patient.issuer_of_patient_id or None,
            "study_date": study.study_date,
            "description": study.study_description,
            "calling_aet": study.calling_aet,
            "state": study.state.value,
            "last_received_at": _stamp(study.last_received_at),
            "completed_at": _stamp(study.completed_at),
            "images": _images(session, study.id),
            "pairings": _pairings(session, study.id),
            "jobs": _jobs(session, study.id),
            "results": _results(session, study.study_instance_uid),
        })
    return studies


def overview(session: Session, limit: int = 50, study_uid: str | None = None) -> dict[str, Any]:
    """Everything the status command and page show, in one JSON-ready dict."""
    return {
        "generated_at": _stamp(dt.datetime.now(dt.UTC)),
        "summary": summary(session),
        "studies": recent_studies(session, limit, study_uid),
    }
