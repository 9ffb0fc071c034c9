"""Catalogue upserts from headers, duplicates, re-index of files without rows."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from storage import catalogue
from storage.db import make_engine, make_session_factory
from storage.migrate import upgrade_to_head
from storage.models import Instance, Patient, Series, Study
from tests.factories import make_dx, write_dx


@pytest.fixture()
def sessions(tmp_path: Path) -> sessionmaker:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    upgrade_to_head(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _store(session, facts: catalogue.InstanceFacts, path: str = "p", **kwargs: object) -> int:  # type: ignore[no-untyped-def]
    """``add_instance`` with throwaway file details; ``kwargs`` override them."""
    details: dict = {"sha256": "0" * 64, "size_bytes": 1, "calling_aet": None, **kwargs}
    return catalogue.add_instance(session, facts, path=path, **details)


def test_too_old_sqlite_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import storage.db

    monkeypatch.setattr(storage.db.sqlite3, "sqlite_version_info", (3, 31, 1))
    with pytest.raises(RuntimeError, match="too old.*RETURNING"):
        make_engine(f"sqlite:///{tmp_path / 'old.sqlite3'}")


def _facts(**kwargs: object) -> catalogue.InstanceFacts:
    return catalogue.InstanceFacts.from_header(
        make_dx(rows=4, columns=4, **kwargs), "1.2.840.10008.1.2.1"
    )


def test_facts_from_header() -> None:
    facts = catalogue.InstanceFacts.from_header(
        make_dx(rows=4, columns=6, pixel_spacing=(0.1, 0.2), laterality="L", view_position="PA"),
        "1.2.840.10008.1.2.1",
    )
    assert (facts.rows, facts.columns, facts.laterality, facts.view_position) == (4, 6, "L", "PA")
    assert facts.pixel_spacing_source == "pixel_spacing" and facts.pixel_spacing_mm == [0.1, 0.2]
    ds = make_dx(rows=4, columns=4, imager_pixel_spacing=(0.2, 0.2))
    ds.EstimatedRadiographicMagnificationFactor = 1.25
    facts = catalogue.InstanceFacts.from_header(ds, "1.2.840.10008.1.2.1")
    assert facts.pixel_spacing_source == "magnification_corrected"
    assert facts.pixel_spacing_mm == pytest.approx([0.16, 0.16])


def test_upsert_shares_patient_study_series(sessions: sessionmaker) -> None:
    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    with sessions() as session:
        for i in range(3):
            facts = _facts(study_uid=study, series_uid=series, patient_id="P9")
            _store(session, facts, f"p{i}", size_bytes=10, calling_aet="A")
        _store(session, _facts(patient_id="P9"), "q", sha256="1" * 64, size_bytes=5, calling_aet="B")
        session.commit()
        assert session.scalar(select(func.count(Patient.id))) == 1
        assert session.scalar(select(func.count(Study.id))) == 2
        assert session.scalar(select(func.count(Series.id))) == 2
        assert catalogue.stored_bytes(session) == 35


def test_later_instance_fills_study_fields_and_never_erases_them(sessions: sessionmaker) -> None:
    """A later instance adds what the first lacked, keeps what it lacks itself, and
    moves the study's last arrival: the completion timer and the viewer rely on it."""
    import datetime as dt

    study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    first = make_dx(rows=4, columns=4, study_uid=study, series_uid=series, patient_id="P7")
    first.AccessionNumber = ""
    second = make_dx(rows=4, columns=4, study_uid=study, series_uid=series, patient_id="P7")
    second.AccessionNumber = "ACC42"
    second.PatientName = ""
    second.SeriesDescription = "AP pelvis"
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with sessions() as session:
        for i, (ds, aet) in enumerate(((first, "A"), (second, None))):
            facts = catalogue.InstanceFacts.from_header(ds, "1.2.840.10008.1.2.1")
            _store(session, facts, f"p{i}", calling_aet=aet, received_at=t0 + dt.timedelta(seconds=i))
        session.commit()
        row = session.scalars(select(Study)).one()
        assert row.accession_number == "ACC42" and row.calling_aet == "A"
        assert row.last_received_at.replace(tzinfo=dt.UTC) == t0 + dt.timedelta(seconds=1)
        assert session.scalars(select(Patient)).one().patient_name == "Test^Patient"
        assert session.scalars(select(Series)).one().series_description == "AP pelvis"
        assert session.scalar(select(func.count(Instance.id))) == 2


def test_second_row_for_a_sop_instance_is_refused(sessions: sessionmaker) -> None:
    facts = _facts()
    with sessions() as session:
        _store(session, facts, "a")
        session.commit()
        with pytest.raises(IntegrityError):
            _store(session, facts, "b", sha256="1" * 64)
        session.rollback()
        assert catalogue.record_duplicate(session, facts.sop_instance_uid) == 1
        session.commit()


def test_reindex_catalogues_files_without_rows(sessions: sessionmaker, tmp_path: Path) -> None:
    root = tmp_path / "store"
    good = write_dx(root / "dicom" / "a" / "b" / "c.dcm", rows=8, columns=8)
    (root / "dicom" / "bad.dcm").write_bytes(b"garbage")
    paths = ["dicom/a/b/c.dcm", "dicom/bad.dcm"]
    assert catalogue.reindex(sessions, root, paths) == (1, 1)
    assert catalogue.reindex(sessions, root, paths) == (0, 1)  # idempotent
    with sessions() as session:
        row = session.scalars(select(Instance)).one()
    offset = catalogue.dataset_offset(good)
    assert row.sha256 == catalogue.dataset_sha256(good, offset) and row.path == "dicom/a/b/c.dcm"


def test_instance_joins_a_patient_added_earlier_in_the_same_session(sessions: sessionmaker) -> None:
    """The Core upsert sees ORM objects still pending in the caller's session."""
    with sessions() as session:
        session.add(Patient(patient_id="P5", issuer_of_patient_id="", patient_name="Early^Bird"))
        _store(session, _facts(patient_id="P5"))
        session.commit()
        assert session.scalar(select(func.count(Patient.id))) == 1
