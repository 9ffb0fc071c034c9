"""Build the Storage SCP application entity from the settings."""

from __future__ import annotations

import ssl
from typing import Any

import pynetdicom.dimse_messages
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from node.config import Settings, TlsSettings
from node.network.association_limit import NodeWideLimitAE, SharedAssociationCount
from node.network.contexts import STORAGE_CONTEXTS
from node.network.fast_receive import stream_data_sets_to_file
from node.network.ingest import Ingestor
from node.network.store_handler import AssociationLog, handle_echo, handle_store
from node.network.tuning import (
    allow_port_sharing,
    keep_responses_for_their_caller,
    use_large_socket_reads,
    wake_acceptor_reactors_on_messages,
    wake_dul_reactors_on_io,
)
from storage.filestore import FileStore


def use_receive_buffers(filestore: FileStore) -> None:
    """Stream received data sets into the store's ``tmp/`` (same filesystem as the objects).

    pynetdicom's chunked receive writes each data set to a
    ``NamedTemporaryFile``; this swaps in :class:`storage.filestore.ReceiveBuffer`
    so the final rename is atomic and a full disk answers 0xA700. Process-wide.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True

    def _factory(*_args: Any, **_kwargs: Any) -> Any:
        return filestore.new_buffer()

    pynetdicom.dimse_messages.NamedTemporaryFile = _factory  # type: ignore[attr-defined]


def tls_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """Server-side TLS context; with ``ca_file`` the peer must present a certificate it signed."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert_file), keyfile=str(tls.key_file))
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=str(tls.ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def build_ae(settings: Settings, shared_count: SharedAssociationCount | None = None) -> AE:
    """The SCP's AE: contexts, AE-title checks, association limit, PDU size, timeouts.

    ``shared_count``: with several receiver processes, the limit is the node's
    total, not each process's.
    """
    ae = NodeWideLimitAE(ae_title=settings.ae_title)
    ae.shared_count = shared_count
    ae.maximum_pdu_size = settings.maximum_pdu_size
    ae.maximum_associations = settings.maximum_associations
    ae.require_called_aet = settings.require_called_aet
    ae.require_calling_aet = list(settings.allowed_calling_aets)
    ae.acse_timeout = settings.timeouts.acse_seconds
    ae.dimse_timeout = settings.timeouts.dimse_seconds
    ae.network_timeout = settings.timeouts.network_seconds
    ae.connection_timeout = settings.timeouts.connection_seconds
    ae.add_supported_context(Verification)
    for sop_class, transfer_syntaxes in STORAGE_CONTEXTS:
        ae.add_supported_context(sop_class, transfer_syntaxes)
    return ae


def start_scp(
    settings: Settings, ingestor: Ingestor, shared_count: SharedAssociationCount | None = None
) -> tuple[AE, ThreadedAssociationServer]:
    """Start listening (non-blocking); returns the AE and its server.

    With ``settings.receiver_process_count > 1`` the socket is bound with
    SO_REUSEPORT so the other receiver processes can share the port, and
    ``shared_count`` keeps ``maximum_associations`` a limit for the whole node.
    """
    use_receive_buffers(ingestor.filestore)
    use_large_socket_reads()
    stream_data_sets_to_file()
    wake_acceptor_reactors_on_messages()
    wake_dul_reactors_on_io()
    keep_responses_for_their_caller()
    allow_port_sharing()
    ae = build_ae(settings, shared_count)
    ae.share_port = settings.receiver_process_count > 1  # type: ignore[attr-defined]
    assoc_log = AssociationLog()
    handlers = [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [ingestor, assoc_log]),
        (evt.EVT_ESTABLISHED, assoc_log.on_outcome),
        (evt.EVT_REJECTED, assoc_log.on_outcome),
        (evt.EVT_RELEASED, assoc_log.on_outcome),
        (evt.EVT_ABORTED, assoc_log.on_outcome),
        (evt.EVT_CONN_CLOSE, assoc_log.on_close),
    ]
    if shared_count is not None:
        handlers += [
            (evt.EVT_CONN_OPEN, shared_count.on_open),
            (evt.EVT_CONN_CLOSE, shared_count.on_close),
        ]
    server = ae.start_server(
        (settings.bind_address, settings.port),
        block=False,
        evt_handlers=handlers,
        ssl_context=tls_context(settings.tls),
    )
    return ae, server
