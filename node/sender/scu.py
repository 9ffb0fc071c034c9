"""C-STORE SCU: send a batch of files to one destination over one association.

Presentation contexts come from each file's SOP class and transfer syntax; for
natively encoded files explicit and implicit little endian are offered as well,
so a peer that only takes implicit VR still gets the object (pynetdicom
re-encodes). Every file gets a :class:`SendResult`; nothing here touches the
catalogue.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association

from node.config import Destination, Settings, TlsSettings
from node.network.tuning import keep_responses_for_their_caller
from node.sender.status import Failure, Outcome, classify_failure, classify_status

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
MAX_BATCH = 50  # each file adds at most 2 contexts, so a batch always fits
NATIVE_FALLBACK = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass(frozen=True)
class OutgoingFile:
    """One object to send: the outbox row's id, the UID it must hold, and its file."""

    delivery_id: int
    sop_instance_uid: str
    path: Path


@dataclass(frozen=True)
class SendResult:
    """The end of one attempt: a DIMSE status, or a failure without one."""

    delivery_id: int
    status: int | None = None
    failure: Failure | None = None
    error: str | None = None
    duration_ms: float = 0.0

    @property
    def outcome(self) -> Outcome:
        if self.status is not None:
            return classify_status(self.status)[0]
        assert self.failure is not None
        return classify_failure(self.failure)

    @property
    def describe(self) -> str:
        if self.status is not None:
            return f"0x{self.status:04X} {classify_status(self.status)[1]}"
        return f"{self.failure}: {self.error}" if self.error else str(self.failure)


@dataclass(frozen=True)
class _Prepared:
    item: OutgoingFile
    sop_class: UID
    transfer_syntax: UID


def client_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """TLS client context: the configured CA (else the system's) must sign the peer."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
    )
    context.check_hostname = False  # DICOM peers are configured by address; trust comes from the CA
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


def _prepare(item: OutgoingFile) -> _Prepared | SendResult:
    """Read the file meta; a missing file or one holding another instance is a dead result."""
    try:
        meta = read_file_meta_info(item.path)
        sop_class = meta.MediaStorageSOPClassUID
        sop_instance = meta.MediaStorageSOPInstanceUID
        transfer_syntax = meta.TransferSyntaxUID
    except (OSError, InvalidDicomError, AttributeError, ValueError) as exc:
        return SendResult(
            item.delivery_id, failure=Failure.FILE_UNREADABLE, error=f"{item.path}: {exc}"
        )
    if sop_instance != item.sop_instance_uid:
        error = f"{item.path} holds SOP instance {sop_instance}, not {item.sop_instance_uid}"
        return SendResult(item.delivery_id, failure=Failure.FILE_UNREADABLE, error=error)
    return _Prepared(item, UID(sop_class), UID(transfer_syntax))


def _contexts(prepared: list[_Prepared]) -> list[tuple[UID, list[UID]]]:
    """One context per (SOP class, file syntax), plus native fallbacks per SOP class."""
    contexts: list[tuple[UID, list[UID]]] = []
    seen: set[tuple[str, str]] = set()
    for p in prepared:
        if (p.sop_class, p.transfer_syntax) not in seen:
            seen.add((p.sop_class, p.transfer_syntax))
            contexts.append((p.sop_class, [p.transfer_syntax]))
    for p in prepared:
        if not p.transfer_syntax.is_encapsulated and (p.sop_class, "native") not in seen:
            seen.add((p.sop_class, "native"))
            contexts.append((p.sop_class, list(NATIVE_FALLBACK)))
    return contexts


def _no_delay(event: evt.Event) -> None:
    """Disable Nagle: a C-STORE is a write-write-read exchange that otherwise stalls
    on delayed ACKs (measured 90 -> 49 ms per small object against storescp)."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            log.debug("could not set TCP_NODELAY", exc_info=True)


