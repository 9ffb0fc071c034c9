"""The DUL reactor waits on its socket and on queued primitives instead of polling.

Real pynetdicom associations in this process (acceptor and requestor); the
patch is process-wide, as in the node.
"""

from __future__ import annotations

import select
import threading
import time
from types import SimpleNamespace

from pynetdicom import AE, evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import Verification

from node.network import tuning
from node.network.tuning import keep_responses_for_their_caller, wake_dul_reactors_on_io


def test_idle_association_wakes_rarely_and_still_answers_at_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    wake_dul_reactors_on_io()
    keep_responses_for_their_caller()  # as the node does: 50 echoes in a row must not meet pynetdicom's pause race
    loops: dict[int, int] = {}
    original = DULServiceProvider._is_transport_event

    def counting(self: DULServiceProvider) -> bool:
        loops[threading.get_ident()] = loops.get(threading.get_ident(), 0) + 1
        return original(self)

    monkeypatch.setattr(DULServiceProvider, "_is_transport_event", counting)
    pipe_wakes: dict[int, int] = {}

    def counting_select(read: list, write: list, error: list, timeout: float):  # type: ignore[no-untyped-def]
        readable, writable, failed = select.select(read, write, error, timeout)
        if any(isinstance(item, int) for item in readable):  # the wake-up pipe's fd
            pipe_wakes[threading.get_ident()] = pipe_wakes.get(threading.get_ident(), 0) + 1
        return readable, writable, failed

    monkeypatch.setattr(tuning, "select", SimpleNamespace(select=counting_select))
    acceptor_threads: list[int] = []

    def on_echo(event: evt.Event) -> int:
        acceptor_threads.append(event.assoc.dul.ident)
        return 0x0000

    scp = AE(ae_title="SCP")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(Verification)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="SCP")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000  # acceptor DUL identified
        before = dict(loops)
        time.sleep(0.5)
        idle = loops.get(acceptor_threads[0], 0) - before.get(acceptor_threads[0], 0)
        # 1 ms polling made about 400 loops in 0.5 s; waiting up to 10 ms makes about 50.
        assert idle < 120, idle
        # A queued response wakes the acceptor's DUL through its pipe (it does not
        # wait for the 10 ms tick): one pipe wake-up per echo response at least.
        woken_before = pipe_wakes.get(acceptor_threads[0], 0)
        for _ in range(50):
            assert assoc.send_c_echo().Status == 0x0000
        assert pipe_wakes.get(acceptor_threads[0], 0) - woken_before >= 50, pipe_wakes
        assoc.release()
        assert assoc.is_released
    finally:
        server.shutdown()


class _LateReactorCheckpoint(threading.Event):
    """The association's pause checkpoint, with its reactor descheduled for 30 ms right after passing it:
    the moment pynetdicom's pause handshake reports "paused" while the reactor still runs."""

    def __init__(self, reactor: threading.Thread) -> None:
        super().__init__()
        self.set()
        self._reactor = reactor

    def wait(self, timeout: float | None = None) -> bool:
        passed = super().wait(timeout)
        if threading.current_thread() is self._reactor:
            time.sleep(0.03)
        return passed


def _echo_statuses(count: int) -> list[int | None]:
    scp = AE(ae_title="SCP")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        scu = AE(ae_title="SCU")
        scu.dimse_timeout = 2
        scu.add_requested_context(Verification)
        assoc = scu.associate("127.0.0.1", server.server_address[1], ae_title="SCP")
        assert assoc.is_established
        assoc._reactor_checkpoint = _LateReactorCheckpoint(assoc)
        statuses: list[int | None] = []
        while len(statuses) < count and assoc.is_established:  # a lost response aborts the association
            statuses.append(getattr(assoc.send_c_echo(), "Status", None))
        if assoc.is_established:
            assoc.release()
        return statuses
    finally:
        server.shutdown()


def test_a_response_is_never_taken_by_the_requestors_own_reactor(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The race behind a rare 30 s DIMSE timeout (outbox delivery, this file's test above): forced every time
    here, it loses responses without the guard and none with it."""
    from pynetdicom import dimse

    from node.network import tuning

    original = tuning._ORIGINAL_GET_MSG

    def caller_descheduled(provider: dimse.DIMSEServiceProvider, block: bool = False) -> object:
        if block:  # the send_* caller, between sending its request and reading the response
            time.sleep(0.05)
        return original(provider, block)

    monkeypatch.setattr(tuning, "_ORIGINAL_GET_MSG", caller_descheduled)
    monkeypatch.setattr(dimse.DIMSEServiceProvider, "get_msg", caller_descheduled)
    assert _echo_statuses(3) != [0x0000] * 3  # the unguarded reactor takes a response: the race is reproduced
    tuning.keep_responses_for_their_caller()
    assert _echo_statuses(10) == [0x0000] * 10
