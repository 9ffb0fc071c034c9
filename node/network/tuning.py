"""Receive-path speed levers for pynetdicom (process-wide, applied by the SCP at start).

pynetdicom reads each PDU from the socket 4 KiB at a time into a growing
bytearray; with 128 KiB PDUs that is 32 ``recv`` calls and reallocations per
PDU, and it is the hottest Python loop while receiving large images. Reading
straight into one preallocated buffer with ``recv_into`` keeps the behaviour
(block until ``nr_bytes`` arrived or the peer closed) with far fewer calls.
"""

from __future__ import annotations

import socket

from pynetdicom import transport

_ORIGINAL_RECV = transport.AssociationSocket.recv


def _recv_into_buffer(self: transport.AssociationSocket, nr_bytes: int) -> bytearray:
    """Read exactly ``nr_bytes`` (fewer only if the connection closed), like the original."""
    sock = self.socket
    if sock is None:
        return _ORIGINAL_RECV(self, nr_bytes)
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    received = 0
    while received < nr_bytes:
        count = sock.recv_into(view[received:], nr_bytes - received)
        if not count:
            del view
            return buffer[:received]
        received += count
    del view
    return buffer


def use_large_socket_reads() -> None:
    """Replace ``AssociationSocket.recv`` with :func:`_recv_into_buffer` (idempotent)."""
    transport.AssociationSocket.recv = _recv_into_buffer  # type: ignore[method-assign]


_ORIGINAL_BIND = transport.AssociationServer.server_bind


def _bind_sharing_port(self: transport.AssociationServer) -> None:
    if getattr(self.ae, "share_port", False) and self.socket is not None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    _ORIGINAL_BIND(self)


def allow_port_sharing() -> None:
    """Servers of an AE with ``ae.share_port = True`` bind with SO_REUSEPORT.

    Several receiver processes then listen on one port and the kernel spreads
    incoming connections over them (idempotent).
    """
    transport.AssociationServer.server_bind = _bind_sharing_port  # type: ignore[method-assign]
