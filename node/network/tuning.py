"""Receive-path speed levers for pynetdicom (process-wide, applied by the SCP at start).

pynetdicom reads each PDU from the socket 4 KiB at a time into a growing
bytearray; with 128 KiB PDUs that is 32 ``recv`` calls and reallocations per
PDU, and it is the hottest Python loop while receiving large images. Reading
straight into one preallocated buffer with ``recv_into`` keeps the behaviour
(block until ``nr_bytes`` arrived or the peer closed) with far fewer calls.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
import weakref

from pynetdicom import association, dimse, dul, transport

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


_DUL_WAIT_S = 0.01
_ORIGINAL_SEND_PDU = dul.DULServiceProvider.send_pdu


def _wake_pipe(provider: dul.DULServiceProvider) -> tuple[int, int]:
    """The DUL's (read, write) wake-up pipe, made on first use and closed with the DUL."""
    pipe = getattr(provider, "_hipnode_wake", None)
    if pipe is None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        pipe = (read_fd, write_fd)
        weakref.finalize(provider, _close_fds, pipe)
        provider._hipnode_wake = pipe  # type: ignore[attr-defined]
    return pipe


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _send_pdu_and_wake(self: dul.DULServiceProvider, primitive: object) -> None:
    """pynetdicom's ``send_pdu``, then wake the DUL reactor if it is waiting."""
    _ORIGINAL_SEND_PDU(self, primitive)  # type: ignore[arg-type]
    pipe = getattr(self, "_hipnode_wake", None)
    if pipe is not None:
        try:
            os.write(pipe[1], b"\0")
        except (BlockingIOError, OSError):  # full: a wake-up is pending anyway
            pass


class _DulReactorClock:
    """Stands in for the ``time`` module inside ``pynetdicom.dul``.

    The DUL reactor sleeps 1 ms whenever it had nothing to do and then polls
    its socket with a zero-timeout ``select``: per association that is about
    2,000 wake-ups a second, each taking the GIL from the thread doing real
    work. This clock makes that sleep wait until the socket is readable, a
    primitive is queued to send (``send_pdu`` writes to a wake-up pipe), or
    10 ms passed (the loop's timer and kill checks). Other uses of ``time``,
    and sleeps outside a DUL thread, are passed through.
    """

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        provider = threading.current_thread()
        if not isinstance(provider, dul.DULServiceProvider) or seconds != provider._run_loop_delay:
            time.sleep(seconds)
            return
        sock = getattr(getattr(provider, "socket", None), "socket", None)
        if sock is None:
            time.sleep(seconds)
            return
        read_fd, _ = _wake_pipe(provider)
        if not provider.to_provider_queue.empty() or not provider.event_queue.empty():
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return
        try:
            readable, _, _ = select.select([sock, read_fd], [], [], _DUL_WAIT_S)
        except (OSError, ValueError):  # socket closed under us: the loop notices
            return
        if read_fd in readable:
            try:
                os.read(read_fd, 4096)
            except BlockingIOError:
                pass


def wake_dul_reactors_on_io() -> None:
    """Install :class:`_DulReactorClock` and the waking ``send_pdu`` (idempotent)."""
    dul.time = _DulReactorClock()  # type: ignore[attr-defined,assignment]
    dul.DULServiceProvider.send_pdu = _send_pdu_and_wake  # type: ignore[method-assign]


_ORIGINAL_GET_MSG = dimse.DIMSEServiceProvider.get_msg


def _get_msg_unless_paused(self: dimse.DIMSEServiceProvider, block: bool = False) -> object:
    """pynetdicom's ``get_msg``, except that the association's reactor takes nothing while a
    ``send_*`` call has asked it to pause.

    pynetdicom pauses the reactor by clearing ``_reactor_checkpoint`` and waiting
    for ``_is_paused``; the reactor sets ``_is_paused`` *before* it checks the
    checkpoint and clears it after, so a caller that looks in between sees
    "paused", sends its request, and the still-running reactor can take the
    response off the queue as an "unexpected" message: the caller then waits out
    the whole DIMSE timeout (seen once in the test suite on a loaded machine,
    50 echoes in a row). Re-checking the checkpoint here, after ``_is_paused``
    went back to False, closes that window: a caller clearing it later sees
    ``_is_paused`` False and waits for the reactor's next pause.
    """
    assoc = getattr(self, "assoc", None)
    if (not block and assoc is not None and threading.current_thread() is assoc
            and not assoc._reactor_checkpoint.is_set()):
        return None, None
    return _ORIGINAL_GET_MSG(self, block)


def keep_responses_for_their_caller() -> None:
    """Install :func:`_get_msg_unless_paused` (idempotent; requestor and acceptor associations alike)."""
    dimse.DIMSEServiceProvider.get_msg = _get_msg_unless_paused  # type: ignore[method-assign,assignment]
