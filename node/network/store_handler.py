"""pynetdicom event handlers: C-STORE, C-ECHO and one log line per association."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom import events as evt

from node.network.contexts import IMAGE_SOP_CLASSES, SR_SOP_CLASSES
from node.network.ingest import Ingestor
from node.network.status import StoreStatus
from storage.filestore import ReceiveBuffer, is_full_error

log = logging.getLogger("node.scp")

_SOP_NAMES = {**IMAGE_SOP_CLASSES, **SR_SOP_CLASSES}


@dataclass
class _AssocStats:
    started: float = field(default_factory=time.monotonic)
    outcome: str = "no_association"  # connection closed before any A-ASSOCIATE
    stored: int = 0
    failed: int = 0
    duplicates: int = 0
    bytes: int = 0


class AssociationLog:
    """Collects per-association counters and writes one line when the connection closes."""

    def __init__(self) -> None:
        self._stats: dict[int, _AssocStats] = {}
        self._lock = threading.Lock()

    def stats(self, assoc: object) -> _AssocStats:
        with self._lock:
            return self._stats.setdefault(id(assoc), _AssocStats())

    def on_outcome(self, event: evt.Event) -> None:
        names = {
            evt.EVT_ESTABLISHED: "established",
            evt.EVT_REJECTED: "rejected",
            evt.EVT_RELEASED: "released",
            evt.EVT_ABORTED: "aborted",
        }
        outcome = names.get(event.event, "no_association")
        if outcome in ("released", "aborted", "rejected"):
            # May come after the connection closed and the line was written: no new entry.
            # EVT_REJECTED fires after the A-ASSOCIATE-RJ is sent, so the peer may close
            # first; on_close reads a rejection off the response we sent instead.
            with self._lock:
                found = self._stats.get(id(event.assoc))
            if found is None:
                return
            stats = found
        else:
            stats = self.stats(event.assoc)
        # "established" never overwrites a final outcome already recorded.
        if outcome != "established" or stats.outcome == "no_association":
            stats.outcome = outcome

    def on_close(self, event: evt.Event) -> None:
        with self._lock:
            stats = self._stats.pop(id(event.assoc), _AssocStats())
        assoc = event.assoc
        # A connection that ends mid-object leaves pynetdicom's half-filled buffer behind.
        pending = getattr(
            getattr(getattr(assoc, "dimse", None), "message", None), "_data_set_file", None
        )
        if isinstance(pending, ReceiveBuffer) and pending.drop_if_unclaimed():
            stats.failed += 1
        address = event.address
        if stats.outcome == "no_association" and _sent_reject(assoc):
            stats.outcome = "rejected"
        if stats.outcome == "established":
            # EVT_RELEASED may not have fired yet: the peer can close as soon as it has
            # our A-RELEASE-RP. Closing in Sta13 (release response sent) is a release.
            machine = getattr(getattr(assoc, "dul", None), "state_machine", None)
            state = getattr(machine, "current_state", "")
            stats.outcome = "released" if state == "Sta13" else "aborted"
        level = (
            logging.WARNING
            if stats.outcome in ("rejected", "aborted") or stats.failed
            else logging.INFO
        )
        log.log(
            level,
            "association",
            extra={
                "outcome": stats.outcome,
                "calling_aet": str(assoc.requestor.ae_title).strip(),
                "called_aet": _called_aet(assoc),
                "peer": f"{address[0]}:{address[1]}",
                "stored": stats.stored,
                "failed": stats.failed,
                "duplicates": stats.duplicates,
                "bytes": stats.bytes,
                "ms": round((time.monotonic() - stats.started) * 1000.0, 1),
            },
        )


def _sent_reject(assoc: object) -> bool:
    """Did we answer this connection's A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ (result 1 or 2)?"""
    primitive = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    return getattr(primitive, "result", None) in (0x01, 0x02)


def _called_aet(assoc: object) -> str:
    """The AE title the peer asked for (ours, unless it was rejected for calling another)."""
    request = getattr(getattr(assoc, "requestor", None), "primitive", None)
    called = getattr(request, "called_ae_title", None)
    return str(called if called else getattr(getattr(assoc, "acceptor", None), "ae_title", "")).strip()


def handle_echo(event: evt.Event) -> int:
    """C-ECHO: the node is up."""
    return 0x0000


def handle_store(event: evt.Event, ingestor: Ingestor, assoc_log: AssociationLog) -> int:
    """Store one object durably and return the DIMSE status (see :class:`StoreStatus`)."""
    start = time.perf_counter()
    request = event.request
    sop_class = str(request.AffectedSOPClassUID or "")
    sop_instance = str(request.AffectedSOPInstanceUID or "")
    calling_aet = str(event.assoc.requestor.ae_title).strip()
    buffer = getattr(request, "_dataset_file", None)
    stats = assoc_log.stats(event.assoc)
    reason = ""
    try:
        path = event.dataset_path
    except AttributeError:  # chunked receive switched off: write the bytes ourselves
        buffer = ingestor.filestore.new_buffer()
        buffer.write(event.encoded_dataset(include_meta=True))
        path = Path(buffer.name)
    status: StoreStatus
    outcome = None
    try:
        if isinstance(buffer, ReceiveBuffer):
            buffer.finish()
            buffer.close()
    except OSError as exc:
        status = StoreStatus.OUT_OF_RESOURCES if is_full_error(exc) else StoreStatus.STORAGE_FAILURE
        reason = f"receiving the object failed: {exc}"
        ingestor.filestore.discard(path)
    else:
        received_hash = buffer.sha256_from if isinstance(buffer, ReceiveBuffer) else None
        outcome = ingestor.ingest(
            Path(path),
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            calling_aet=calling_aet,
            received_hash=received_hash,
        )
        status = outcome.status
        reason = outcome.reason
    ms = round((time.perf_counter() - start) * 1000.0, 1)
    size = outcome.size_bytes if outcome else 0
    if status == StoreStatus.SUCCESS:
        stats.stored += 1
        stats.bytes += size
        if outcome is not None and outcome.duplicate:
            stats.duplicates += 1
    else:
        stats.failed += 1
    extra = {
        "status": f"0x{int(status):04X}",
        "sop_instance_uid": sop_instance,
        "sop_class": _SOP_NAMES.get(sop_class, sop_class),
        "study_instance_uid": outcome.study_instance_uid if outcome else "",
        "calling_aet": calling_aet,
        "size": size,
        "ms": ms,
    }
    if status == StoreStatus.SUCCESS:
        extra["duplicate"] = bool(outcome and outcome.duplicate)
        if outcome is not None:
            extra.update({f"{name}_ms": ms for name, ms in outcome.phases_ms.items()})
        log.info("instance", extra=extra)
    else:
        extra["reason"] = reason
        log.warning("instance refused", extra=extra)
    return int(status)
