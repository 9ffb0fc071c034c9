"""Ingest one received object: check, place durably, catalogue, notify.

This is the C-STORE handler's work without pynetdicom, so it can be driven
from a file in tests and by re-index. The order is the durability contract:
the object is checked complete, fsync'd, linked into place, its directory
fsync'd and its row committed before :meth:`Ingestor.ingest` returns success.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from node.network.status import StoreStatus
from node.network.validate import InvalidObject, check_object
from node.network.views import is_expected_view
from storage import catalogue
from storage.db import write_lock
from storage.filestore import FileStore, OutOfSpace, is_full_error
from storage.models import Result

log = logging.getLogger("node.ingest")
# Built once, Core: per instance the ORM and statement building cost more than SQLite.
_RESULT_FOR_SOP = select(Result.__table__.c.id).where(
    Result.__table__.c.sop_instance_uid == bindparam("sop_instance_uid")
)

StoredCallback = Callable[[str, bool], None]
"""``(study_instance_uid, expected_view)``, called after the row is committed."""


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one object; ``status`` is the DIMSE status to answer."""

    status: StoreStatus
    reason: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    duplicate: bool = False
    size_bytes: int = 0
    phases_ms: dict[str, float] = field(default_factory=dict)  # check, place, catalogue


class Ingestor:
    """Stores checked objects in a :class:`FileStore` and the catalogue; thread-safe."""

    _STRIPES = 64

    def __init__(
        self,
        filestore: FileStore,
        session_factory: sessionmaker,
        on_stored: StoredCallback | None = None,
    ) -> None:
        self.filestore = filestore
        self.session_factory = session_factory
        self.on_stored = on_stored
        self._uid_locks = [threading.Lock() for _ in range(self._STRIPES)]
        self._db_lock = write_lock(session_factory)  # one writer at a time, no busy-wait
        self.duplicates_with_different_content = 0

    def _uid_lock(self, uid: str) -> threading.Lock:
        return self._uid_locks[zlib.crc32(uid.encode()) % self._STRIPES]

    def ingest(
        self,
        temp_path: Path,
        *,
        sop_class_uid: str | None,
        sop_instance_uid: str | None,
        calling_aet: str | None,
        received_hash: Callable[[int], str | None] | None = None,
    ) -> IngestOutcome:
        """Check and store the Part 10 file ``temp_path`` (consumed in every case).

        ``received_hash(offset)`` may supply the data set's SHA-256 computed while
        the bytes arrived (None when it cannot); otherwise the file is re-read.
        """
        try:
            return self._ingest(
                temp_path, sop_class_uid, sop_instance_uid, calling_aet, received_hash
            )
        finally:
            self.filestore.discard(temp_path)

    def _ingest(
        self,
        temp_path: Path,
        sop_class_uid: str | None,
        sop_instance_uid: str | None,
        calling_aet: str | None,
        received_hash: Callable[[int], str | None] | None,
    ) -> IngestOutcome:
        clock = time.perf_counter()
        phases: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            phases[name] = round((now - clock) * 1000.0, 1)
            clock = now

        try:
            checked = check_object(temp_path, sop_class_uid, sop_instance_uid)
            facts = catalogue.InstanceFacts.from_header(checked.header, checked.transfer_syntax_uid)
        except InvalidObject as exc:
            return IngestOutcome(exc.status, exc.reason, sop_instance_uid or "")
        except (AttributeError, TypeError, ValueError) as exc:
            return IngestOutcome(
                StoreStatus.CANNOT_UNDERSTAND, f"header unusable: {exc}", sop_instance_uid or ""
            )
        size = temp_path.stat().st_size
        sha = received_hash(checked.dataset_offset) if received_hash is not None else None
        if sha is None:
            sha = catalogue.dataset_sha256(temp_path, checked.dataset_offset)
        relative = self.filestore.relative_path(
            facts.study_instance_uid, facts.series_instance_uid, facts.sop_instance_uid
        )
        lap("check")
        with self._uid_lock(facts.sop_instance_uid):
            existing = self._existing_sha(facts.sop_instance_uid)
            if existing is not None:
                return self._duplicate(facts, sha, existing, size)
            try:
                self._reserve(size)
            except OutOfSpace as exc:
                return IngestOutcome(StoreStatus.OUT_OF_RESOURCES, str(exc), facts.sop_instance_uid)
            try:
                self.filestore.commit(temp_path, relative)
                lap("place")
            except FileExistsError:
                # A file from a crash before its row committed: it is the first copy.
                self.filestore.release(size)
                catalogue.reindex(self.session_factory, self.filestore.root, [relative])
                existing = self._existing_sha(facts.sop_instance_uid)
                if existing is not None:
                    return self._duplicate(facts, sha, existing, size)
                return IngestOutcome(
                    StoreStatus.STORAGE_FAILURE,
                    f"{relative} exists and is unreadable",
                    facts.sop_instance_uid,
                )
            except OSError as exc:
                self.filestore.release(size)
                status = (
                    StoreStatus.OUT_OF_RESOURCES
                    if is_full_error(exc)
                    else StoreStatus.STORAGE_FAILURE
                )
                return IngestOutcome(
                    status, f"writing the object failed: {exc}", facts.sop_instance_uid
                )
            try:
                derived = self._catalogue(facts, relative, sha, size, calling_aet)
                self.filestore.settle(size)
                lap("catalogue")
            except (IntegrityError, OperationalError, SQLAlchemyError) as exc:
                # No row means not stored: take the file back so the store and catalogue agree.
                self.filestore.remove(relative)
                self.filestore.release(size)
                full = "full" in str(exc).lower()
                status = StoreStatus.OUT_OF_RESOURCES if full else StoreStatus.PROCESSING_FAILURE
                return IngestOutcome(
                    status,
                    f"catalogue write failed: {type(exc).__name__}: {exc}",
                    facts.sop_instance_uid,
                )
        if self.on_stored is not None and not derived:
            expected = is_expected_view(
                facts.modality, facts.body_part_examined, facts.view_position
            )
            try:
                self.on_stored(facts.study_instance_uid, expected)
            except Exception:  # the object is stored; completion recovers from the catalogue
                log.exception(
                    "completion notification failed",
                    extra={"study_instance_uid": facts.study_instance_uid},
                )
        return IngestOutcome(
            StoreStatus.SUCCESS,
            "stored",
            facts.sop_instance_uid,
            facts.study_instance_uid,
            size_bytes=size,
            phases_ms=phases,
        )

    def _catalogue(
        self,
        facts: catalogue.InstanceFacts,
        relative: str,
        sha: str,
        size: int,
        calling_aet: str | None,
        attempts: int = 3,
    ) -> bool:
        """Commit the instance row; return whether it is one of the node's own results.

        Another receiver process may create the same patient, study or series
        at the same moment: the loser's unique-constraint error is retried.
        """
        for attempt in range(attempts):
            try:
                with self._db_lock, self.session_factory() as session:
                    derived = (
                        session.execute(
                            _RESULT_FOR_SOP, {"sop_instance_uid": facts.sop_instance_uid}
                        ).first()
                        is not None
                    )
                    catalogue.add_instance(
                        session,
                        facts,
                        path=relative,
                        sha256=sha,
                        size_bytes=size,
                        calling_aet=calling_aet,
                        derived_by_node=derived,
                    )
                    session.commit()
                    return derived
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _reserve(self, size: int) -> None:
        """Reserve space under the cap; when refused, recount from the catalogue once
        (an operator may have deleted objects since the node started)."""
        try:
            self.filestore.reserve(size)
        except OutOfSpace:
            with self.session_factory() as session:
                self.filestore.set_used_bytes(catalogue.stored_bytes(session))
            self.filestore.reserve(size)

    def _existing_sha(self, sop_instance_uid: str) -> str | None:
        with self.session_factory() as session:
            return catalogue.stored_sha256(session, sop_instance_uid)

    def _duplicate(
        self, facts: catalogue.InstanceFacts, sha: str, existing_sha: str, size: int
    ) -> IngestOutcome:
        """Keep the first copy; count (and log) a re-send whose content differs."""
        if sha != existing_sha:
            with self._db_lock, self.session_factory() as session:
                count = catalogue.record_duplicate(session, facts.sop_instance_uid)
                session.commit()
            self.duplicates_with_different_content += 1
            log.warning(
                "duplicate SOP Instance UID with different content; first copy kept",
                extra={
                    "sop_instance_uid": facts.sop_instance_uid,
                    "duplicate_count": count,
                    "sha256_kept": existing_sha[:16],
                    "sha256_refused": sha[:16],
                },
            )
        return IngestOutcome(
            StoreStatus.SUCCESS,
            "duplicate, first copy kept",
            facts.sop_instance_uid,
            facts.study_instance_uid,
            duplicate=True,
            size_bytes=size,
        )
