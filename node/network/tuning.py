"""Receive-path speed levers for pynetdicom (process-wide, applied by the SCP at start).

pynetdicom reads each PDU from the socket 4 KiB at a time into a growing
bytearray; with 128 KiB PDUs that is 32 ``recv`` calls and reallocations per
PDU, and it is the hottest Python loop while receiving large images. Reading
straight into one preallocated buffer with ``recv_into`` keeps the behaviour
(block until ``nr_bytes`` arrived or the peer closed) with far fewer calls.
"""

from __future__ import annotations

import socket
import threading
import time

from pynetdicom import association, transport

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


_REACTOR_WAIT_S = 0.01


class _AcceptorReactorClock:
    """Stands in for the ``time`` module inside ``pynetdicom.association``.

    An acceptor's reactor loop wakes every millisecond (``time.sleep(0.001)``)
    to poll its DIMSE queue: 4 idle associations cost about 19% of a core here.
    This clock makes that one sleep wait on the queue instead, waking the moment
    a message is queued and at least every 10 ms for the loop's other checks
    (release, abort, network timeout). Every other use of ``time`` is passed
    through, and requestor associations keep the original sleep (their user
    thread pauses the reactor and should not wait for it).
    """

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        thread = threading.current_thread()
        queue = getattr(getattr(thread, "dimse", None), "msg_queue", None)
        if seconds != 0.001 or not getattr(thread, "is_acceptor", False) or queue is None:
            time.sleep(seconds)
            return
        with queue.not_empty:
            if not queue._qsize():
                queue.not_empty.wait(_REACTOR_WAIT_S)


def wake_acceptor_reactors_on_messages() -> None:
    """Install :class:`_AcceptorReactorClock` in pynetdicom's association module (idempotent)."""
    association.time = _AcceptorReactorClock()  # type: ignore[attr-defined,assignment]
