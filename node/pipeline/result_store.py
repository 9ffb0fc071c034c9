"""Keep a produced DICOM object durably and queue it for delivery, exactly once.

Result UIDs derive from the inputs and model versions, so a re-run produces the
same SOP Instance UIDs: an object already catalogued in ``result`` is not
written again, and the outbox's UNIQUE(sop_instance_uid, destination) keeps
deliveries single. Files go under ``results/`` in the storage directory, written
through the same temp-file, fsync, link, dir-fsync path as received objects.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from node.config import Destination, Settings
from node.sender.outbox import enqueue as enqueue_delivery
from storage.filestore import FileStore, clean_uid
from storage.models import Result

log = logging.getLogger(__name__)


def destinations_for(settings: Settings, calling_aet: str | None) -> list[Destination]:
    """Where a study's results go.

    With ``return_to_sender`` (the default) the results go to the configured
    destination(s) whose AE title is the AE the study came from; when the
    sender is not a configured destination, or ``return_to_sender`` is off, to
    every enabled destination.
    """
    enabled = [d for d in settings.destinations if d.enabled]
    if settings.return_to_sender and calling_aet:
        senders = [d for d in enabled if d.ae_title == calling_aet.strip()]
        if senders:
            return senders
    return enabled


def result_path(ds: Dataset) -> str:
    """``results/<study>/<series>/<sop>.dcm``, from cleaned UIDs."""
    return "/".join(
        ("results", clean_uid(ds.StudyInstanceUID), clean_uid(ds.SeriesInstanceUID),
         f"{clean_uid(ds.SOPInstanceUID)}.dcm")
    )


def store_results(
    session: Session,
    filestore: FileStore,
    datasets: Iterable[tuple[str, Dataset]],
    destinations: Sequence[Destination],
    job_pk: int | None = None,
) -> list[Result]:
    """Write each ``(kind, dataset)`` once, catalogue it and queue it for each destination.

    Returns the rows (existing ones included). The caller commits; the files are
    durable before this returns, so a crash before the commit leaves at worst an
    orphan file that the next run overwrites by the same name.
    """
    rows: list[Result] = []
    for kind, ds in datasets:
        uid = str(ds.SOPInstanceUID)
        row = session.scalar(select(Result).where(Result.sop_instance_uid == uid))
        if row is None:
            relative = result_path(ds)
            final = filestore.absolute(relative)
            if not final.exists():
                temp = filestore.tmp_dir / f"{uuid.uuid4().hex}.part"
                ds.save_as(temp, enforce_file_format=True)
                try:
                    filestore.commit(temp, relative)
                except FileExistsError:  # a crashed earlier run got this far: same UID, same content
                    filestore.discard(temp)
            digest = hashlib.sha256(final.read_bytes()).hexdigest()
            row = Result(
                sop_instance_uid=uid,
                sop_class_uid=str(ds.SOPClassUID),
                kind=kind,
                job_pk=job_pk,
                study_instance_uid=str(ds.StudyInstanceUID),
                path=relative,
                sha256=digest,
            )
            session.add(row)
            session.flush()
            log.info("result stored", extra={"kind": kind, "sop_instance_uid": uid, "study": row.study_instance_uid})
        for destination in destinations:
            enqueue_delivery(session, uid, row.path, destination.name)
        rows.append(row)
    return rows