def _associate(settings: Settings, destination: Destination, contexts: list[tuple[UID, list[UID]]]):
    keep_responses_for_their_caller()  # pynetdicom's reactor could take a C-STORE response (node.network.tuning)
    ae = AE(ae_title=settings.ae_title)
    timeouts = settings.timeouts
    ae.acse_timeout = timeouts.acse_seconds
    ae.dimse_timeout = timeouts.dimse_seconds
    ae.network_timeout = timeouts.network_seconds
    ae.connection_timeout = timeouts.connection_seconds
    ae.maximum_pdu_size = settings.maximum_pdu_size
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    tls_args = (client_ssl_context(settings.tls), None) if destination.tls else None
    return ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        tls_args=tls_args,
        max_pdu=settings.maximum_pdu_size,
        evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)],
    )


def _send_one(assoc: Association, p: _Prepared) -> SendResult:
    item = p.item
    t0 = time.perf_counter()

    def ms() -> float:
        return (time.perf_counter() - t0) * 1000.0

    try:
        dataset = dcmread(item.path)
    except (OSError, InvalidDicomError, ValueError) as exc:
        return SendResult(
            item.delivery_id, failure=Failure.FILE_UNREADABLE, error=f"{item.path}: {exc}"
        )
    try:
        response = assoc.send_c_store(dataset)
    except ValueError as exc:  # pynetdicom: no accepted context for this SOP class / syntax
        return SendResult(
            item.delivery_id, failure=Failure.NO_CONTEXT, error=str(exc), duration_ms=ms()
        )
    except (AttributeError, RuntimeError) as exc:
        return SendResult(
            item.delivery_id, failure=Failure.ASSOCIATION_ABORTED, error=str(exc), duration_ms=ms()
        )
    if "Status" not in response:
        return SendResult(
            item.delivery_id,
            failure=Failure.NO_RESPONSE,
            error="no valid C-STORE response",
            duration_ms=ms(),
        )
    return SendResult(item.delivery_id, status=int(response.Status), duration_ms=ms())


def send_batch(
    settings: Settings,
    destination: Destination,
    items: list[OutgoingFile],
    on_result: Callable[[SendResult], None] | None = None,
) -> list[SendResult]:
    """C-STORE every file to ``destination`` over one association; one result per file.

    ``on_result`` sees each result as soon as it is known, so the caller can
    record it before the next object goes (fewer re-sends after a crash).
    """
    results: list[SendResult] = []

    def emit(result: SendResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    prepared: list[_Prepared] = []
    for item in items:
        p = _prepare(item)
        if isinstance(p, SendResult):
            emit(p)
        else:
            prepared.append(p)
    if not prepared:
        return results
    contexts = _contexts(prepared)
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"batch needs {len(contexts)} presentation contexts, at most {MAX_CONTEXTS}"
        )
    t0 = time.perf_counter()
    try:
        assoc = _associate(settings, destination, contexts)
    except (OSError, ssl.SSLError) as exc:
        error = f"{destination.host}:{destination.port}: {exc}"
        for p in prepared:
            emit(SendResult(p.item.delivery_id, failure=Failure.CONNECTION_FAILED, error=error))
        return results
    if not assoc.is_established:
        if assoc.is_rejected:
            failure, what = Failure.ASSOCIATION_REJECTED, "rejected the association"
        elif assoc.rejected_contexts and not assoc.accepted_contexts:
            failure, what = Failure.NO_CONTEXT, "accepted none of the presentation contexts"
        else:  # pynetdicom reports a refused TCP connection as an abort too
            failure, what = (
                Failure.CONNECTION_FAILED,
                "could not be reached or aborted the association",
            )
        error = f"{destination.ae_title}@{destination.host}:{destination.port} {what}"
        ms = (time.perf_counter() - t0) * 1000.0
        for p in prepared:
            emit(SendResult(p.item.delivery_id, failure=failure, error=error, duration_ms=ms))
        return results
    try:
        for p in prepared:
            if not assoc.is_established:
                emit(
                    SendResult(
                        p.item.delivery_id,
                        failure=Failure.ASSOCIATION_ABORTED,
                        error="association ended early",
                    )
                )
                continue
            emit(_send_one(assoc, p))
    finally:
        if assoc.is_established:
            assoc.release()
    return results
