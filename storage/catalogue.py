"""Catalogue writes: patient/study/series/instance rows from a parsed header.

Sessions are passed in; the caller commits. :func:`reindex` brings files that
have no row (a crash between rename and commit) back into the catalogue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from sqlalchemy import (
    Connection,
    Insert,
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.algorithms.calibration import resolve_pixel_spacing
from storage.models import Instance, Patient, Series, Study, utcnow

log = logging.getLogger(__name__)

HASH_CHUNK = 1 << 20


def _text(ds: Dataset, keyword: str, limit: int | None = None) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip()
    if not text:
        return None
    return text[:limit] if limit else text


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _floats(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        values = [
            float(v) for v in (value if not isinstance(value, (str, int, float)) else [value])
        ]
    except (TypeError, ValueError):
        return None
    return values


@dataclass(frozen=True)
class InstanceFacts:
    """What the catalogue keeps of one object, read from its header."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_description: str | None = None
    specific_character_set: str | None = None
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    instance_number: int | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    laterality: str | None = None
    photometric_interpretation: str | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_spacing_source: str | None = None
    pixel_spacing_mm: list[float] | None = field(default=None)

    @classmethod
    def from_header(cls, ds: Dataset, transfer_syntax_uid: str) -> InstanceFacts:
        """Extract the facts from a header (Pixel Data not needed)."""
        magnification = _floats(ds, "EstimatedRadiographicMagnificationFactor")
        spacing, source = resolve_pixel_spacing(
            _floats(ds, "PixelSpacing"),
            _floats(ds, "ImagerPixelSpacing"),
            magnification[0] if magnification else None,
        )
        return cls(
            sop_instance_uid=str(ds.SOPInstanceUID).strip(),
            sop_class_uid=str(ds.SOPClassUID).strip(),
            study_instance_uid=str(ds.StudyInstanceUID).strip(),
            series_instance_uid=str(ds.SeriesInstanceUID).strip(),
            transfer_syntax_uid=transfer_syntax_uid,
            patient_id=_text(ds, "PatientID", 64) or "",
            issuer_of_patient_id=_text(ds, "IssuerOfPatientID", 64) or "",
            patient_name=_text(ds, "PatientName", 324),
            birth_date=_text(ds, "PatientBirthDate", 8),
            sex=_text(ds, "PatientSex", 16),
            study_date=_text(ds, "StudyDate", 8),
            study_time=_text(ds, "StudyTime", 16),
            accession_number=_text(ds, "AccessionNumber", 16),
            study_description=_text(ds, "StudyDescription", 64),
            specific_character_set=_text(ds, "SpecificCharacterSet", 128),
            modality=_text(ds, "Modality", 16),
            series_number=_int(ds, "SeriesNumber"),
            series_description=_text(ds, "SeriesDescription", 64),
            instance_number=_int(ds, "InstanceNumber"),
            body_part_examined=_text(ds, "BodyPartExamined", 16),
            view_position=_text(ds, "ViewPosition", 16),
            laterality=_text(ds, "ImageLaterality", 16) or _text(ds, "Laterality", 16),
            photometric_interpretation=_text(ds, "PhotometricInterpretation", 16),
            rows=_int(ds, "Rows"),
            columns=_int(ds, "Columns"),
            pixel_spacing_source=source,
            pixel_spacing_mm=list(spacing) if spacing else None,
        )


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    return session.scalars(
        select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
    ).first()


def stored_sha256(session: Session, sop_instance_uid: str) -> str | None:
    """The content hash of a catalogued instance, or None when it has no row."""
    return session.execute(_SHA_OF_INSTANCE, {"sop_instance_uid": sop_instance_uid}).scalar()


# The ingest path writes with Core statements built once, on the session's
# connection: per instance the ORM's unit of work and building statements anew
# cost more CPU than SQLite itself (profiled under concurrent C-STOREs).
_PATIENT: Table = Patient.__table__  # type: ignore[assignment]
_STUDY: Table = Study.__table__  # type: ignore[assignment]
_SERIES: Table = Series.__table__  # type: ignore[assignment]
_INSTANCE: Table = Instance.__table__  # type: ignore[assignment]
_SHA_OF_INSTANCE = select(_INSTANCE.c.sha256).where(
    _INSTANCE.c.sop_instance_uid == bindparam("sop_instance_uid")
)


@cache
def _lookup(table: Table, key: tuple[str, ...], columns: tuple[str, ...]) -> Select:
    """``SELECT id, columns FROM table WHERE key = :key`` (one bind per key column)."""
    return select(table.c.id, *(table.c[name] for name in columns)).where(
        *(table.c[name] == bindparam(name) for name in key)
    )


@cache
def _insert(table: Table) -> Insert:
    return insert(table)


@cache
def _update_by_id(table: Table) -> Update:
    """``UPDATE table SET <the columns given> WHERE id = :row_id``."""
    return update(table).where(table.c.id == bindparam("row_id"))


def _upsert(
    connection: Connection,
    table: Table,
    key: dict[str, object],
    fill: dict[str, object],
    always: dict[str, object] | None = None,
    parent: dict[str, object] | None = None,
) -> int:
    """Primary key of the row matching ``key``, inserted (with ``parent``) if missing.

    An existing row takes the non-empty values of ``fill`` that differ from its
    own and every value of ``always``; it is written only when something changed.
    Its ``parent`` link is kept: the first instance decides it, as in the ORM days.
    """
    row = connection.execute(_lookup(table, tuple(key), tuple(fill)), key).first()
    if row is None:
        values = {**key, **(parent or {}), **{k: v for k, v in fill.items() if v is not None}}
        values.update(always or {})
        return int(connection.execute(_insert(table), values).inserted_primary_key[0])
    current = row._mapping
    changes = {k: v for k, v in fill.items() if v is not None and v != current[k]}
    changes.update(always or {})
    if changes:
        connection.execute(_update_by_id(table), {"row_id": row.id, **changes})
    return int(row.id)


