"""Pairing over a real SQLite catalogue: late pre-op, idempotent re-runs, history kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from node.pairing.store import update_pairings
from storage.db import Base, make_engine, make_session_factory
from storage.models import ImageClassification, Instance, Pairing, Patient, Series, Study


@pytest.fixture()
def session(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as s:
        yield s
    engine.dispose()


def add_exam(session, patient: Patient, n: int, date: str, right: str, left: str) -> Instance:
    study = Study(study_instance_uid=f"1.2.826.0.1.{n}", patient=patient, study_date=date, study_time="101500")
    series = Series(series_instance_uid=f"1.2.826.0.2.{n}", study=study, modality="DX")
    instance = Instance(
        sop_instance_uid=f"1.2.826.0.3.{n}", sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", series=series,
        transfer_syntax_uid="1.2.840.10008.1.2.1", path=f"x/{n}.dcm", sha256="0" * 64, size_bytes=1,
    )
    session.add_all([study, series, instance])
    session.flush()
    session.add(ImageClassification(instance_pk=instance.id, analysable=True, right_state=right, left_state=left))
    session.flush()
    return instance


def current(session) -> dict[tuple[str, int], int | None]:
    rows = session.scalars(select(Pairing).where(Pairing.superseded.is_(False))).all()
    return {(r.side, r.post_instance_pk): r.pre_instance_pk for r in rows}


def test_pre_op_after_post_op_then_rerun_is_idempotent(session) -> None:
    patient = Patient(patient_id="HIP-1", issuer_of_patient_id="")
    session.add(patient)
    post = add_exam(session, patient, 2, "20260310", "implant", "native")
    changed = update_pairings(session, patient.id)
    assert [(r.side, r.pre_instance_pk) for r in changed] == [("right", None)]
    pre = add_exam(session, patient, 1, "20260101", "native", "native")
    changed = update_pairings(session, patient.id)
    assert [(r.side, r.pre_instance_pk) for r in changed] == [("right", pre.id)]
    assert current(session) == {("right", post.id): pre.id}
    assert update_pairings(session, patient.id) == []  # nothing new on a re-run
    history = session.scalars(select(Pairing).order_by(Pairing.id)).all()
    assert [(h.pre_instance_pk, h.superseded) for h in history] == [(None, True), (pre.id, False)]
    assert "most recent earlier" in history[-1].reason


def test_patients_are_kept_apart(session) -> None:
    a = Patient(patient_id="A", issuer_of_patient_id="")
    b = Patient(patient_id="A", issuer_of_patient_id="OTHER-HOSPITAL")
    session.add_all([a, b])
    add_exam(session, a, 1, "20260101", "native", "native")
    post_b = add_exam(session, b, 2, "20260301", "implant", "native")
    update_pairings(session, a.id)
    update_pairings(session, b.id)
    assert current(session) == {("right", post_b.id): None}
