"""Catalogue tables (SQLAlchemy 2 declarative).

DICOM-derived columns name their tag and VR. UIDs are unique where the standard
makes them unique. Later stages (pairing, jobs, results, deliveries) have their
tables here from the first schema on, so migrations only ever add.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.db import Base

UID = String(64)


def utcnow() -> dt.datetime:
    """Timezone-aware now; every timestamp in the catalogue is UTC."""
    return dt.datetime.now(dt.UTC)


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("patient_id", "issuer_of_patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))  # (0010,0020) LO
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64), default="")  # (0010,0021) LO
    patient_name: Mapped[str | None] = mapped_column(String(324))  # (0010,0010) PN; never logged at INFO
    birth_date: Mapped[str | None] = mapped_column(String(8))  # (0010,0030) DA
    sex: Mapped[str | None] = mapped_column(String(16))  # (0010,0040) CS

    studies: Mapped[list[Study]] = relationship(back_populates="patient")


class StudyState(enum.StrEnum):
    RECEIVING = "receiving"  # instances arriving, quiet timer running
    COMPLETE = "complete"  # completion decided, event written
    REOPENED = "reopened"  # late instance after completion, timer running again


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(UID, unique=True)  # (0020,000D) UI
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    study_date: Mapped[str | None] = mapped_column(String(8))  # (0008,0020) DA
    study_time: Mapped[str | None] = mapped_column(String(16))  # (0008,0030) TM
    accession_number: Mapped[str | None] = mapped_column(String(16))  # (0008,0050) SH
    study_description: Mapped[str | None] = mapped_column(String(64))  # (0008,1030) LO
    specific_character_set: Mapped[str | None] = mapped_column(String(128))  # (0008,0005) CS
    calling_aet: Mapped[str | None] = mapped_column(String(16))  # AE the last instance came from
    state: Mapped[StudyState] = mapped_column(Enum(StudyState, native_enum=False), default=StudyState.RECEIVING)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    complete_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # pending completion
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completion_count: Mapped[int] = mapped_column(Integer, default=0)  # 1 + times re-opened

    patient: Mapped[Patient] = relationship(back_populates="studies")
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(UID, unique=True)  # (0020,000E) UI
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"))
    modality: Mapped[str | None] = mapped_column(String(16))  # (0008,0060) CS
    series_number: Mapped[int | None] = mapped_column(Integer)  # (0020,0011) IS
    series_description: Mapped[str | None] = mapped_column(String(64))  # (0008,103E) LO

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instance"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)  # (0008,0018) UI
    sop_class_uid: Mapped[str] = mapped_column(UID)  # (0008,0016) UI
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id"))
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)  # (0002,0010) UI
    path: Mapped[str] = mapped_column(Text)  # relative to the storage directory
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    calling_aet: Mapped[str | None] = mapped_column(String(16))
    instance_number: Mapped[int | None] = mapped_column(Integer)  # (0020,0013) IS
    modality: Mapped[str | None] = mapped_column(String(16))  # (0008,0060) CS
    body_part_examined: Mapped[str | None] = mapped_column(String(16))  # (0018,0015) CS
    view_position: Mapped[str | None] = mapped_column(String(16))  # (0018,5101) CS
    laterality: Mapped[str | None] = mapped_column(String(16))  # (0020,0062) ImageLaterality or (0020,0060)
    photometric_interpretation: Mapped[str | None] = mapped_column(String(16))  # (0028,0004) CS
    rows: Mapped[int | None] = mapped_column(Integer)  # (0028,0010) US
    columns: Mapped[int | None] = mapped_column(Integer)  # (0028,0011) US
    pixel_spacing_source: Mapped[str | None] = mapped_column(String(32))  # spec `calibration` value
    pixel_spacing_mm: Mapped[list[float] | None] = mapped_column(JSON)  # [row, col] after calibration
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)  # re-sends with a different hash
    derived_by_node: Mapped[bool] = mapped_column(default=False)  # our own result objects

    series: Mapped[Series] = relationship(back_populates="instances")


class StudyEvent(Base):
    """Append-only history of a study: received, completed, reopened (a durable trigger)."""

    __tablename__ = "study_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # completed | reopened | ...
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    detail: Mapped[dict | None] = mapped_column(JSON)


class ImageClassification(Base):
    """Per-instance verdict of the pipeline: analysable AP view or not, native/implant per side."""

    __tablename__ = "image_classification"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_pk: Mapped[int] = mapped_column(ForeignKey("instance.id"), unique=True)
    analysable: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text)  # why not analysable
    right_state: Mapped[str | None] = mapped_column(String(16))  # native | implant | absent
    left_state: Mapped[str | None] = mapped_column(String(16))
    model_versions: Mapped[dict | None] = mapped_column(JSON)
    analysis: Mapped[dict | None] = mapped_column(JSON)  # ImageAnalysis.to_json(): landmarks, measurements
    artifacts_path: Mapped[str | None] = mapped_column(Text)  # npz of masks/probabilities, rel. to storage
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Pairing(Base):
    """A pre-op / post-op pairing decision, per side, with its reason.

    At most one row per (post image, side) has ``superseded`` false; earlier
    decisions stay as history.
    """

    __tablename__ = "pairing"
    __table_args__ = (Index("ix_pairing_post_side", "post_instance_pk", "side"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patient.id"), index=True)
    side: Mapped[str] = mapped_column(String(8))  # right | left
    pre_instance_pk: Mapped[int | None] = mapped_column(ForeignKey("instance.id"))
    post_instance_pk: Mapped[int] = mapped_column(ForeignKey("instance.id"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    superseded: Mapped[bool] = mapped_column(default=False)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """Durable unit of work; ``key`` makes enqueueing idempotent."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # analyze_study | analyze_pair | ...
    key: Mapped[str] = mapped_column(String(255), unique=True)
    study_pk: Mapped[int | None] = mapped_column(ForeignKey("study.id"), index=True)
    payload: Mapped[dict | None] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False), default=JobState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    fail_stage: Mapped[str | None] = mapped_column(String(64))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class JobEvent(Base):
    """Append-only history of each job's state changes."""

    __tablename__ = "job_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Result(Base):
    """A DICOM object the node produced; its UID derives from inputs and model versions."""

    __tablename__ = "result"

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    kind: Mapped[str] = mapped_column(String(32))  # seg | sr | sr_pair | cdm_sc | overlay_sc
    job_pk: Mapped[int | None] = mapped_column(ForeignKey("job.id"))
    study_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"
    DONE = "done"
    DEAD = "dead"  # permanent failure or attempts exhausted: operator must act


class Delivery(Base):
    """Outbox row: one (object file, destination) to deliver by C-STORE."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("sop_instance_uid", "destination"),
        Index("ix_delivery_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)  # relative to the storage directory
    destination: Mapped[str] = mapped_column(String(64))  # Destination.name
    state: Mapped[DeliveryState] = mapped_column(
        Enum(DeliveryState, native_enum=False), default=DeliveryState.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)  # DIMSE status of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Float)