def add_instance(
    session: Session,
    facts: InstanceFacts,
    *,
    path: str,
    sha256: str,
    size_bytes: int,
    calling_aet: str | None,
    derived_by_node: bool = False,
    received_at: dt.datetime | None = None,
) -> int:
    """Upsert patient, study and series, insert the instance row; return its id.

    The caller commits. Raises ``IntegrityError`` when the SOP Instance UID is
    already catalogued.
    """
    now = received_at or utcnow()
    session.flush()  # Core statements on the connection do not autoflush pending ORM objects
    connection = session.connection()
    patient_pk = _upsert(
        connection,
        _PATIENT,
        {"patient_id": facts.patient_id, "issuer_of_patient_id": facts.issuer_of_patient_id},
        {"patient_name": facts.patient_name, "birth_date": facts.birth_date, "sex": facts.sex},
    )
    study_pk = _upsert(
        connection,
        _STUDY,
        {"study_instance_uid": facts.study_instance_uid},
        {
            "study_date": facts.study_date,
            "study_time": facts.study_time,
            "accession_number": facts.accession_number,
            "study_description": facts.study_description,
            "specific_character_set": facts.specific_character_set,
            "calling_aet": calling_aet or None,
        },
        always={"last_received_at": now},
        parent={"patient_pk": patient_pk},
    )
    series_pk = _upsert(
        connection,
        _SERIES,
        {"series_instance_uid": facts.series_instance_uid},
        {
            "modality": facts.modality,
            "series_number": facts.series_number,
            "series_description": facts.series_description,
        },
        parent={"study_pk": study_pk},
    )
    row = connection.execute(
        _insert(_INSTANCE),
        {
            "sop_instance_uid": facts.sop_instance_uid,
            "sop_class_uid": facts.sop_class_uid,
            "series_pk": series_pk,
            "transfer_syntax_uid": facts.transfer_syntax_uid,
            "path": path,
            "sha256": sha256,
            "size_bytes": size_bytes,
            "received_at": now,
            "calling_aet": calling_aet,
            "instance_number": facts.instance_number,
            "modality": facts.modality,
            "body_part_examined": facts.body_part_examined,
            "view_position": facts.view_position,
            "laterality": facts.laterality,
            "photometric_interpretation": facts.photometric_interpretation,
            "rows": facts.rows,
            "columns": facts.columns,
            "pixel_spacing_source": facts.pixel_spacing_source,
            "pixel_spacing_mm": facts.pixel_spacing_mm,
            "derived_by_node": derived_by_node,
        },
    )
    return int(row.inserted_primary_key[0])


def record_duplicate(session: Session, sop_instance_uid: str) -> int:
    """Count a re-send with different content; return the new count (caller commits)."""
    instance = find_instance(session, sop_instance_uid)
    if instance is None:
        return 0
    instance.duplicate_count = (instance.duplicate_count or 0) + 1
    return instance.duplicate_count


def stored_bytes(session: Session) -> int:
    """Total size of catalogued objects (for the storage cap)."""
    return int(session.scalar(select(func.coalesce(func.sum(Instance.size_bytes), 0))) or 0)


def dataset_sha256(path: Path, offset: int) -> str:
    """SHA-256 of the bytes after the File Meta Information (the data set as received)."""
    digest = hashlib.sha256()
    with path.open("rb") as fp:
        fp.seek(offset)
        while chunk := fp.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_offset(path: Path) -> int:
    """Byte offset of the data set in a Part 10 file."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    with path.open("rb") as fp:
        read_preamble(fp, False)
        _read_file_meta_info(fp)
        return fp.tell()


def reindex(
    session_factory: sessionmaker,
    root: Path,
    relative_paths: list[str] | Callable[[], list[str]],
) -> tuple[int, int]:
    """Catalogue files that have no row; return ``(indexed, unreadable)``.

    A file without a row was renamed into place but its row never committed
    (the node stopped in between): it was never acknowledged, but it is a
    complete, checked object, so it is kept and catalogued.
    """
    paths = relative_paths() if callable(relative_paths) else relative_paths
    with session_factory() as session:
        known = set(session.scalars(select(Instance.path)))
    indexed = unreadable = 0
    for relative in paths:
        if relative in known:
            continue
        path = root / relative
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
            ts = str(header.file_meta.TransferSyntaxUID)
            facts = InstanceFacts.from_header(header, ts)
            sha = dataset_sha256(path, dataset_offset(path))
        except Exception as exc:  # a file we cannot read must not stop the node
            log.warning(
                "reindex: unreadable file skipped", extra={"path": relative, "error": str(exc)}
            )
            unreadable += 1
            continue
        with session_factory() as session:
            if find_instance(session, facts.sop_instance_uid) is not None:
                log.warning(
                    "reindex: second file for a catalogued instance",
                    extra={"path": relative, "sop_instance_uid": facts.sop_instance_uid},
                )
                continue
            try:
                add_instance(
                    session,
                    facts,
                    path=relative,
                    sha256=sha,
                    size_bytes=path.stat().st_size,
                    calling_aet=None,
                )
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
        indexed += 1
        log.info(
            "reindex: file catalogued",
            extra={"path": relative, "sop_instance_uid": facts.sop_instance_uid},
        )
    return indexed, unreadable
